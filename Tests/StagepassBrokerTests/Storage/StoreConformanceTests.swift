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
    func makeStore() throws -> StoreUnderTest {
        switch self {
        case .sqlite:
            let s = try SQLiteStore()
            return StoreUnderTest(store: s, unsafeExecute: s.unsafeExecute, close: {})
        case .postgres:
            let s = try PostgresStore(url: try PostgresCluster.shared().createDatabase())
            return StoreUnderTest(store: s, unsafeExecute: s.unsafeExecute, close: s.close)
        }
    }

    /// Runs `body` with a fresh store, closing the store afterwards. The body runs in the test's own task, so that
    /// `#expect` reports to the test; the suite is serialised so that at most one cooperative thread is blocked in a
    /// PostgreSQL call at a time (PostgresNIO's own tasks need the others).
    func run(_ body: (StoreUnderTest) throws -> Void) throws {
        let s = try makeStore()
        defer { s.close() }
        try body(s)
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
    let unsafeExecute: @Sendable (String) throws -> Void
    let close: @Sendable () -> Void
}

/// Runs `body(0..<n)` on `n` threads of their own at once, and rethrows the first error.
func concurrently(_ n: Int, _ body: @escaping @Sendable (Int) throws -> Void) throws {
    let group = DispatchGroup()
    let errors = Collected<String>()
    let start = DispatchSemaphore(value: 0)
    for i in 0..<n {
        group.enter()
        let t = Thread {
            start.wait()
            do { try body(i) } catch { errors.append("\(error)") }
            group.leave()
        }
        t.start()
    }
    for _ in 0..<n { start.signal() }
    group.wait()
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

    @Test(arguments: Backend.allCases) func foreignKeysAreEnforced(_ backend: Backend) throws {
        try backend.run { t throws in
            let f = FactorRecord(id: "f1", userId: "nobody", kind: .totp, state: .pending, secretBox: [1], createdAt: 0)
            #expect(throws: (any Error).self) { try t.store.insertFactor(f) }
            #expect(try t.store.factors(kind: .totp).isEmpty)
        }
    }

    @Test(arguments: Backend.allCases) func usersAndGroups(_ backend: Backend) throws {
        try backend.run { t throws in
            let s = t.store
            try s.insertUser(user("u2", "bob"), groups: ["b", "a", "a"])
            try s.insertUser(user("u1", "Alice"), groups: [])
            #expect(try s.groups(ofUser: "u2") == ["a", "b"])
            #expect(throws: StoreError.conflict) { try s.insertUser(user("u3", "bob"), groups: []) }
            #expect(try s.user(id: "u3") == nil)
            #expect(try s.allUsers().map(\.name) == ["Alice", "bob"])  // byte order, like SQLite's BINARY
            #expect(try s.user(named: "bob")?.id == "u2")
            #expect(try s.user(named: "nobody") == nil)
            try s.setDisabled(userId: "u2", true)
            try s.setLocked(userId: "u2", true)
            try s.setPasswordHash(userId: "u2", "new")
            let bob = try #require(try s.user(id: "u2"))
            #expect(bob.disabled && bob.locked && bob.passwordHash == "new" && bob.createdAt == 1)
            #expect(throws: StoreError.notFound) { try s.setDisabled(userId: "x", true) }
            #expect(throws: StoreError.notFound) { try s.setLocked(userId: "x", true) }
            #expect(throws: StoreError.notFound) { try s.setPasswordHash(userId: "x", "y") }
            try s.setGroups(userId: "u2", ["c"])
            #expect(try s.groups(ofUser: "u2") == ["c"])
            #expect(try s.allGroups() == ["a", "b", "c"])
            #expect(throws: StoreError.notFound) { try s.setGroups(userId: "x", ["d"]) }
            #expect(try s.allGroups() == ["a", "b", "c"])
        }
    }

    // MARK: factors and backup codes

    @Test(arguments: Backend.allCases) func factorsRoundTrip(_ backend: Backend) throws {
        try backend.run { t throws in
            let s = t.store
            try s.insertUser(user("u1", "alice"), groups: [])
            try s.insertFactor(
                FactorRecord(id: "f2", userId: "u1", kind: .totp, state: .pending, secretBox: [2], createdAt: 5)
            )
            try s.insertFactor(
                FactorRecord(id: "f1", userId: "u1", kind: .totp, state: .active, secretBox: [1], createdAt: 5)
            )
            try s.insertFactor(
                FactorRecord(id: "b1", userId: "u1", kind: .backup, state: .active, secretBox: nil, createdAt: 1)
            )
            #expect(try s.factors(ofUser: "u1").map(\.id) == ["b1", "f1", "f2"])
            #expect(try s.factors(kind: .totp).map(\.id) == ["f1", "f2"])
            #expect(try s.factor(id: "b1")?.secretBox == nil)
            #expect(try s.factor(id: "f1")?.secretBox == [1])
            try s.setFactorState(id: "f2", .active)
            #expect(try s.factor(id: "f2")?.state == .active)
            #expect(throws: StoreError.notFound) { try s.setFactorState(id: "nope", .active) }
            try s.touchFactor(id: "f1", at: 77)
            #expect(try s.factor(id: "f1")?.lastUsedAt == 77)
            // All or nothing: one unknown id leaves every box as it was.
            #expect(throws: StoreError.notFound) { try s.replaceSecretBoxes(["f1": [9], "zz": [9]]) }
            #expect(try s.factor(id: "f1")?.secretBox == [1])
            try s.replaceSecretBoxes(["f1": [8], "f2": [7]])
            #expect(try s.factor(id: "f1")?.secretBox == [8] && s.factor(id: "f2")?.secretBox == [7])
            try s.insertFactor(
                FactorRecord(id: "f3", userId: "u1", kind: .totp, state: .pending, secretBox: [3], createdAt: 6)
            )
            try s.deletePendingFactors(userId: "u1", kind: .totp)
            #expect(try s.factors(ofUser: "u1").map(\.id) == ["b1", "f1", "f2"])
            try s.deleteFactor(id: "f2")
            #expect(try s.factor(id: "f2") == nil)
        }
    }

    @Test(arguments: Backend.allCases) func totpStepClaimIsCompareAndSet(_ backend: Backend) throws {
        try backend.run { t throws in
            let s = t.store
            try s.insertUser(user("u1", "alice"), groups: [])
            try s.insertFactor(
                FactorRecord(id: "f1", userId: "u1", kind: .totp, state: .active, secretBox: [1], createdAt: 0)
            )
            #expect(try s.claimTOTPStep(factorId: "f1", step: 10))
            #expect(try !s.claimTOTPStep(factorId: "f1", step: 10))
            #expect(try !s.claimTOTPStep(factorId: "f1", step: 9))
            #expect(try s.claimTOTPStep(factorId: "f1", step: 11))
            #expect(try s.factor(id: "f1")?.lastUsedStep == 11)
            #expect(try !s.claimTOTPStep(factorId: "nope", step: 12))
            // Sixteen concurrent claims of one step: exactly one wins.
            let wins = Count()
            try concurrently(16) { _ in
                if try s.claimTOTPStep(factorId: "f1", step: 20) { wins.add() }
            }
            #expect(wins.value == 1)
        }
    }

    @Test(arguments: Backend.allCases) func backupCodesAreConsumedOnce(_ backend: Backend) throws {
        try backend.run { t throws in
            let s = t.store
            try s.insertUser(user("u1", "alice"), groups: [])
            try s.replaceBackupCodes(userId: "u1", hashes: [[1], [2], [3]])
            let codes = try s.unusedBackupCodes(userId: "u1")
            #expect(codes.map(\.codeHash) == [[1], [2], [3]])
            #expect(try s.consumeBackupCode(id: codes[0].id, at: 5))
            #expect(try !s.consumeBackupCode(id: codes[0].id, at: 6))
            #expect(try s.unusedBackupCodes(userId: "u1").count == 2)
            let wins = Count()
            try concurrently(16) { _ in
                if try s.consumeBackupCode(id: codes[1].id, at: 7) { wins.add() }
            }
            #expect(wins.value == 1)
            try s.replaceBackupCodes(userId: "u1", hashes: [[4]])
            #expect(try s.unusedBackupCodes(userId: "u1").map(\.codeHash) == [[4]])
        }
    }

    // MARK: DPoP proofs

    /// RFC 9449 §11.1: a proof is recorded once (also under concurrency), refused while unexpired, forgotten after.
    @Test(arguments: Backend.allCases) func dpopProofsAreRecordedOnce(_ backend: Backend) throws {
        try backend.run { t throws in
            let s = t.store
            #expect(try s.recordDPoPProof(key: "jkt-a jti-1", expiresAt: 200, now: 100))
            #expect(try !s.recordDPoPProof(key: "jkt-a jti-1", expiresAt: 250, now: 150))
            // Another key with the same jti is another proof.
            #expect(try s.recordDPoPProof(key: "jkt-b jti-1", expiresAt: 200, now: 150))
            // Once expired the record is gone (the proof would fail its iat check anyway).
            #expect(try s.recordDPoPProof(key: "jkt-a jti-1", expiresAt: 400, now: 200))
            let wins = Count()
            try concurrently(16) { _ in
                if try s.recordDPoPProof(key: "jkt-c jti-9", expiresAt: 900, now: 300) { wins.add() }
            }
            #expect(wins.value == 1)
        }
    }

    // MARK: sessions

    @Test(arguments: Backend.allCases) func sessionsRoundTrip(_ backend: Backend) throws {
        try backend.run { t throws in
            let s = t.store
            try s.insertUser(user("u1", "alice"), groups: [])
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
            try s.insertSession(a)
            #expect(try s.session(tokenHash: [1, 2]) == a)
            #expect(try s.session(id: "s1") == a)
            a.state = .mfa
            a.amr = ["pwd", "otp"]
            a.tokenHash = [3]
            a.proofs["otp"] = FactorStamp(at: 20, credential: "f1")
            try s.updateSession(a)
            #expect(try s.session(id: "s1") == a)
            #expect(try s.session(tokenHash: [1, 2]) == nil)
            var missing = a
            missing.id = "zz"
            #expect(throws: StoreError.notFound) { try s.updateSession(missing) }
            var b = a
            b.id = "s2"
            b.tokenHash = [4]
            b.createdAt = 20
            b.idleExpiresAt = 50
            try s.insertSession(b)
            var dup = b
            dup.id = "s3"
            #expect(throws: (any Error).self) { try s.insertSession(dup) }  // token hashes are unique
            #expect(try s.sessions(userId: "u1").map(\.id) == ["s1", "s2"])
            #expect(try s.deleteExpiredSessions(now: 50) == 1)
            #expect(try s.sessions(userId: "u1").map(\.id) == ["s1"])
            try s.deleteSession(id: "s1")
            #expect(try s.session(id: "s1") == nil)
            try s.insertSession(b)
            try s.deleteSessions(userId: "u1")
            #expect(try s.sessions(userId: "u1").isEmpty)
        }
    }

    // MARK: throttles

    @Test(arguments: Backend.allCases) func throttleReserveAndRefund(_ backend: Backend) throws {
        try backend.run { t throws in
            let s = t.store
            let delay: (Int) -> Int64 = { $0 >= 2 ? 30 : 0 }
            #expect(
                try s.reserveAttempt(keys: ["a", "b"], now: 100, window: 600, delay: delay)
                    == .reserved(counts: [1, 1], previous: [nil, nil])
            )
            #expect(
                try s.reserveAttempt(keys: ["a"], now: 101, window: 600, delay: delay)
                    == .reserved(counts: [2], previous: [100])
            )
            // Two counted attempts on `a`: 30 s to wait from the last one; nothing is counted meanwhile.
            #expect(
                try s.reserveAttempt(keys: ["b", "a"], now: 110, window: 600, delay: delay)
                    == .throttled(retryAfter: 21)
            )
            #expect(try s.throttle(key: "b") == ThrottleRecord(key: "b", failures: 1, lastFailureAt: 100))
            #expect(
                try s.reserveAttempt(keys: ["a"], now: 131, window: 600, delay: delay)
                    == .reserved(counts: [3], previous: [101])
            )
            // A refund gives the attempt back and restores the previous time.
            try s.refundAttempt(key: "a", reservedAt: 131, previous: 101)
            #expect(try s.throttle(key: "a") == ThrottleRecord(key: "a", failures: 2, lastFailureAt: 101))
            // Past the window the count starts again.
            #expect(
                try s.reserveAttempt(keys: ["a"], now: 2000, window: 600, delay: delay)
                    == .reserved(counts: [1], previous: [nil])
            )
            try s.refundAttempt(key: "a", reservedAt: 2000, previous: nil)
            #expect(try s.throttle(key: "a") == nil)  // a count of zero is removed
            try s.putThrottle(ThrottleRecord(key: "c", failures: 4, lastFailureAt: 9))
            #expect(try s.throttle(key: "c")?.failures == 4)
            try s.clearThrottle(key: "c")
            #expect(try s.throttle(key: "c") == nil)
        }
    }

    @Test(arguments: Backend.allCases) func concurrentReservationsNeverExceedTheLimit(_ backend: Backend) throws {
        try backend.run { t throws in
            let s = t.store
            let limit = 5
            let reserved = Count()
            let throttled = Count()
            try concurrently(24) { i in
                // Same instant for all: after `limit` counted attempts the delay is an hour.
                let r = try s.reserveAttempt(keys: ["acct:alice", "addr:\(i % 3)"], now: 500, window: 900) {
                    $0 >= limit ? 3600 : 0
                }
                switch r {
                case .reserved: reserved.add()
                case .throttled: throttled.add()
                }
            }
            #expect(reserved.value == limit)
            #expect(throttled.value == 24 - limit)
            #expect(try s.throttle(key: "acct:alice")?.failures == limit)
        }
    }

    // MARK: audit

    @Test(arguments: Backend.allCases) func auditLogIsAppendOnly(_ backend: Backend) throws {
        try backend.run { t throws in
            let s = t.store
            _ = try s.appendAudit(time: 1, event: "{}") { prev in
                #expect(prev == nil)
                return AuditRow(seq: 1, time: 1, prevHash: "0", event: "{}", hash: "h")
            }
            _ = try s.appendAudit(time: 2, event: "{}") { prev in
                #expect(prev?.hash == "h")
                return AuditRow(seq: 2, time: 2, prevHash: "h", event: "{}", hash: "h2")
            }
            #expect(throws: (any Error).self) { try t.unsafeExecute("UPDATE audit_log SET event = 'x'") }
            #expect(throws: (any Error).self) { try t.unsafeExecute("DELETE FROM audit_log") }
            #expect(try s.auditRows(after: 0, limit: 10).map(\.seq) == [1, 2])
            #expect(try s.auditRows(after: 1, limit: 10).map(\.hash) == ["h2"])
            #expect(try s.auditRows(after: 0, limit: 1).count == 1)
            // A chain function that fails appends nothing.
            #expect(throws: StoreError.self) {
                _ = try s.appendAudit(time: 3, event: "{}") { _ in throw StoreError.backend("no") }
            }
            #expect(try s.auditRows(after: 0, limit: 10).count == 2)
        }
    }

    @Test(arguments: Backend.allCases) func concurrentAuditAppendsFormOneChain(_ backend: Backend) throws {
        try backend.run { t throws in
            let log = HashChainAuditLog(store: t.store, clock: ManualClock(1000).clock)
            try concurrently(16) { i in
                for j in 0..<5 { try log.record(AuditEvent(action: "test", subject: "t\(i)-\(j)")) }
            }
            let v = try log.verify()
            #expect(v.isIntact && v.count == 80)
            #expect(try t.store.auditRows(after: 0, limit: 100).map(\.seq) == Array(1...80))
        }
    }

    // MARK: clients and the token ledger

    @Test(arguments: Backend.allCases) func clients(_ backend: Backend) throws {
        try backend.run { t throws in
            let s = t.store
            try s.insertClient(ClientRecord(name: "web", secretHash: [1], createdAt: 1))
            try s.insertClient(ClientRecord(name: "ci", secretHash: [2], createdAt: 2))
            #expect(throws: StoreError.conflict) {
                try s.insertClient(ClientRecord(name: "ci", secretHash: [3], createdAt: 3))
            }
            #expect(try s.client(named: "ci")?.secretHash == [2])
            #expect(try s.allClients().map(\.name) == ["ci", "web"])
            try s.deleteClient(named: "ci")
            #expect(try s.client(named: "ci") == nil)
            #expect(throws: StoreError.notFound) { try s.deleteClient(named: "ci") }
        }
    }

    /// Status lists are laid out contiguously from seq 1, each keeping the size it was created with, and concurrent
    /// placements of the same seq create its list once.
    @Test(arguments: Backend.allCases) func statusListsAreContiguousAndNeverResized(_ backend: Backend) throws {
        try backend.run { t throws in
            let s = t.store
            #expect(try s.statusLists().isEmpty)
            let first = try s.placeStatusList(seq: 1, size: 1024, at: 5)
            #expect(first == StatusListRecord(number: 1, firstSeq: 1, size: 1024, createdAt: 5))
            #expect(try s.placeStatusList(seq: 1024, size: 4096, at: 6) == first)
            // Past the end: lists of the new size until one holds the seq.
            let third = try s.placeStatusList(seq: 1024 + 4096 + 1, size: 4096, at: 7)
            #expect(third.number == 3 && third.firstSeq == 1024 + 4096 + 1 && third.size == 4096)
            #expect(try s.statusLists().map(\.number) == [1, 2, 3])
            #expect(try s.statusLists().map(\.size) == [1024, 4096, 4096])
            #expect(throws: StoreError.conflict) { try s.placeStatusList(seq: 0, size: 1024, at: 8) }
            let placed = Collected<Int64>()
            try concurrently(8) { _ in placed.append(try s.placeStatusList(seq: 20_000, size: 8192, at: 9).number) }
            #expect(Set(placed.values).count == 1)
            #expect(placed.values.first == 5)
            #expect(try s.statusLists().count == 5)
        }
    }

    @Test(arguments: Backend.allCases) func tokensGetUniqueSeqsWithTheirAuditRecord(_ backend: Backend) throws {
        try backend.run { t throws in
            let s = t.store
            #expect(try s.lastTokenSeq() == 0)
            let first = try s.insertToken(token("j1"), audit: try audit(s, "token.issue"), claimRequest: nil)
            #expect(first.seq == 1)
            #expect(try s.token(jti: "j1")?.seq == 1)
            // A duplicate jti is a conflict and leaves neither a ledger row nor an audit record.
            #expect(throws: StoreError.conflict) {
                _ = try s.insertToken(token("j1"), audit: try audit(s), claimRequest: nil)
            }
            #expect(try s.auditRows(after: 0, limit: 10).count == 1)
            let seqs = Collected<Int64>()
            try concurrently(12) { i in
                for j in 0..<4 {
                    let r = try s.insertToken(token("c\(i)-\(j)"), audit: try audit(s), claimRequest: nil)
                    seqs.append(r.seq)
                }
            }
            #expect(seqs.values.sorted() == Array(2...49))
            #expect(try s.lastTokenSeq() == 49)
            #expect(try HashChainAuditLog(store: s, clock: .system).verify().count == 49)
        }
    }

    @Test(arguments: Backend.allCases) func revocationTargets(_ backend: Backend) throws {
        try backend.run { t throws in
            let s = t.store
            for (jti, user, session, kid, at) in [
                ("a", "u1", "s1", "k1", Int64(10)), ("b", "u1", "s2", "k1", 20), ("c", "u1", "s2", "k2", 30),
                ("d", "u2", "s3", "k2", 40), ("e", "u2", "s3", "k3", 50),
            ] {
                _ = try s.insertToken(
                    token(jti, user: user, session: session, kid: kid, at: at),
                    audit: try audit(s),
                    claimRequest: nil
                )
            }
            let epoch = try s.revocationEpoch()
            #expect(try s.revoke(.jti("a"), at: 100, reason: "r", audit: try audit(s)) == ["a"])
            #expect(try s.revoke(.jti("a"), at: 101, reason: "r", audit: try audit(s)) == [])
            #expect(try s.revocationEpoch() == epoch + 2)
            #expect(try s.revoke(.session("s2"), at: 102, reason: "r", audit: try audit(s)) == ["b", "c"])
            #expect(try s.revoke(.user(id: "u2", issuedBefore: 40), at: 103, reason: "r", audit: try audit(s)) == ["d"])
            #expect(try s.revoke(.kid("k3"), at: 104, reason: "r", audit: try audit(s)) == ["e"])
            let a = try #require(try s.token(jti: "a"))
            #expect(a.revokedAt == 100 && a.revokedReason == "r")
            #expect(try s.revokedSeqs(in: 1...5) == [1, 2, 3, 4, 5])
            #expect(try s.revokedSeqs(in: 2...3) == [2, 3])
            #expect(try HashChainAuditLog(store: s, clock: .system).verify().count == 10)
        }
    }

    // MARK: approval requests, approvals, delegations

    @Test(arguments: Backend.allCases) func requestsTransitionOnce(_ backend: Backend) throws {
        try backend.run { t throws in
            let s = t.store
            try s.insertRequest(request("r1", code: "AAAA-BBBB", device: [1]), audit: try audit(s))
            try s.insertRequest(request("r2", code: "CCCC-DDDD", device: [2], at: 200), audit: try audit(s))
            #expect(throws: StoreError.conflict) {
                try s.insertRequest(request("r3", code: "AAAA-BBBB", device: [3]), audit: try audit(s))
            }
            #expect(throws: StoreError.conflict) {
                try s.insertRequest(request("r3", code: "EEEE-FFFF", device: [2]), audit: try audit(s))
            }
            #expect(try s.request(id: "r3") == nil)
            #expect(try s.request(id: "r1") == request("r1", code: "AAAA-BBBB", device: [1]))
            #expect(try s.request(userCode: "CCCC-DDDD")?.id == "r2")
            #expect(try s.request(deviceCodeHash: [2])?.id == "r2")
            #expect(try s.pendingRequests(now: 150).map(\.id) == ["r1", "r2"])
            #expect(try s.pendingRequests(now: 750).map(\.id) == ["r2"])
            try s.notePoll(requestId: "r1", at: 120, interval: 10)
            let polled = try #require(try s.request(id: "r1"))
            #expect(polled.lastPollAt == 120 && polled.interval == 10)
            // Sixteen concurrent decisions: one moves the request, with its audit record.
            let before = try s.auditRows(after: 0, limit: 100).count
            let wins = Count()
            try concurrently(16) { i in
                let moved = try s.transitionRequest(
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
            #expect(try s.auditRows(after: 0, limit: 100).count == before + 1)
            #expect(try s.request(id: "r1")?.decidedBy != nil)
            #expect(
                try !s.transitionRequest(
                    id: "r2",
                    from: .approved,
                    to: .issued,
                    decidedBy: nil,
                    reason: nil,
                    audit: try audit(s)
                )
            )
            #expect(
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
            try concurrently(8) { i in
                do {
                    _ = try s.insertToken(token("claim\(i)"), audit: try audit(s), claimRequest: "r2")
                    claims.add()
                } catch let e as StoreError where e == .conflict {}
            }
            #expect(claims.value == 1)
            let issued = try #require(try s.request(id: "r2"))
            #expect(issued.state == .issued && issued.tokenJti != nil)
            #expect(try s.lastTokenSeq() == 1)
            #expect(throws: StoreError.conflict) {
                _ = try s.insertToken(token("late"), audit: try audit(s), claimRequest: "r2")
            }
        }
    }

    @Test(arguments: Backend.allCases) func approvalsOncePerHumanWhilePending(_ backend: Backend) throws {
        try backend.run { t throws in
            let s = t.store
            try s.insertRequest(request("r1", code: "AAAA-BBBB", device: [1]), audit: try audit(s))
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
            #expect(try s.insertApproval(approval("a2", "bob", at: 5), audit: try audit(s)).map(\.id) == ["a2"])
            #expect(
                try s.insertApproval(approval("a1", "carol", at: 5), audit: try audit(s)).map(\.id) == ["a2", "a1"]
            )
            #expect(throws: StoreError.conflict) {
                _ = try s.insertApproval(approval("a3", "bob", at: 6), audit: try audit(s))
            }
            // Concurrent approvals by one human: one lands.
            let landed = Count()
            try concurrently(8) { i in
                do {
                    _ = try s.insertApproval(approval("d\(i)", "dave", at: 7), audit: try audit(s))
                    landed.add()
                } catch let e as StoreError where e == .conflict {}
            }
            #expect(landed.value == 1)
            let all = try s.approvals(requestId: "r1")
            #expect(all.count == 3 && all[0].amr == ["pwd", "hwk"])
            _ = try s.transitionRequest(
                id: "r1",
                from: .pending,
                to: .denied,
                decidedBy: "x",
                reason: "no",
                audit: try audit(s)
            )
            #expect(throws: StoreError.conflict) {
                _ = try s.insertApproval(approval("a4", "erin", at: 8), audit: try audit(s))
            }
            #expect(throws: StoreError.conflict) {
                var lost = approval("a5", "erin", at: 8)
                lost.requestId = "nope"
                _ = try s.insertApproval(lost, audit: try audit(s))
            }
            #expect(try s.approvals(requestId: "r1").count == 3)
        }
    }

    @Test(arguments: Backend.allCases) func delegationsLiveAndRevokedOnce(_ backend: Backend) throws {
        try backend.run { t throws in
            let s = t.store
            try s.insertDelegation(delegation("d1", at: 10, expires: 1000), audit: try audit(s))
            try s.insertDelegation(delegation("d2", at: 20, expires: 1000), audit: try audit(s))
            try s.insertDelegation(
                delegation("d3", user: "u2", session: "s9", at: 20, expires: 1000),
                audit: try audit(s)
            )
            try s.insertDelegation(delegation("d4", at: 30, expires: 40), audit: try audit(s))
            #expect(try s.liveDelegations(now: 50).map(\.id) == ["d3", "d2", "d1"])
            #expect(try s.liveDelegations(userId: "u1", now: 35).map(\.id) == ["d4", "d2", "d1"])
            #expect(try s.liveDelegations(sessionId: "s9", now: 35).map(\.id) == ["d3"])
            #expect(
                try s.liveDelegations(clientId: "ci", role: "deployer", stage: "prod", audience: "api", now: 50).map(
                    \.id
                )
                    == ["d3", "d2", "d1"]
            )
            #expect(
                try s.liveDelegations(clientId: "ci", role: "deployer", stage: "dev", audience: "api", now: 50).isEmpty
            )
            #expect(try s.delegation(id: "d1")?.amr == ["pwd", "otp"])
            let before = try s.auditRows(after: 0, limit: 100).count
            #expect(
                try s.revokeDelegations(ids: ["d1", "d2", "zz"], at: 60, reason: "bob", audit: try audit(s)) == [
                    "d1", "d2",
                ]
            )
            #expect(try s.revokeDelegations(ids: ["d1"], at: 61, reason: "again", audit: try audit(s)) == [])
            #expect(try s.auditRows(after: 0, limit: 100).count == before + 1)  // nothing revoked, nothing audited
            let d1 = try #require(try s.delegation(id: "d1"))
            #expect(d1.revokedAt == 60 && d1.revokedReason == "bob")
            #expect(try s.liveDelegations(now: 50).map(\.id) == ["d3"])
            #expect(try s.revokeDelegations(ids: ["d3"], at: 62, reason: "x", audit: nil) == ["d3"])
            #expect(try s.auditRows(after: 0, limit: 100).count == before + 1)
        }
    }

    // MARK: security keys

    @Test(arguments: Backend.allCases) func webAuthnCredentialsAndCounter(_ backend: Backend) throws {
        try backend.run { t throws in
            let s = t.store
            try s.insertUser(user("u1", "alice"), groups: [])
            func key(_ id: String, _ cid: [UInt8], count: Int64 = 0) -> (WebAuthnCredentialRecord, FactorRecord) {
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
            let (k1, f1) = key("w1", [1, 2, 3], count: 10)
            try s.insertWebAuthnCredential(k1, factor: f1)
            let (k2, f2) = key("w2", [1, 2, 3])
            #expect(throws: StoreError.conflict) { try s.insertWebAuthnCredential(k2, factor: f2) }
            #expect(try s.factor(id: "w2") == nil)  // the factor row went with the refused credential
            let (k3, f3) = key("w3", [9])
            try s.insertWebAuthnCredential(k3, factor: f3)
            #expect(try s.webAuthnCredential(credentialId: [1, 2, 3]) == k1)
            #expect(try s.webAuthnCredential(factorId: "w3") == k3)
            #expect(try s.webAuthnCredentials(userId: "u1").map(\.factorId) == ["w1", "w3"])
            try s.renameWebAuthnCredential(factorId: "w1", name: "YubiKey")
            #expect(try s.webAuthnCredential(factorId: "w1")?.name == "YubiKey")
            #expect(throws: StoreError.notFound) { try s.renameWebAuthnCredential(factorId: "zz", name: "x") }
            #expect(try !s.advanceWebAuthnSignCount(factorId: "w1", to: 10, usedAt: 6))
            #expect(try s.advanceWebAuthnSignCount(factorId: "w1", to: 11, usedAt: 7))
            #expect(try s.webAuthnCredential(factorId: "w1")?.lastUsedAt == 7)
            #expect(try s.advanceWebAuthnSignCount(factorId: "w3", to: 0, usedAt: 8))  // a key that does not count
            let wins = Count()
            try concurrently(16) { _ in
                if try s.advanceWebAuthnSignCount(factorId: "w1", to: 50, usedAt: 9) { wins.add() }
            }
            #expect(wins.value == 1)
            try s.deleteFactor(id: "w1")
            #expect(try s.webAuthnCredential(factorId: "w1") == nil)
        }
    }

    @Test(arguments: Backend.allCases) func webAuthnChallengesAreSingleUse(_ backend: Backend) throws {
        try backend.run { t throws in
            let s = t.store
            try s.insertUser(user("u1", "alice"), groups: [])
            let c = WebAuthnChallengeRecord(
                challengeHash: [7, 7],
                userId: "u1",
                purpose: "approval",
                binding: "b",
                createdAt: 1,
                expiresAt: 100
            )
            try s.insertWebAuthnChallenge(c)
            #expect(throws: (any Error).self) { try s.insertWebAuthnChallenge(c) }
            let got = Count()
            try concurrently(16) { _ in
                if try s.consumeWebAuthnChallenge(hash: [7, 7]) != nil { got.add() }
            }
            #expect(got.value == 1)
            #expect(try s.consumeWebAuthnChallenge(hash: [7, 7]) == nil)
            try s.insertWebAuthnChallenge(c)
            #expect(try s.consumeWebAuthnChallenge(hash: [7, 7]) == c)
            for (i, exp) in [Int64(10), 20, 30].enumerated() {
                try s.insertWebAuthnChallenge(
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
            #expect(try s.deleteExpiredWebAuthnChallenges(now: 20) == 2)
            #expect(try s.consumeWebAuthnChallenge(hash: [2]) != nil)
        }
    }

    @Test(arguments: Backend.allCases) func pingAnswers(_ backend: Backend) throws {
        try backend.run { t throws in try t.store.ping() }
    }

    // MARK: backend-specific

    @Test func sqliteFileDatabaseUsesWAL() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("broker.sqlite").path
        do {
            let s = try SQLiteStore(path: path)
            try s.insertUser(UserRecord(id: "u1", name: "alice", passwordHash: "x", createdAt: 1), groups: [])
        }
        let again = try SQLiteStore(path: path)
        #expect(try again.user(named: "alice")?.id == "u1")
        #expect(FileManager.default.fileExists(atPath: path + "-wal"))
    }

    @Test func postgresBrokersMigrateOneDatabaseAtOnce() throws {
        do {
            let url = try PostgresCluster.shared().createDatabase()
            // Four brokers open one empty database at the same moment: each migration runs once, all open.
            let opened = Count()
            try concurrently(4) { _ in
                let s = try PostgresStore(url: url)
                defer { s.close() }
                try s.ping()
                opened.add()
            }
            #expect(opened.value == 4)
            let s = try PostgresStore(url: url)
            defer { s.close() }
            try s.insertUser(UserRecord(id: "u1", name: "alice", passwordHash: "x", createdAt: 1), groups: [])
            let again = try PostgresStore(url: url)
            defer { again.close() }
            #expect(try again.user(named: "alice")?.id == "u1")
        }
    }

    @Test func postgresURLsParseAndNeverShowThePassword() throws {
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

    @Test func postgresStoreRefusesAnUnreachableServerWithATypedError() throws {
        do {
            // Port 1 on loopback: nothing listens there.
            #expect(throws: StoreError.self) {
                try PostgresStore(url: "postgres://sp:pw@127.0.0.1:1/db", openTimeout: .seconds(2))
            }
        }
    }
}
