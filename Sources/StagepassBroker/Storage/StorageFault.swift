import Foundation
import GRDB
import Synchronization

/// The store could not read or commit: the disk is full, the database is read-only, locked past the busy timeout,
/// corrupt, or the file system reported an I/O error.
///
/// Nothing was changed: the failed transaction rolled back, so no token, session or audit record exists for the
/// request. A front end answers 503 `storage_unavailable` with `Retry-After` (``BrokerError/storageUnavailable(_:)``)
/// and logs ``cause`` and ``resultCode``; neither names SQL, arguments or a path, so ``description`` is safe to log.
/// Classification happens in one place, ``classify(_:readOnlyFileSystem:)``, from the SQLite result code.
/// Related SQLite documentation: <https://www.sqlite.org/rescode.html>
public struct StorageFault: Error, Sendable, Hashable, CustomStringConvertible {
    /// Why the store failed. The raw value is the `cause` logged and shown in `/readyz`.
    public enum Cause: String, Sendable, Hashable, CaseIterable {
        /// `SQLITE_FULL`: the file system has no room (or the database reached its page limit); also a free-space
        /// check below the reserve.
        case diskFull = "disk_full"
        /// `SQLITE_READONLY*`, or an I/O error on a file system mounted read-only (`EROFS`).
        case readOnly = "read_only"
        /// `SQLITE_BUSY` / `SQLITE_LOCKED` after the busy timeout: another writer holds the database.
        case locked
        /// `SQLITE_CORRUPT` / `SQLITE_NOTADB`: the file is damaged or is not a database.
        case corrupt
        /// `SQLITE_IOERR*` / `SQLITE_CANTOPEN`: the file system refused a read, write, sync or open.
        case ioError = "io_error"
        /// PostgreSQL only: the database server cannot be reached, closed the connection, is shutting down or
        /// starting, or has no connection slot left.
        case unreachable

        /// A short phrase for people: "disk full", "read-only", …
        public var phrase: String {
            switch self {
            case .diskFull: "disk full"
            case .readOnly: "read-only"
            case .locked: "locked"
            case .corrupt: "corrupt"
            case .ioError: "I/O error"
            case .unreachable: "database unreachable"
            }
        }
    }

    public let cause: Cause
    /// The extended SQLite result code (e.g. 13 `SQLITE_FULL`, 1290 `SQLITE_IOERR_FSYNC`); nil when the fault was
    /// found without SQLite (the free-space check).
    public let resultCode: Int32?
    /// The PostgreSQL SQLSTATE (e.g. `53100` disk full, `57P01` shutting down), or the client's error name
    /// (`connectionError`) when the server never answered; nil for SQLite.
    public let sqlState: String?

    public init(_ cause: Cause, resultCode: Int32? = nil, sqlState: String? = nil) {
        self.cause = cause
        self.resultCode = resultCode
        self.sqlState = sqlState
    }

    /// "disk full (SQLite result 13)", "database unreachable (PostgreSQL 57P01)": safe to log and to show; no SQL,
    /// no path, no URL.
    public var description: String {
        if let resultCode { return "\(cause.phrase) (SQLite result \(resultCode))" }
        if let sqlState { return "\(cause.phrase) (PostgreSQL \(sqlState))" }
        return cause.phrase
    }

    /// Seconds a client should wait before retrying: a lock clears quickly, a database server restarts in
    /// seconds, the other causes need an operator.
    public var retryAfter: Int64 {
        switch cause {
        case .locked: 2
        case .unreachable: 5
        default: 30
        }
    }

    /// Classifies an extended SQLite result code; nil for codes that are not a storage fault (a constraint
    /// violation, a schema error, a misuse: those are the broker's own bugs and stay internal errors).
    ///
    /// `readOnlyFileSystem` says whether the database's file system is mounted read-only: SQLite reports a write
    /// refused with `EROFS` on an open database as `SQLITE_IOERR_WRITE`, which is then the read-only case.
    public static func classify(resultCode extended: Int32, readOnlyFileSystem: Bool = false) -> Cause? {
        switch extended & 0xff {
        case 13: .diskFull  // SQLITE_FULL
        case 8: .readOnly  // SQLITE_READONLY and its extended codes
        case 5, 6: .locked  // SQLITE_BUSY, SQLITE_LOCKED (after the busy timeout)
        case 11, 26: .corrupt  // SQLITE_CORRUPT, SQLITE_NOTADB
        case 10, 14: readOnlyFileSystem ? .readOnly : .ioError  // SQLITE_IOERR*, SQLITE_CANTOPEN
        default: nil
        }
    }

    /// The fault a GRDB error stands for, or nil when it is not a storage fault.
    public static func classify(_ error: any Error, readOnlyFileSystem: Bool = false) -> StorageFault? {
        switch error {
        case let f as StorageFault: return f
        case let e as DatabaseError:
            let code = e.extendedResultCode.rawValue
            return classify(resultCode: code, readOnlyFileSystem: readOnlyFileSystem).map {
                StorageFault($0, resultCode: code)
            }
        default: return nil
        }
    }
}

/// What the store knows about its own health: the outcome of the latest write (a real one or the `/readyz`
/// probe). A failure makes the store unready until a later write commits, so readiness recovers by itself.
public final class StorageHealth: Sendable {
    public enum Status: Sendable, Hashable {
        case ready
        case unavailable(StorageFault)
    }

    private struct State {
        var fault: StorageFault?
        var lastSuccess: ContinuousClock.Instant?
        var failures: Int = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// A write committed: the store is healthy again.
    public func recordSuccess() {
        state.withLock {
            $0.fault = nil
            $0.lastSuccess = .now
        }
    }

    /// A read or write failed with `fault`.
    public func recordFailure(_ fault: StorageFault) {
        state.withLock {
            $0.fault = fault
            $0.failures += 1
        }
    }

    /// The last recorded outcome.
    public var status: Status {
        state.withLock { s in s.fault.map { .unavailable($0) } ?? .ready }
    }

    /// Storage faults recorded since start (the `stagepass_storage_faults_total` figure).
    public var failureCount: Int { state.withLock { $0.failures } }

    /// Whether a write committed within `interval` and none failed since (the probe may then be skipped).
    func recentlyHealthy(within interval: Duration) -> Bool {
        state.withLock { s in
            guard s.fault == nil, let last = s.lastSuccess else { return false }
            return ContinuousClock.now - last < interval
        }
    }
}

extension BrokerError {
    /// The store could not commit or read (``StorageFault``): nothing was changed; retry after `retryAfter` seconds.
    /// The detail names the cause ("disk full", "read-only", "locked", "corrupt", "I/O error"), never SQL or a path.
    public static func storageUnavailable(_ fault: StorageFault) -> BrokerError {
        .storageUnavailable(
            "storage unavailable: \(fault.cause.phrase); nothing was changed, retry later",
            retryAfter: fault.retryAfter
        )
    }
}
