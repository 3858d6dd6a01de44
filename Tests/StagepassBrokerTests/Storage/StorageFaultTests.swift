import Foundation
import GRDB
import Testing

@testable import StagepassBroker

/// Storage failures are classified from the SQLite result code, recorded in the store's health, never leave a
/// partial write, and readiness recovers once a write commits. The failures are real SQLite failures where
/// possible: a page limit (SQLITE_FULL), a read-only connection, a file that is not a database, a second connection
/// holding the write lock.
@Suite struct StorageFaultTests {
    /// A fresh directory with a database path in it; removed by the caller.
    static func tempPath() throws -> (dir: URL, path: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stagepass-storage-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return (dir, dir.appendingPathComponent("broker.db").path)
    }

    static func user(_ id: String, hashBytes: Int = 16) -> UserRecord {
        UserRecord(id: id, name: id, passwordHash: String(repeating: "h", count: hashBytes), createdAt: 1)
    }

    static let primary: [(Int32, StorageFault.Cause)] = [
        (13, .diskFull),  // SQLITE_FULL
        (8, .readOnly),  // SQLITE_READONLY
        (5, .locked),  // SQLITE_BUSY
        (6, .locked),  // SQLITE_LOCKED
        (11, .corrupt),  // SQLITE_CORRUPT
        (26, .corrupt),  // SQLITE_NOTADB
        (10, .ioError),  // SQLITE_IOERR
        (14, .ioError),  // SQLITE_CANTOPEN
    ]
    /// Extended codes keep their primary code's cause.
    static let extended: [(Int32, StorageFault.Cause)] = [
        (8 | (1 << 8), .readOnly),  // SQLITE_READONLY_RECOVERY
        (8 | (6 << 8), .readOnly),  // SQLITE_READONLY_DIRECTORY
        (5 | (2 << 8), .locked),  // SQLITE_BUSY_SNAPSHOT
        (10 | (3 << 8), .ioError),  // SQLITE_IOERR_WRITE
        (10 | (4 << 8), .ioError),  // SQLITE_IOERR_FSYNC
    ]

    @Test(arguments: primary + extended)
    func resultCodesClassify(code: Int32, cause: StorageFault.Cause) {
        #expect(StorageFault.classify(resultCode: code) == cause)
    }

    /// A write refused with EROFS reaches SQLite's caller as SQLITE_IOERR_WRITE: on a read-only mount it is the
    /// read-only case.
    @Test func ioErrorOnAReadOnlyFileSystemIsReadOnly() async {
        #expect(StorageFault.classify(resultCode: 10 | (3 << 8), readOnlyFileSystem: true) == .readOnly)
        #expect(StorageFault.classify(resultCode: 13, readOnlyFileSystem: true) == .diskFull)
    }

    /// Constraint violations, SQL errors and misuse are the broker's own bugs, not storage faults.
    @Test(arguments: [0, 1, 2, 7, 19, 19 | (8 << 8), 21, 100, 101])
    func otherCodesAreNotStorageFaults(code: Int32) {
        #expect(StorageFault.classify(resultCode: code) == nil)
    }

    @Test func descriptionNamesCauseAndCodeOnly() async {
        let f = StorageFault(.diskFull, resultCode: 13)
        #expect(f.description == "disk full (SQLite result 13)")
        #expect(f.retryAfter == 30 && StorageFault(.locked).retryAfter == 2)
        let e = BrokerError.storageUnavailable(f)
        #expect(e.code == "storage_unavailable" && e.retryAfter == 30)
        #expect(e.detail.hasPrefix("storage unavailable: disk full"))
    }

    /// SQLITE_FULL for real: the writer's page limit is the file's current size, so an insert that needs a new page
    /// fails. Nothing is written, health says disk full, and the next committed write makes it ready again.
    @Test func diskFullIsClassifiedRolledBackAndRecovers() async throws {
        let (dir, path) = try Self.tempPath()
        defer { try? FileManager.default.removeItem(at: dir) }
        let s = try SQLiteStore(path: path, minimumFreeBytes: 0)
        try await s.insertUser(Self.user("u0"), groups: [])
        try await s.unsafeExecute("PRAGMA max_page_count = 1")  // clamps to the current page count
        do {
            try await s.insertUser(Self.user("u1", hashBytes: 20_000), groups: ["g"])
            Issue.record("the insert should have failed")
        } catch let f as StorageFault {
            #expect(f.cause == .diskFull && f.resultCode == 13)
        }
        #expect(s.health.status == .unavailable(StorageFault(.diskFull, resultCode: 13)))
        await #expect(try s.user(id: "u1") == nil)
        await #expect(try s.allGroups().isEmpty)
        // After the failure the log was checkpointed and truncated: freed space is usable at once.
        #expect(SQLiteAccess.fileSize(path + "-wal") == 0)
        try await s.unsafeExecute("PRAGMA max_page_count = 1073741823")
        try await s.insertUser(Self.user("u1", hashBytes: 20_000), groups: ["g"])
        #expect(s.health.status == .ready)
        try await s.ping()
    }

