import Foundation
import StagepassJOSE

@testable import StagepassBroker

/// Shared fixtures: one in-memory store with the real migrations, a manual clock and cheap Argon2 parameters.
struct Fixture {
    let store: SQLiteStore
    let manual: ManualClock
    let audit: MemoryAuditSink
    let hasher: PasswordHasher
    let accounts: AccountService

    /// - Parameter pool: the hashing pool; by default one of the fixture's own, so that tests running side by side
    ///   never queue behind each other.
    init(start: Int64 = 1_700_000_000, pool: WorkPool? = nil) throws {
        store = try SQLiteStore()
        manual = ManualClock(start)
        audit = MemoryAuditSink()
        hasher = try PasswordHasher(parameters: .testing, pool: pool ?? WorkPool(label: "test.fixture", workers: 2))
        accounts = AccountService(store: store, hasher: hasher, clock: manual.clock, audit: audit)
    }
}

/// `<package root>/Specs/vectors/rfc` (a copy of the shared RFC vectors, so a clean clone has them).
func vectorsURL(_ name: String) -> URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Specs/vectors/rfc").appendingPathComponent(name)
}
