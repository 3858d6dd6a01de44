import Dispatch
import Foundation
import Synchronization
import Testing

@testable import StagepassBroker

/// The storage backends under test.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }

    /// A fresh, migrated store: SQLite in memory, or PostgreSQL in a new database of the test cluster.
    func makeStore() async throws -> StoreUnderTest {
        switch self {
        case .sqlite:
            let s = try SQLiteStore()
            return StoreUnderTest(store: s, unsafeExecute: s.unsafeExecute, close: {})
        case .postgres:
            let s = try await PostgresStore.open(url: try PostgresCluster.shared().createDatabase())
            return StoreUnderTest(store: s, unsafeExecute: s.unsafeExecute, close: s.close)
        }
    }

    /// Runs `body` with a fresh store, closing the store afterwards. The body runs in the test's own task, so that
    /// `#expect` reports to the test; the suite is serialised so that at most one cooperative thread is blocked in a
    /// PostgreSQL call at a time (PostgresNIO's own tasks need the others).
    func run(_ body: (StoreUnderTest) async throws -> Void) async throws {
        let s = try await makeStore()
        do { try await body(s) } catch {
            await s.close()
            throw error
        }
        await s.close()
    }
}

/// A counter shared by threads.
final class Count: Sendable {
    private let n = Atomic<Int>(0)
    func add() { n.add(1, ordering: .relaxed) }
    var value: Int { n.load(ordering: .relaxed) }
}

/// Values appended by threads.
final class Collected<T: Sendable>: @unchecked Sendable {
    // Invariant: `items` is only touched under `lock`.
    private let lock = NSLock()
    private var items: [T] = []
    func append(_ x: T) { lock.withLock { items.append(x) } }
    var values: [T] { lock.withLock { items } }
}

struct StoreUnderTest: Sendable {
    let store: any BrokerStore
    let unsafeExecute: @Sendable (String) async throws -> Void
    let close: @Sendable () async -> Void
}

/// Runs `body(0..<n)` as `n` concurrent tasks (each store call in flight at once: SQLite queues its writers,
/// PostgreSQL runs them on as many pooled connections), and rethrows the first error.
func concurrently(_ n: Int, _ body: @escaping @Sendable (Int) async throws -> Void) async throws {
    let errors = Collected<String>()
    await withTaskGroup(of: Void.self) { group in
        for i in 0..<n {
            group.addTask {
                do { try await body(i) } catch { errors.append("\(error)") }
            }
        }
    }
    let failed = errors.values
    if let first = failed.first { throw StoreError.backend("\(failed.count) concurrent calls failed: \(first)") }
}

private func user(_ id: String, _ name: String, at: Int64 = 1) -> UserRecord {
    UserRecord(id: id, name: name, passwordHash: "h-\(id)", createdAt: at)
}

private func audit(_ store: any BrokerStore, _ action: String = "test") throws -> AuditAppend {
    try HashChainAuditLog(store: store, clock: ManualClock(1000).clock).entry(AuditEvent(action: action))
}

private func token(
    _ jti: String,
    user: String = "u1",
    session: String? = "s1",
    kid: String = "k1",
    at: Int64 = 10
)
    -> TokenRecord
{
    TokenRecord(
        jti: jti,
        kid: kid,
        userId: user,
        userName: "alice",
        sessionId: session,
        clientId: nil,
        role: "deployer",
        stage: "prod",
        audience: "api",
        requestId: nil,
        issuedAt: at,
        expiresAt: at + 600
    )
}

private func request(_ id: String, code: String, device: [UInt8], at: Int64 = 100) -> ApprovalRequestRecord {
    ApprovalRequestRecord(
        id: id,
        deviceCodeHash: device,
        userCode: code,
        clientId: "ci",
        role: "deployer",
        stage: "prod",
        audience: "api",
        runId: "run-\(id)",
        commit: "abc",
        triggeredBy: "bob",
        createdAt: at,
        expiresAt: at + 600,
        interval: 5
    )
}

private func delegation(
    _ id: String,
    user: String = "u1",
    session: String? = "s1",
    at: Int64,
    expires: Int64
)
    -> DelegationRecord
{
    DelegationRecord(
        id: id,
        userId: user,
        userName: "alice",
        sessionId: session,
        amr: ["pwd", "otp"],
        authTime: at,
        clientId: "ci",
        role: "deployer",
        stage: "prod",
        audience: "api",
        createdAt: at,
        expiresAt: expires
    )
}

/// One behaviour suite for every ``BrokerStore`` backend: each test runs on SQLite and on a real PostgreSQL.
@Suite(.serialized) struct StoreConformanceTests {
    // MARK: accounts

