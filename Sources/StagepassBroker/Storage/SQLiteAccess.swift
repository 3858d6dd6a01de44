import Foundation
import GRDB

/// The store's one path to SQLite: every read and write of ``SQLiteStore`` goes through here, so that a storage
/// failure is classified once (``StorageFault``), recorded in ``StorageHealth``, and the write-ahead log is kept small.
///
/// WAL upkeep (<https://www.sqlite.org/wal.html>, <https://www.sqlite.org/pragma.html#pragma_journal_size_limit>):
/// - after a write failed with a full disk, `PRAGMA wal_checkpoint(TRUNCATE)` moves the log into the database and empties the `-wal`
///   file, so that space freed by an operator is usable at once instead of being held by an old log;
/// - after a commit that left the log larger than ``walTruncateBytes``, the same checkpoint runs (the log would
///   otherwise grow to SQLite's 1000-page automatic checkpoint and stay that large on disk);
/// - `journal_size_limit` caps what a reset log keeps on disk.
struct SQLiteAccess: Sendable {
    let writer: any DatabaseWriter
    let health: StorageHealth
    /// The database file; nil in memory.
    let path: String?
    /// A committed write that leaves the `-wal` file larger than this triggers a truncating checkpoint.
    let walTruncateBytes: Int64

    /// A transaction on the writer, run on GRDB's writer queue while the calling task suspends (no thread of the
    /// caller waits). A storage failure rolls back, is recorded and thrown as ``StorageFault``; other errors (the
    /// closure's own, a constraint) pass through unchanged. The write is not cancelled with the task: once asked
    /// for, it runs to its commit or rollback, and the caller learns which.
    func write<T: Sendable>(_ updates: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let outcome: Result<T, any Error> = await withCheckedContinuation { continuation in
            writer.asyncWrite(updates) { _, result in continuation.resume(returning: result) }
        }
        switch outcome {
        case .success(let result):
            health.recordSuccess()
            if let path, Self.fileSize(path + "-wal") > walTruncateBytes { await checkpointAwaited() }
            return result
        case .failure(let error):
            guard let fault = classify(error) else { throw error }
            health.recordFailure(fault)
            // As in writeBlocking(_:): only a full disk gains from emptying the log, and the caller learns of the
            // failure once the log is empty, so space freed meanwhile is usable by its retry.
            if fault.cause == .diskFull { await checkpointAwaited() }
            throw fault
        }
    }

    /// A read on one of GRDB's reader connections (a WAL snapshot: it never waits for a writer), the calling task
    /// suspended meanwhile; a storage failure is recorded and thrown as ``StorageFault``.
    func read<T: Sendable>(_ value: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let outcome: Result<T, any Error> = await withCheckedContinuation { continuation in
            writer.asyncRead { db in continuation.resume(returning: Result { try value(db.get()) }) }
        }
        return try readResult(outcome)
    }

    /// ``write(_:)`` blocking the calling thread: for callers on a thread of their own (the key store's audit
    /// records, the command-line tool's copy), never the cooperative pool.
    func writeBlocking<T>(_ updates: (Database) throws -> T) throws -> T {
        try committed(Result { try writer.write(updates) }) { checkpoint() }
    }

    /// ``read(_:)`` blocking the calling thread (same callers as ``writeBlocking(_:)``).
    func readBlocking<T>(_ value: (Database) throws -> T) throws -> T {
        try readResult(Result { try writer.read(value) })
    }

    private func committed<T>(_ outcome: Result<T, any Error>, checkpoint: () -> Void) throws -> T {
        switch outcome {
        case .success(let result):
            health.recordSuccess()
            if let path, Self.fileSize(path + "-wal") > walTruncateBytes { checkpoint() }
            return result
        case .failure(let error):
            guard let fault = classify(error) else { throw error }
            health.recordFailure(fault)
            // Only a full disk gains from emptying the log; a lock would make the checkpoint wait out the busy
            // timeout a second time.
            if fault.cause == .diskFull { checkpoint() }
            throw fault
        }
    }

    private func readResult<T>(_ outcome: Result<T, any Error>) throws -> T {
        switch outcome {
        case .success(let value): return value
        case .failure(let error):
            guard let fault = classify(error) else { throw error }
            health.recordFailure(fault)
            throw fault
        }
    }

    func classify(_ error: any Error) -> StorageFault? {
        StorageFault.classify(error, readOnlyFileSystem: path.map(Self.readOnlyFileSystem) ?? false)
    }

    /// Best effort `wal_checkpoint(TRUNCATE)`: it fails harmlessly when a reader still uses the log or the
    /// database file cannot grow; the next write or failure tries again.
    func checkpoint() {
        guard path != nil else { return }
        _ = try? writer.writeWithoutTransaction { db in
            try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)")
        }
    }

    /// ``checkpoint()`` on the writer's queue while the calling task suspends.
    func checkpointAwaited() async {
        guard path != nil else { return }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            writer.asyncWriteWithoutTransaction { db in
                _ = try? Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)")
                done.resume()
            }
        }
    }

    static func fileSize(_ path: String) -> Int64 {
        var st = stat()
        guard stat(path, &st) == 0 else { return 0 }
        return Int64(st.st_size)
    }

    /// Bytes available to this process on the file system holding `path`'s directory; nil if unknown.
    static func freeBytes(_ path: String) -> Int64? {
        var s = statvfs()
        guard statvfs(directory(of: path), &s) == 0 else { return nil }
        return Int64(s.f_bavail) * Int64(s.f_frsize)
    }

    static func readOnlyFileSystem(_ path: String) -> Bool {
        var s = statvfs()
        guard statvfs(directory(of: path), &s) == 0 else { return false }
        return s.f_flag & UInt(ST_RDONLY) != 0
    }

    static func directory(of path: String) -> String {
        let dir = (path as NSString).deletingLastPathComponent
        return dir.isEmpty ? "." : dir
    }
}