    /// The readiness probe commits a real write: with writes refused it reports the cause, and it recovers by
    /// itself once they are allowed again.
    @Test func probeReportsReadOnlyAndRecovers() async throws {
        let (dir, path) = try Self.tempPath()
        defer { try? FileManager.default.removeItem(at: dir) }
        let s = try SQLiteStore(path: path, minimumFreeBytes: 0)
        try await s.ping()
        try await s.unsafeExecute("PRAGMA query_only = ON")  // the writer connection refuses writes: SQLITE_READONLY
        await #expect(throws: StorageFault(.readOnly, resultCode: 8)) { try await s.setGroups(userId: "nobody", ["g"]) }
        await #expect(throws: StorageFault(.readOnly, resultCode: 8)) { try await s.ping() }
        #expect(s.health.status == .unavailable(StorageFault(.readOnly, resultCode: 8)))
        try await s.unsafeExecute("PRAGMA query_only = OFF")
        try await s.ping()
        #expect(s.health.status == .ready)
    }

    /// A database opened read-only (a read-only file or mount) fails a write with SQLITE_READONLY.
    @Test func readOnlyConnectionIsReadOnly() async throws {
        let (dir, path) = try Self.tempPath()
        defer { try? FileManager.default.removeItem(at: dir) }
        _ = try SQLiteStore(path: path)
        var config = Configuration()
        config.readonly = true
        let q = try DatabaseQueue(path: path, configuration: config)
        do {
            try await q.write { db in try db.execute(sql: "INSERT INTO groups (name) VALUES ('g')") }
            Issue.record("the write should have failed")
        } catch {
            #expect(StorageFault.classify(error)?.cause == .readOnly)
        }
    }

    /// A file that is not a database: opening the store fails as corrupt, naming no path.
    @Test func notADatabaseIsCorrupt() async throws {
        let (dir, path) = try Self.tempPath()
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data(repeating: 0x5a, count: 8192).write(to: URL(fileURLWithPath: path))
        do {
            _ = try SQLiteStore(path: path)
            Issue.record("opening garbage should have failed")
        } catch let f as StorageFault {
            #expect(f.cause == .corrupt)
            #expect(!f.description.contains(dir.path))
        }
    }

    /// Another connection holds the write lock past the busy timeout: locked, nothing written, and ready again
    /// once it lets go.
    @Test func heldWriteLockIsLocked() async throws {
        let (dir, path) = try Self.tempPath()
        defer { try? FileManager.default.removeItem(at: dir) }
        let s = try SQLiteStore(path: path, minimumFreeBytes: 0, busyTimeout: 0.05)
        let other = try DatabaseQueue(path: path)
        // Another connection holds the write lock on a thread of its own until told to let go.
        let release = DispatchSemaphore(value: 0)
        let holder = LockHolder()
        await withCheckedContinuation { (locked: CheckedContinuation<Void, Never>) in
            let t = Thread {
                holder.result = Result {
                    try other.writeWithoutTransaction { db in
                        try db.execute(sql: "BEGIN IMMEDIATE")
                        locked.resume()
                        release.wait()
                        try db.execute(sql: "ROLLBACK")
                    }
                }
                holder.done.signal()
            }
            t.start()
        }
        do {
            try await s.insertUser(Self.user("u1"), groups: [])
            Issue.record("the insert should have waited out the lock and failed")
        } catch let f as StorageFault {
            #expect(f.cause == .locked)  // SQLITE_BUSY, or SQLITE_BUSY_SNAPSHOT for an upgraded read
            #expect(s.health.status == .unavailable(f))
        }
        release.signal()
        await withCheckedContinuation { (finished: CheckedContinuation<Void, Never>) in
            Thread {
                holder.done.wait()
                finished.resume()
            }.start()
        }
        #expect(throws: Never.self) { try holder.result?.get() }
        try await s.insertUser(Self.user("u1"), groups: [])
        #expect(s.health.status == .ready)
    }

    /// Below the free-space reserve the probe says disk full, before any write fails.
    @Test func probeHonoursTheFreeSpaceReserve() async throws {
        let (dir, path) = try Self.tempPath()
        defer { try? FileManager.default.removeItem(at: dir) }
        let s = try SQLiteStore(path: path, minimumFreeBytes: .max)
        await #expect(throws: StorageFault(.diskFull)) { try await s.ping() }
    }

    /// A log that grows past the threshold is checkpointed and truncated after the commit.
    @Test func largeLogIsTruncatedAfterCommit() async throws {
        let (dir, path) = try Self.tempPath()
        defer { try? FileManager.default.removeItem(at: dir) }
        let s = try SQLiteStore(path: path, walTruncateBytes: 64 * 1024, minimumFreeBytes: 0)
        for i in 0..<40 { try await s.insertUser(Self.user("u\(i)", hashBytes: 8_000), groups: []) }
        // Each insert adds at least two 4 KiB pages to the log; without the checkpoint it would exceed 320 KiB.
        #expect(SQLiteAccess.fileSize(path + "-wal") <= 64 * 1024 + 5 * 4096)
        await #expect(try s.allUsers().count == 40)
    }
}

/// What the lock-holding thread of ``StorageFaultTests/heldWriteLockIsLocked()`` reports back.
private final class LockHolder: @unchecked Sendable {
    // Invariant: `result` is written by the holder thread before `done` is signalled, and read only after.
    var result: Result<Void, any Error>?
    let done = DispatchSemaphore(value: 0)
}