    @Test(arguments: Backend.allCases) func foreignKeysAreEnforced(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let f = FactorRecord(id: "f1", userId: "nobody", kind: .totp, state: .pending, secretBox: [1], createdAt: 0)
            await #expect(throws: (any Error).self) { try await t.store.insertFactor(f) }
            #expect(try await t.store.factors(kind: .totp).isEmpty)
        }
    }

    @Test(arguments: Backend.allCases) func usersAndGroups(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            try await s.insertUser(user("u2", "bob"), groups: ["b", "a", "a"])
            try await s.insertUser(user("u1", "Alice"), groups: [])
            await #expect(try s.groups(ofUser: "u2") == ["a", "b"])
            await #expect(throws: StoreError.conflict) { try await s.insertUser(user("u3", "bob"), groups: []) }
            await #expect(try s.user(id: "u3") == nil)
            await #expect(try s.allUsers().map(\.name) == ["Alice", "bob"])  // byte order, like SQLite's BINARY
            await #expect(try s.user(named: "bob")?.id == "u2")
            await #expect(try s.user(named: "nobody") == nil)
            try await s.setDisabled(userId: "u2", true)
            try await s.setLocked(userId: "u2", true)
            try await s.setPasswordHash(userId: "u2", "new")
            let bob = try await #require(try s.user(id: "u2"))
            #expect(bob.disabled && bob.locked && bob.passwordHash == "new" && bob.createdAt == 1)
            await #expect(throws: StoreError.notFound) { try await s.setDisabled(userId: "x", true) }
            await #expect(throws: StoreError.notFound) { try await s.setLocked(userId: "x", true) }
            await #expect(throws: StoreError.notFound) { try await s.setPasswordHash(userId: "x", "y") }
            try await s.setGroups(userId: "u2", ["c"])
            await #expect(try s.groups(ofUser: "u2") == ["c"])
            await #expect(try s.allGroups() == ["a", "b", "c"])
            await #expect(throws: StoreError.notFound) { try await s.setGroups(userId: "x", ["d"]) }
            await #expect(try s.allGroups() == ["a", "b", "c"])
        }
    }

    // MARK: factors and backup codes

    @Test(arguments: Backend.allCases) func factorsRoundTrip(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            try await s.insertUser(user("u1", "alice"), groups: [])
            try await s.insertFactor(
                FactorRecord(id: "f2", userId: "u1", kind: .totp, state: .pending, secretBox: [2], createdAt: 5)
            )
            try await s.insertFactor(
                FactorRecord(id: "f1", userId: "u1", kind: .totp, state: .active, secretBox: [1], createdAt: 5)
            )
            try await s.insertFactor(
                FactorRecord(id: "b1", userId: "u1", kind: .backup, state: .active, secretBox: nil, createdAt: 1)
            )
            await #expect(try s.factors(ofUser: "u1").map(\.id) == ["b1", "f1", "f2"])
            await #expect(try s.factors(kind: .totp).map(\.id) == ["f1", "f2"])
            await #expect(try s.factor(id: "b1")?.secretBox == nil)
            await #expect(try s.factor(id: "f1")?.secretBox == [1])
            try await s.setFactorState(id: "f2", .active)
            await #expect(try s.factor(id: "f2")?.state == .active)
            await #expect(throws: StoreError.notFound) { try await s.setFactorState(id: "nope", .active) }
            try await s.touchFactor(id: "f1", at: 77)
            await #expect(try s.factor(id: "f1")?.lastUsedAt == 77)
            // All or nothing: one unknown id leaves every box as it was.
            await #expect(throws: StoreError.notFound) { try await s.replaceSecretBoxes(["f1": [9], "zz": [9]]) }
            await #expect(try s.factor(id: "f1")?.secretBox == [1])
            try await s.replaceSecretBoxes(["f1": [8], "f2": [7]])
            await #expect(try s.factor(id: "f1")?.secretBox == [8])
            await #expect(try s.factor(id: "f2")?.secretBox == [7])
            try await s.insertFactor(
                FactorRecord(id: "f3", userId: "u1", kind: .totp, state: .pending, secretBox: [3], createdAt: 6)
            )
            try await s.deletePendingFactors(userId: "u1", kind: .totp)
            await #expect(try s.factors(ofUser: "u1").map(\.id) == ["b1", "f1", "f2"])
            try await s.deleteFactor(id: "f2")
            await #expect(try s.factor(id: "f2") == nil)
        }
    }

    @Test(arguments: Backend.allCases) func totpStepClaimIsCompareAndSet(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            try await s.insertUser(user("u1", "alice"), groups: [])
            try await s.insertFactor(
                FactorRecord(id: "f1", userId: "u1", kind: .totp, state: .active, secretBox: [1], createdAt: 0)
            )
            await #expect(try s.claimTOTPStep(factorId: "f1", step: 10))
            await #expect(try !s.claimTOTPStep(factorId: "f1", step: 10))
            await #expect(try !s.claimTOTPStep(factorId: "f1", step: 9))
            await #expect(try s.claimTOTPStep(factorId: "f1", step: 11))
            await #expect(try s.factor(id: "f1")?.lastUsedStep == 11)
            await #expect(try !s.claimTOTPStep(factorId: "nope", step: 12))
            // Sixteen concurrent claims of one step: exactly one wins.
            let wins = Count()
            try await concurrently(16) { _ in
                if try await s.claimTOTPStep(factorId: "f1", step: 20) { wins.add() }
            }
            #expect(wins.value == 1)
        }
    }

    @Test(arguments: Backend.allCases) func backupCodesAreConsumedOnce(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            try await s.insertUser(user("u1", "alice"), groups: [])
            try await s.replaceBackupCodes(userId: "u1", hashes: [[1], [2], [3]])
            let codes = try await s.unusedBackupCodes(userId: "u1")
            #expect(codes.map(\.codeHash) == [[1], [2], [3]])
            await #expect(try s.consumeBackupCode(id: codes[0].id, at: 5))
            await #expect(try !s.consumeBackupCode(id: codes[0].id, at: 6))
            await #expect(try s.unusedBackupCodes(userId: "u1").count == 2)
            let wins = Count()
            try await concurrently(16) { _ in
                if try await s.consumeBackupCode(id: codes[1].id, at: 7) { wins.add() }
            }
            #expect(wins.value == 1)
            try await s.replaceBackupCodes(userId: "u1", hashes: [[4]])
            await #expect(try s.unusedBackupCodes(userId: "u1").map(\.codeHash) == [[4]])
        }
    }

    // MARK: DPoP proofs

    /// RFC 9449 §11.1: a proof is recorded once (also under concurrency), refused while unexpired, forgotten after.
    @Test(arguments: Backend.allCases) func dpopProofsAreRecordedOnce(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            await #expect(try s.recordDPoPProof(key: "jkt-a jti-1", expiresAt: 200, now: 100))
            await #expect(try !s.recordDPoPProof(key: "jkt-a jti-1", expiresAt: 250, now: 150))
            // Another key with the same jti is another proof.
            await #expect(try s.recordDPoPProof(key: "jkt-b jti-1", expiresAt: 200, now: 150))
            // Once expired the record is gone (the proof would fail its iat check anyway).
            await #expect(try s.recordDPoPProof(key: "jkt-a jti-1", expiresAt: 400, now: 200))
            let wins = Count()
            try await concurrently(16) { _ in
                if try await s.recordDPoPProof(key: "jkt-c jti-9", expiresAt: 900, now: 300) { wins.add() }
            }
            #expect(wins.value == 1)
        }
    }

    // MARK: sessions

    @Test(arguments: Backend.allCases) func sessionsRoundTrip(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            try await s.insertUser(user("u1", "alice"), groups: [])
            var a = SessionRecord(
                id: "s1",
                tokenHash: [1, 2],
                userId: "u1",
                state: .pending,
                amr: ["pwd"],
                authTime: 10,
                createdAt: 10,
                idleExpiresAt: 100,
                absoluteExpiresAt: 1000,
                proofs: ["pwd": FactorStamp(at: 10, credential: nil)]
            )
            try await s.insertSession(a)
            await #expect(try s.session(tokenHash: [1, 2]) == a)
            await #expect(try s.session(id: "s1") == a)
            a.state = .mfa
            a.amr = ["pwd", "otp"]
            a.tokenHash = [3]
            a.proofs["otp"] = FactorStamp(at: 20, credential: "f1")
            try await s.updateSession(a)
            await #expect(try s.session(id: "s1") == a)
            await #expect(try s.session(tokenHash: [1, 2]) == nil)
            var missing = a
            missing.id = "zz"
            await #expect(throws: StoreError.notFound) { try await s.updateSession(missing) }
            var b = a
            b.id = "s2"
            b.tokenHash = [4]
            b.createdAt = 20
            b.idleExpiresAt = 50
            try await s.insertSession(b)
            var dup = b
            dup.id = "s3"
            await #expect(throws: (any Error).self) { try await s.insertSession(dup) }  // token hashes are unique
            await #expect(try s.sessions(userId: "u1").map(\.id) == ["s1", "s2"])
            await #expect(try s.deleteExpiredSessions(now: 50) == 1)
            await #expect(try s.sessions(userId: "u1").map(\.id) == ["s1"])
            try await s.deleteSession(id: "s1")
            await #expect(try s.session(id: "s1") == nil)
            try await s.insertSession(b)
            try await s.deleteSessions(userId: "u1")
            await #expect(try s.sessions(userId: "u1").isEmpty)
        }
    }

    @Test(arguments: Backend.allCases) func aSessionIsReadWithItsUserAndGroups(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            try await s.insertUser(user("u1", "alice"), groups: ["ops", "developers", "admins"])
            try await s.insertUser(user("u2", "bob"), groups: [])
            func session(_ id: String, _ user: String, _ hash: [UInt8]) -> SessionRecord {
                SessionRecord(
                    id: id,
                    tokenHash: hash,
                    userId: user,
                    state: .mfa,
                    amr: ["pwd", "otp"],
                    authTime: 10,
                    createdAt: 10,
                    idleExpiresAt: 100,
                    absoluteExpiresAt: 1000,
                    proofs: ["otp": FactorStamp(at: 10, credential: "f1")]
                )
            }
            try await s.insertSession(session("s1", "u1", [1]))
            try await s.insertSession(session("s2", "u2", [2]))
            let alice = try #require(try await s.sessionHolder(tokenHash: [1]))
            #expect(alice.session == session("s1", "u1", [1]))
            #expect(alice.user == user("u1", "alice"))
            #expect(alice.groups == ["admins", "developers", "ops"])
            let bob = try #require(try await s.sessionHolder(tokenHash: [2]))
            #expect(bob.user.name == "bob" && bob.groups.isEmpty)
            await #expect(try s.sessionHolder(tokenHash: [3]) == nil)
            // The user as it is now: disabled, with new groups.
            try await s.setDisabled(userId: "u1", true)
            try await s.setGroups(userId: "u1", ["ops"])
            let now = try #require(try await s.sessionHolder(tokenHash: [1]))
            #expect(now.user.disabled && now.groups == ["ops"])
        }
    }

    // MARK: throttles

    @Test(arguments: Backend.allCases) func throttleReserveAndRefund(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            let delay: @Sendable (Int) -> Int64 = { $0 >= 2 ? 30 : 0 }
            await #expect(
                try s.reserveAttempt(keys: ["a", "b"], now: 100, window: 600, delay: delay)
                    == .reserved(counts: [1, 1], previous: [nil, nil])
            )
            await #expect(
                try s.reserveAttempt(keys: ["a"], now: 101, window: 600, delay: delay)
                    == .reserved(counts: [2], previous: [100])
            )
            // Two counted attempts on `a`: 30 s to wait from the last one; nothing is counted meanwhile.
            await #expect(
                try s.reserveAttempt(keys: ["b", "a"], now: 110, window: 600, delay: delay)
                    == .throttled(retryAfter: 21)
            )
            await #expect(try s.throttle(key: "b") == ThrottleRecord(key: "b", failures: 1, lastFailureAt: 100))
            await #expect(
                try s.reserveAttempt(keys: ["a"], now: 131, window: 600, delay: delay)
                    == .reserved(counts: [3], previous: [101])
            )
            // A refund gives the attempt back and restores the previous time.
            try await s.refundAttempt(key: "a", reservedAt: 131, previous: 101)
            await #expect(try s.throttle(key: "a") == ThrottleRecord(key: "a", failures: 2, lastFailureAt: 101))
            // Past the window the count starts again.
            await #expect(
                try s.reserveAttempt(keys: ["a"], now: 2000, window: 600, delay: delay)
                    == .reserved(counts: [1], previous: [nil])
            )
            try await s.refundAttempt(key: "a", reservedAt: 2000, previous: nil)
            await #expect(try s.throttle(key: "a") == nil)  // a count of zero is removed
            try await s.putThrottle(ThrottleRecord(key: "c", failures: 4, lastFailureAt: 9))
            await #expect(try s.throttle(key: "c")?.failures == 4)
            try await s.clearThrottle(key: "c")
            await #expect(try s.throttle(key: "c") == nil)
        }
    }

    @Test(arguments: Backend.allCases) func concurrentReservationsNeverExceedTheLimit(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            let limit = 5
            let reserved = Count()
            let throttled = Count()
            try await concurrently(24) { i in
                // Same instant for all: after `limit` counted attempts the delay is an hour.
                let r = try await s.reserveAttempt(keys: ["acct:alice", "addr:\(i % 3)"], now: 500, window: 900) {
                    $0 >= limit ? 3600 : 0
                }
                switch r {
                case .reserved: reserved.add()
                case .throttled: throttled.add()
                }
            }
            #expect(reserved.value == limit)
            #expect(throttled.value == 24 - limit)
            await #expect(try s.throttle(key: "acct:alice")?.failures == limit)
        }
    }

    // MARK: audit

    @Test(arguments: Backend.allCases) func auditLogIsAppendOnly(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            _ = try await s.appendAudit(time: 1, event: "{}") { prev in
                #expect(prev == nil)
                return AuditRow(seq: 1, time: 1, prevHash: "0", event: "{}", hash: "h")
            }
            _ = try await s.appendAudit(time: 2, event: "{}") { prev in
                #expect(prev?.hash == "h")
                return AuditRow(seq: 2, time: 2, prevHash: "h", event: "{}", hash: "h2")
            }
            await #expect(throws: (any Error).self) { try await t.unsafeExecute("UPDATE audit_log SET event = 'x'") }
            await #expect(throws: (any Error).self) { try await t.unsafeExecute("DELETE FROM audit_log") }
            await #expect(try s.auditRows(after: 0, limit: 10).map(\.seq) == [1, 2])
            await #expect(try s.auditRows(after: 1, limit: 10).map(\.hash) == ["h2"])
            await #expect(try s.auditRows(after: 0, limit: 1).count == 1)
            // A chain function that fails appends nothing.
            await #expect(throws: StoreError.self) {
                _ = try await s.appendAudit(time: 3, event: "{}") { _ in throw StoreError.backend("no") }
            }
            await #expect(try s.auditRows(after: 0, limit: 10).count == 2)
        }
    }

    @Test(arguments: Backend.allCases) func concurrentAuditAppendsFormOneChain(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let log = HashChainAuditLog(store: t.store, clock: ManualClock(1000).clock)
            try await concurrently(16) { i in
                for j in 0..<5 { try await log.record(AuditEvent(action: "test", subject: "t\(i)-\(j)")) }
            }
            let v = try await log.verify()
            #expect(v.isIntact && v.count == 80)
            await #expect(try t.store.auditRows(after: 0, limit: 100).map(\.seq) == Array(1...80))
        }
    }

    // MARK: clients and the token ledger

    @Test(arguments: Backend.allCases) func clients(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            try await s.insertClient(ClientRecord(name: "web", secretHash: [1], createdAt: 1))
            try await s.insertClient(ClientRecord(name: "ci", secretHash: [2], createdAt: 2))
            await #expect(throws: StoreError.conflict) {
                try await s.insertClient(ClientRecord(name: "ci", secretHash: [3], createdAt: 3))
            }
            await #expect(try s.client(named: "ci")?.secretHash == [2])
            await #expect(try s.allClients().map(\.name) == ["ci", "web"])
            try await s.deleteClient(named: "ci")
            await #expect(try s.client(named: "ci") == nil)
            await #expect(throws: StoreError.notFound) { try await s.deleteClient(named: "ci") }
        }
    }

    /// Status lists are laid out contiguously from seq 1, each keeping the size it was created with, and concurrent
    /// placements of the same seq create its list once.
    @Test(arguments: Backend.allCases) func statusListsAreContiguousAndNeverResized(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            await #expect(try s.statusLists().isEmpty)
            let first = try await s.placeStatusList(seq: 1, size: 1024, at: 5)
            #expect(first == StatusListRecord(number: 1, firstSeq: 1, size: 1024, createdAt: 5))
            await #expect(try s.placeStatusList(seq: 1024, size: 4096, at: 6) == first)
            // Past the end: lists of the new size until one holds the seq.
            let third = try await s.placeStatusList(seq: 1024 + 4096 + 1, size: 4096, at: 7)
            #expect(third.number == 3 && third.firstSeq == 1024 + 4096 + 1 && third.size == 4096)
            await #expect(try s.statusLists().map(\.number) == [1, 2, 3])
            await #expect(try s.statusLists().map(\.size) == [1024, 4096, 4096])
            await #expect(throws: StoreError.conflict) { try await s.placeStatusList(seq: 0, size: 1024, at: 8) }
            let placed = Collected<Int64>()
            try await concurrently(8) { _ in
                placed.append(try await s.placeStatusList(seq: 20_000, size: 8192, at: 9).number)
            }
            #expect(Set(placed.values).count == 1)
            #expect(placed.values.first == 5)
            await #expect(try s.statusLists().count == 5)
        }
    }

    @Test(arguments: Backend.allCases) func tokensGetUniqueSeqsWithTheirAuditRecord(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            await #expect(try s.lastTokenSeq() == 0)
            let first = try await s.insertToken(token("j1"), audit: try audit(s, "token.issue"), claimRequest: nil)
            #expect(first.seq == 1)
            await #expect(try s.token(jti: "j1")?.seq == 1)
            // A duplicate jti is a conflict and leaves neither a ledger row nor an audit record.
            await #expect(throws: StoreError.conflict) {
                _ = try await s.insertToken(token("j1"), audit: try audit(s), claimRequest: nil)
            }
            await #expect(try s.auditRows(after: 0, limit: 10).count == 1)
            let seqs = Collected<Int64>()
            try await concurrently(12) { i in
                for j in 0..<4 {
                    let r = try await s.insertToken(token("c\(i)-\(j)"), audit: try audit(s), claimRequest: nil)
                    seqs.append(r.seq)
                }
            }
            #expect(seqs.values.sorted() == Array(2...49))
            await #expect(try s.lastTokenSeq() == 49)
            await #expect(try HashChainAuditLog(store: s, clock: .system).verify().count == 49)
        }
    }

    /// Group commit: a batch is one transaction; an item that conflicts (a duplicate jti, a request that is not
    /// approved) fails alone and leaves nothing, the others get contiguous seqs and chained audit records in order.
    @Test(arguments: Backend.allCases) func aBatchCommitsTogetherAndAConflictFailsAlone(_ backend: Backend) async throws
    {
        try await backend.run { t async throws in
            let s = t.store
            _ = try await s.insertToken(token("j1"), audit: try audit(s, "token.issue"), claimRequest: nil)
            let batch = [
                PendingToken(token: token("b1"), audit: try audit(s), claimRequest: nil),
                PendingToken(token: token("j1"), audit: try audit(s), claimRequest: nil),
                PendingToken(token: token("b2"), audit: try audit(s), claimRequest: nil),
                PendingToken(token: token("b3"), audit: try audit(s), claimRequest: "no-such-request"),
                PendingToken(token: token("b4"), audit: try audit(s), claimRequest: nil),
            ]
            let results = try await s.insertTokens(batch)
            #expect(results.count == 5)
            #expect((try? results[0].get())?.seq == 2)
            #expect((try? results[2].get())?.seq == 3)
            #expect((try? results[4].get())?.seq == 4)
            for i in [1, 3] {
                guard case .failure(.conflict) = results[i] else {
                    Issue.record("item \(i) should be a conflict: \(results[i])")
                    continue
                }
            }
            await #expect(try s.token(jti: "b3") == nil)
            await #expect(try s.lastTokenSeq() == 4)
            await #expect(try HashChainAuditLog(store: s, clock: .system).verify().count == 4)
        }
    }

    @Test(arguments: Backend.allCases) func revocationTargets(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            for (jti, user, session, kid, at) in [
                ("a", "u1", "s1", "k1", Int64(10)), ("b", "u1", "s2", "k1", 20), ("c", "u1", "s2", "k2", 30),
                ("d", "u2", "s3", "k2", 40), ("e", "u2", "s3", "k3", 50),
            ] {
                _ = try await s.insertToken(
                    token(jti, user: user, session: session, kid: kid, at: at),
                    audit: try audit(s),
                    claimRequest: nil
                )
            }
            let epoch = try await s.revocationEpoch()
            await #expect(try s.revoke(.jti("a"), at: 100, reason: "r", audit: try audit(s)) == ["a"])
            await #expect(try s.revoke(.jti("a"), at: 101, reason: "r", audit: try audit(s)) == [])
            await #expect(try s.revocationEpoch() == epoch + 2)
            await #expect(try s.revoke(.session("s2"), at: 102, reason: "r", audit: try audit(s)) == ["b", "c"])
            await #expect(
                try s.revoke(.user(id: "u2", issuedBefore: 40), at: 103, reason: "r", audit: try audit(s)) == ["d"]
            )
            await #expect(try s.revoke(.kid("k3"), at: 104, reason: "r", audit: try audit(s)) == ["e"])
            let a = try await #require(try s.token(jti: "a"))
            #expect(a.revokedAt == 100 && a.revokedReason == "r")
            await #expect(try s.revokedSeqs(in: 1...5) == [1, 2, 3, 4, 5])
            await #expect(try s.revokedSeqs(in: 2...3) == [2, 3])
            await #expect(try HashChainAuditLog(store: s, clock: .system).verify().count == 10)
        }
    }

    // MARK: approval requests, approvals, delegations

    @Test(arguments: Backend.allCases) func requestsTransitionOnce(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            try await s.insertRequest(request("r1", code: "AAAA-BBBB", device: [1]), audit: try audit(s))
            try await s.insertRequest(request("r2", code: "CCCC-DDDD", device: [2], at: 200), audit: try audit(s))
            await #expect(throws: StoreError.conflict) {
                try await s.insertRequest(request("r3", code: "AAAA-BBBB", device: [3]), audit: try audit(s))
            }
            await #expect(throws: StoreError.conflict) {
                try await s.insertRequest(request("r3", code: "EEEE-FFFF", device: [2]), audit: try audit(s))
            }
            await #expect(try s.request(id: "r3") == nil)
            await #expect(try s.request(id: "r1") == request("r1", code: "AAAA-BBBB", device: [1]))
            await #expect(try s.request(userCode: "CCCC-DDDD")?.id == "r2")
            await #expect(try s.request(deviceCodeHash: [2])?.id == "r2")
            await #expect(try s.pendingRequests(now: 150).map(\.id) == ["r1", "r2"])
            await #expect(try s.pendingRequests(now: 750).map(\.id) == ["r2"])
            try await s.notePoll(requestId: "r1", at: 120, interval: 10)
            let polled = try await #require(try s.request(id: "r1"))
            #expect(polled.lastPollAt == 120 && polled.interval == 10)
            // Sixteen concurrent decisions: one moves the request, with its audit record.
            let before = try await s.auditRows(after: 0, limit: 100).count
            let wins = Count()
            try await concurrently(16) { i in
                let moved = try await s.transitionRequest(
                    id: "r1",
                    from: .pending,
                    to: i % 2 == 0 ? .approved : .denied,
                    decidedBy: "u\(i)",
                    reason: i % 2 == 0 ? nil : "no",
                    audit: try audit(s)
                )
                if moved { wins.add() }
            }
            #expect(wins.value == 1)
            await #expect(try s.auditRows(after: 0, limit: 100).count == before + 1)
            await #expect(try s.request(id: "r1")?.decidedBy != nil)
            await #expect(
                try !s.transitionRequest(
                    id: "r2",
                    from: .approved,
                    to: .issued,
                    decidedBy: nil,
                    reason: nil,
                    audit: try audit(s)
                )
            )
            await #expect(
                try s.transitionRequest(
                    id: "r2",
                    from: .pending,
                    to: .approved,
                    decidedBy: "bob",
                    reason: nil,
                    audit: try audit(s)
                )
            )
            // An approved request is claimed by exactly one token.
            let claims = Count()
            try await concurrently(8) { i in
                do {
                    _ = try await s.insertToken(token("claim\(i)"), audit: try audit(s), claimRequest: "r2")
                    claims.add()
                } catch let e as StoreError where e == .conflict {}
            }
            #expect(claims.value == 1)
            let issued = try await #require(try s.request(id: "r2"))
            #expect(issued.state == .issued && issued.tokenJti != nil)
            await #expect(try s.lastTokenSeq() == 1)
            await #expect(throws: StoreError.conflict) {
                _ = try await s.insertToken(token("late"), audit: try audit(s), claimRequest: "r2")
            }
        }
    }

    @Test(arguments: Backend.allCases) func ciTokensAreAcceptedOnceAndRequestsKeepTheirCIClaims(
        _ backend: Backend
    )
        async throws
    {
        try await backend.run { t async throws in
            let s = t.store
            await #expect(try s.useCIToken(issuer: "https://ci.test", key: "jti-1", expiresAt: 1000, now: 100))
            await #expect(try !s.useCIToken(issuer: "https://ci.test", key: "jti-1", expiresAt: 1000, now: 200))
            await #expect(try s.useCIToken(issuer: "https://other.test", key: "jti-1", expiresAt: 1000, now: 200))
            // Concurrent presentations of one token: exactly one is accepted.
            let wins = Count()
            try await concurrently(8) { _ in
                if try await s.useCIToken(issuer: "https://ci.test", key: "jti-2", expiresAt: 1000, now: 300) {
                    wins.add()
                }
            }
            #expect(wins.value == 1)
            // Kept past the token's expiry (clock margin), pruned after it.
            await #expect(try !s.useCIToken(issuer: "https://ci.test", key: "jti-1", expiresAt: 1000, now: 1299))
            await #expect(try s.useCIToken(issuer: "https://ci.test", key: "jti-1", expiresAt: 5000, now: 1301))
            var r = request("r-ci", code: "GGGG-HHHH", device: [9])
            r.ciIssuer = "https://ci.test"
            r.ciClaims = #"{"repository":"acme/web","run_id":"7"}"#
            try await s.insertRequest(r, audit: try audit(s))
            await #expect(try s.request(id: "r-ci") == r)
            await #expect(try s.request(id: "r-ci")?.ciClaims == r.ciClaims)
        }
    }

    @Test(arguments: Backend.allCases) func approvalsOncePerHumanWhilePending(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            try await s.insertRequest(request("r1", code: "AAAA-BBBB", device: [1]), audit: try audit(s))
            @Sendable func approval(_ id: String, _ user: String, at: Int64) -> ApprovalRecord {
                ApprovalRecord(
                    id: id,
                    requestId: "r1",
                    userId: user,
                    userName: user,
                    sessionId: "s-\(user)",
                    amr: ["pwd", "hwk"],
                    authTime: at,
                    createdAt: at,
                    binding: "bind"
                )
            }
            await #expect(try s.insertApproval(approval("a2", "bob", at: 5), audit: try audit(s)).map(\.id) == ["a2"])
            await #expect(
                try s.insertApproval(approval("a1", "carol", at: 5), audit: try audit(s)).map(\.id) == ["a2", "a1"]
            )
            await #expect(throws: StoreError.conflict) {
                _ = try await s.insertApproval(approval("a3", "bob", at: 6), audit: try audit(s))
            }
            // Concurrent approvals by one human: one lands.
            let landed = Count()
            try await concurrently(8) { i in
                do {
                    _ = try await s.insertApproval(approval("d\(i)", "dave", at: 7), audit: try audit(s))
                    landed.add()
                } catch let e as StoreError where e == .conflict {}
            }
            #expect(landed.value == 1)
            let all = try await s.approvals(requestId: "r1")
            #expect(all.count == 3 && all[0].amr == ["pwd", "hwk"])
            _ = try await s.transitionRequest(
                id: "r1",
                from: .pending,
                to: .denied,
                decidedBy: "x",
                reason: "no",
                audit: try audit(s)
            )
            await #expect(throws: StoreError.conflict) {
                _ = try await s.insertApproval(approval("a4", "erin", at: 8), audit: try audit(s))
            }
            await #expect(throws: StoreError.conflict) {
                var lost = approval("a5", "erin", at: 8)
                lost.requestId = "nope"
                _ = try await s.insertApproval(lost, audit: try audit(s))
            }
            await #expect(try s.approvals(requestId: "r1").count == 3)
        }
    }

    @Test(arguments: Backend.allCases) func delegationsLiveAndRevokedOnce(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            try await s.insertDelegation(delegation("d1", at: 10, expires: 1000), audit: try audit(s))
            try await s.insertDelegation(delegation("d2", at: 20, expires: 1000), audit: try audit(s))
            try await s.insertDelegation(
                delegation("d3", user: "u2", session: "s9", at: 20, expires: 1000),
                audit: try audit(s)
            )
            try await s.insertDelegation(delegation("d4", at: 30, expires: 40), audit: try audit(s))
            await #expect(try s.liveDelegations(now: 50).map(\.id) == ["d3", "d2", "d1"])
            await #expect(try s.liveDelegations(userId: "u1", now: 35).map(\.id) == ["d4", "d2", "d1"])
            await #expect(try s.liveDelegations(sessionId: "s9", now: 35).map(\.id) == ["d3"])
            await #expect(
                try s.liveDelegations(clientId: "ci", role: "deployer", stage: "prod", audience: "api", now: 50).map(
                    \.id
                )
                    == ["d3", "d2", "d1"]
            )
            await #expect(
                try s.liveDelegations(clientId: "ci", role: "deployer", stage: "dev", audience: "api", now: 50).isEmpty
            )
            await #expect(try s.delegation(id: "d1")?.amr == ["pwd", "otp"])
            let before = try await s.auditRows(after: 0, limit: 100).count
            await #expect(
                try s.revokeDelegations(ids: ["d1", "d2", "zz"], at: 60, reason: "bob", audit: try audit(s)) == [
                    "d1", "d2",
                ]
            )
            await #expect(try s.revokeDelegations(ids: ["d1"], at: 61, reason: "again", audit: try audit(s)) == [])
            // Nothing revoked, nothing audited.
            await #expect(try s.auditRows(after: 0, limit: 100).count == before + 1)
            let d1 = try await #require(try s.delegation(id: "d1"))
            #expect(d1.revokedAt == 60 && d1.revokedReason == "bob")
            await #expect(try s.liveDelegations(now: 50).map(\.id) == ["d3"])
            await #expect(try s.revokeDelegations(ids: ["d3"], at: 62, reason: "x", audit: nil) == ["d3"])
            await #expect(try s.auditRows(after: 0, limit: 100).count == before + 1)
        }
    }

    // MARK: security keys

    @Test(arguments: Backend.allCases) func webAuthnCredentialsAndCounter(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            try await s.insertUser(user("u1", "alice"), groups: [])
            func key(_ id: String, _ cid: [UInt8], count: Int64 = 0) async -> (WebAuthnCredentialRecord, FactorRecord) {
                (
                    WebAuthnCredentialRecord(
                        factorId: id,
                        userId: "u1",
                        credentialId: cid,
                        publicKey: [0xA5, 1],
                        algorithm: -7,
                        signCount: count,
                        name: "key \(id)",
                        aaguid: Array(repeating: 0, count: 16),
                        userVerifiedAtRegistration: true,
                        attestation: "none",
                        createdAt: 5
                    ),
                    FactorRecord(id: id, userId: "u1", kind: .webauthn, state: .active, secretBox: nil, createdAt: 5)
                )
            }
            let (k1, f1) = await key("w1", [1, 2, 3], count: 10)
            try await s.insertWebAuthnCredential(k1, factor: f1)
            let (k2, f2) = await key("w2", [1, 2, 3])
            await #expect(throws: StoreError.conflict) { try await s.insertWebAuthnCredential(k2, factor: f2) }
            await #expect(try s.factor(id: "w2") == nil)  // the factor row went with the refused credential
            let (k3, f3) = await key("w3", [9])
            try await s.insertWebAuthnCredential(k3, factor: f3)
            await #expect(try s.webAuthnCredential(credentialId: [1, 2, 3]) == k1)
            await #expect(try s.webAuthnCredential(factorId: "w3") == k3)
            await #expect(try s.webAuthnCredentials(userId: "u1").map(\.factorId) == ["w1", "w3"])
            try await s.renameWebAuthnCredential(factorId: "w1", name: "YubiKey")
            await #expect(try s.webAuthnCredential(factorId: "w1")?.name == "YubiKey")
            await #expect(throws: StoreError.notFound) {
                try await s.renameWebAuthnCredential(factorId: "zz", name: "x")
            }
            await #expect(try !s.advanceWebAuthnSignCount(factorId: "w1", to: 10, usedAt: 6))
            await #expect(try s.advanceWebAuthnSignCount(factorId: "w1", to: 11, usedAt: 7))
            await #expect(try s.webAuthnCredential(factorId: "w1")?.lastUsedAt == 7)
            // A key that does not count.
            await #expect(try s.advanceWebAuthnSignCount(factorId: "w3", to: 0, usedAt: 8))
            let wins = Count()
            try await concurrently(16) { _ in
                if try await s.advanceWebAuthnSignCount(factorId: "w1", to: 50, usedAt: 9) { wins.add() }
            }
            #expect(wins.value == 1)
            try await s.deleteFactor(id: "w1")
            await #expect(try s.webAuthnCredential(factorId: "w1") == nil)
        }
    }

    @Test(arguments: Backend.allCases) func webAuthnChallengesAreSingleUse(_ backend: Backend) async throws {
        try await backend.run { t async throws in
            let s = t.store
            try await s.insertUser(user("u1", "alice"), groups: [])
            let c = WebAuthnChallengeRecord(
                challengeHash: [7, 7],
                userId: "u1",
                purpose: "approval",
                binding: "b",
                createdAt: 1,
                expiresAt: 100
            )
            try await s.insertWebAuthnChallenge(c)
            await #expect(throws: (any Error).self) { try await s.insertWebAuthnChallenge(c) }
            let got = Count()
            try await concurrently(16) { _ in
                if try await s.consumeWebAuthnChallenge(hash: [7, 7]) != nil { got.add() }
            }
            #expect(got.value == 1)
            await #expect(try s.consumeWebAuthnChallenge(hash: [7, 7]) == nil)
            try await s.insertWebAuthnChallenge(c)
            await #expect(try s.consumeWebAuthnChallenge(hash: [7, 7]) == c)
            for (i, exp) in [Int64(10), 20, 30].enumerated() {
                try await s.insertWebAuthnChallenge(
                    WebAuthnChallengeRecord(
                        challengeHash: [UInt8(i)],
                        userId: "u1",
                        purpose: "signin",
                        binding: nil,
                        createdAt: 1,
                        expiresAt: exp
                    )
                )
            }
            await #expect(try s.deleteExpiredWebAuthnChallenges(now: 20) == 2)
            await #expect(try s.consumeWebAuthnChallenge(hash: [2]) != nil)
        }
    }

    @Test(arguments: Backend.allCases) func pingAnswers(_ backend: Backend) async throws {
        try await backend.run { t in try await t.store.ping() }
    }

    // MARK: backend-specific

    @Test func sqliteFileDatabaseUsesWAL() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("broker.sqlite").path
        do {
            let s = try SQLiteStore(path: path)
            try await s.insertUser(UserRecord(id: "u1", name: "alice", passwordHash: "x", createdAt: 1), groups: [])
        }
        let again = try SQLiteStore(path: path)
        await #expect(try again.user(named: "alice")?.id == "u1")
        #expect(FileManager.default.fileExists(atPath: path + "-wal"))
    }

    @Test func postgresBrokersMigrateOneDatabaseAtOnce() async throws {
        do {
            let url = try PostgresCluster.shared().createDatabase()
            // Four brokers open one empty database at the same moment: each migration runs once, all open.
            let opened = Count()
            try await concurrently(4) { _ in
                let s = try await PostgresStore.open(url: url)
                try await s.ping()
                opened.add()
                await s.close()
            }
            #expect(opened.value == 4)
            let s = try await PostgresStore.open(url: url)
            try await s.insertUser(UserRecord(id: "u1", name: "alice", passwordHash: "x", createdAt: 1), groups: [])
            let again = try await PostgresStore.open(url: url)
            await #expect(try again.user(named: "alice")?.id == "u1")
            await s.close()
            await again.close()
        }
    }

    @Test func postgresURLsParseAndNeverShowThePassword() async throws {
        let u = try PostgresURL("postgres://sp:s3cret@db.example:6543/broker", environment: [:])
        #expect(u.endpoint == .tcp(host: "db.example", port: 6543))
        #expect(u.user == "sp" && u.password == "s3cret" && u.database == "broker" && u.tls == .prefer)
        #expect(!u.redacted.contains("s3cret") && !"\(u)".contains("s3cret"))
        let local = try PostgresURL("postgresql://sp@127.0.0.1/broker", environment: ["PGPASSWORD": "pw"])
        #expect(
            local.tls == .disable && local.password == "pw" && local.endpoint == .tcp(host: "127.0.0.1", port: 5432)
        )
        let socket = try PostgresURL("postgres://sp@/broker?host=/run/postgresql", environment: [:])
        #expect(socket.endpoint == .socket(path: "/run/postgresql/.s.PGSQL.5432"))
        for bad in [
            "mysql://sp@h/db", "postgres://h/db", "postgres://sp@h/", "postgres://sp@h/db?sslmode=maybe",
            "postgres://sp@h/db?color=red", "postgres://sp@/db?host=relative",
        ] {
            #expect(throws: PostgresURL.ParseError.self) { try PostgresURL(bad, environment: [:]) }
        }
    }

    @Test func postgresStoreRefusesAnUnreachableServerWithATypedError() async throws {
        do {
            // Port 1 on loopback: nothing listens there.
            await #expect(throws: StoreError.self) {
                try await PostgresStore.open(url: "postgres://sp:pw@127.0.0.1:1/db", openTimeout: .seconds(2))
            }
        }
    }
}
