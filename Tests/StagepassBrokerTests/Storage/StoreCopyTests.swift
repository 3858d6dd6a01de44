import Foundation
import Testing

@testable import StagepassBroker

/// `stagepass db copy`'s engine: an SQLite file copied into a fresh PostgreSQL database of the test cluster.
@Suite(.serialized) struct StoreCopyTests {
    /// A temporary SQLite file with one of everything the broker stores, written through the store protocols.
    final class Source {
        let dir: URL
        let store: SQLiteStore
        let log: HashChainAuditLog

        init() throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("sp-copy-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            store = try SQLiteStore(path: dir.appendingPathComponent("broker.sqlite").path)
            log = HashChainAuditLog(store: store, clock: ManualClock(1000).clock)
        }

        deinit { try? FileManager.default.removeItem(at: dir) }

        func event(_ action: String, _ subject: String) throws -> AuditAppend {
            try log.entry(AuditEvent(action: action, actor: "root", subject: subject, factors: ["pwd", "otp"]))
        }

        func fill() async throws {
            let s = store
            try await s.insertUser(
                UserRecord(id: "u1", name: "alice", passwordHash: "$argon2id$a", createdAt: 10),
                groups: ["ops", "dev"]
            )
            try await s.insertUser(
                UserRecord(
                    id: "u2",
                    name: "bob",
                    passwordHash: "$argon2id$b",
                    disabled: true,
                    locked: true,
                    createdAt: 11
                ),
                groups: ["dev"]
            )
            try await log.record(AuditEvent(action: "user.create", actor: "root", subject: "alice", factors: []))
            try await s.insertFactor(
                FactorRecord(
                    id: "f1",
                    userId: "u1",
                    kind: .totp,
                    state: .active,
                    secretBox: [9, 8, 7, 6],
                    createdAt: 12
                )
            )
            try check(try await s.claimTOTPStep(factorId: "f1", step: 4242))
            try await s.touchFactor(id: "f1", at: 50)
            try await s.insertFactor(
                FactorRecord(id: "f2", userId: "u2", kind: .totp, state: .pending, secretBox: [1, 2], createdAt: 13)
            )
            try await s.replaceBackupCodes(userId: "u1", hashes: [[1, 1], [2, 2], [3, 3]])
            let codes = try await s.unusedBackupCodes(userId: "u1")
            try check(try await s.consumeBackupCode(id: codes[1].id, at: 60))
            try await s.insertWebAuthnCredential(
                WebAuthnCredentialRecord(
                    factorId: "k1",
                    userId: "u1",
                    credentialId: [0xC1, 0xC2],
                    publicKey: [0x04, 0x01],
                    algorithm: -7,
                    signCount: 7,
                    name: "yubikey",
                    aaguid: [UInt8](repeating: 0xAA, count: 16),
                    userVerifiedAtRegistration: true,
                    attestation: "none",
                    createdAt: 14,
                    lastUsedAt: 70
                ),
                factor: FactorRecord(
                    id: "k1",
                    userId: "u1",
                    kind: .webauthn,
                    state: .active,
                    secretBox: nil,
                    createdAt: 14
                )
            )
            try await s.insertSession(
                SessionRecord(
                    id: "s1",
                    tokenHash: [UInt8](repeating: 5, count: 32),
                    userId: "u1",
                    state: .mfa,
                    amr: ["pwd", "otp"],
                    authTime: 100,
                    createdAt: 100,
                    idleExpiresAt: 10_000,
                    absoluteExpiresAt: 20_000,
                    proofs: [
                        "pwd": FactorStamp(at: 100, credential: nil), "otp": FactorStamp(at: 100, credential: "f1"),
                    ]
                )
            )
            try await s.insertClient(ClientRecord(name: "ci", secretHash: [4, 4], createdAt: 15))
            try await s.putThrottle(ThrottleRecord(key: "acct:alice", failures: 2, lastFailureAt: 90))
            for i in 1...5 {
                _ = try await s.insertToken(
                    TokenRecord(
                        jti: "j\(i)",
                        kid: "k-2026",
                        userId: "u1",
                        userName: "alice",
                        sessionId: i == 5 ? nil : "s1",
                        clientId: i == 5 ? "ci" : nil,
                        role: "deployer",
                        stage: "prod",
                        audience: "deploy",
                        requestId: nil,
                        issuedAt: 200 + Int64(i),
                        expiresAt: 900
                    ),
                    audit: try event("token.issue", "j\(i)"),
                    claimRequest: nil
                )
            }
            try check(
                try await s.revoke(.jti("j2"), at: 300, reason: "leaked", audit: try event("token.revoke", "j2")) == [
                    "j2"
                ]
            )
            _ = try await s.revoke(.jti("j4"), at: 301, reason: "rotated", audit: try event("token.revoke", "j4"))
            // A layout of two sizes: the copy must keep it, or copied tokens would change list or index.
            _ = try await s.placeStatusList(seq: 1, size: 4, at: 299)
            _ = try await s.placeStatusList(seq: 6, size: 1024, at: 299)
            try await s.insertRequest(
                ApprovalRequestRecord(
                    id: "r1",
                    deviceCodeHash: [7, 7],
                    userCode: "ABCD-EFGH",
                    clientId: "ci",
                    role: "deployer",
                    stage: "prod",
                    audience: "deploy",
                    runId: "run-1",
                    commit: "abc123",
                    triggeredBy: "carol",
                    createdAt: 400,
                    expiresAt: 1000,
                    interval: 5
                ),
                audit: try event("request.create", "r1")
            )
            try await s.notePoll(requestId: "r1", at: 405, interval: 10)
            try await s.insertDelegation(
                DelegationRecord(
                    id: "d1",
                    userId: "u1",
                    userName: "alice",
                    sessionId: "s1",
                    amr: ["pwd", "otp"],
                    authTime: 100,
                    clientId: "ci",
                    role: "deployer",
                    stage: "prod",
                    audience: "deploy",
                    createdAt: 410,
                    expiresAt: 5000
                ),
                audit: try event("delegation.grant", "d1")
            )
            _ = try await s.insertApproval(
                ApprovalRecord(
                    id: "a1",
                    requestId: "r1",
                    userId: "u1",
                    userName: "alice",
                    sessionId: "s1",
                    amr: ["pwd", "otp"],
                    authTime: 100,
                    createdAt: 420,
                    binding: "bind-1",
                    delegationId: "d1"
                ),
                audit: try event("request.approve", "r1")
            )
            try check(
                try await s.transitionRequest(
                    id: "r1",
                    from: .pending,
                    to: .approved,
                    decidedBy: "alice",
                    reason: nil,
                    audit: try event("request.approved", "r1")
                )
            )
            _ = try await s.insertToken(
                TokenRecord(
                    jti: "j6",
                    kid: "k-2026",
                    userId: "u1",
                    userName: "alice",
                    sessionId: nil,
                    clientId: "ci",
                    role: "deployer",
                    stage: "prod",
                    audience: "deploy",
                    requestId: "r1",
                    issuedAt: 430,
                    expiresAt: 900
                ),
                audit: try event("token.issue", "j6"),
                claimRequest: "r1"
            )
            _ = try await s.revokeDelegations(
                ids: ["d1"],
                at: 440,
                reason: "done",
                audit: try event("delegation.revoke", "d1")
            )
        }
    }

    /// What the first test observes, gathered on a thread of its own.
    struct Observed: Sendable {
        var before = StoreSnapshot()
        var after = StoreSnapshot()
        var report: StoreCopyReport?
        var revokedSeqs: [Int64] = []
        var statusLists: [Int64] = []
        var lastSeq: Int64 = 0
        var epoch: Int64 = 0
        var box: [UInt8]?
        var replayAccepted = true
        var unusedCodes: [[UInt8]] = []
        var throttle: ThrottleRecord?
        var requestState: RequestState?
        var approvalDelegations: [String?] = []
        var delegationReason: String?
        var nextSeq: Int64 = 0
        var newCodeId: Int64 = 0
        var newRows: [AuditRow] = []
        var chainAfter: AuditVerification?
    }

    @Test func everyRecordIsCopiedAndTheChainVerifies() async throws {
        let o = try await { () async throws -> Observed in
            let source = try Source()
            try await source.fill()
            let target = try await freshTarget()
            var o = Observed()
            o.report = try await StoreCopy.copy(from: source.store, to: target)
            o.before = try await source.store.exportSnapshot()
            o.after = try await target.exportSnapshot()
            o.revokedSeqs = try await target.revokedSeqs(in: 1...6)
            o.lastSeq = try await target.lastTokenSeq()
            o.epoch = try await target.revocationEpoch()
            o.statusLists = try await target.statusLists().map(\.size)
            o.box = try await target.factor(id: "f1")?.secretBox
            o.replayAccepted = try await target.claimTOTPStep(factorId: "f1", step: 4242)
            o.unusedCodes = try await target.unusedBackupCodes(userId: "u1").map(\.codeHash)
            o.throttle = try await target.throttle(key: "acct:alice")
            o.requestState = try await target.request(id: "r1")?.state
            o.approvalDelegations = try await target.approvals(requestId: "r1").map(\.delegationId)
            o.delegationReason = try await target.delegation(id: "d1")?.revokedReason

            // New records continue the ledger, the backup-code ids and the chain from the copied head.
            let log = HashChainAuditLog(store: target, clock: ManualClock(2000).clock)
            o.nextSeq =
                try await target.insertToken(
                    TokenRecord(
                        jti: "j7",
                        kid: "k-2026",
                        userId: "u1",
                        userName: "alice",
                        sessionId: nil,
                        clientId: "ci",
                        role: "deployer",
                        stage: "prod",
                        audience: "deploy",
                        requestId: nil,
                        issuedAt: 2000,
                        expiresAt: 2600
                    ),
                    audit: try log.entry(AuditEvent(action: "token.issue", actor: "root", subject: "j7", factors: [])),
                    claimRequest: nil
                ).seq
            try await target.replaceBackupCodes(userId: "u2", hashes: [[9]])
            o.newCodeId = try await target.unusedBackupCodes(userId: "u2").first?.id ?? 0
            o.newRows = try await target.auditRows(after: 14, limit: 10)
            o.chainAfter = try await log.verify()
            return o
        }()
        let (before, after) = (o.before, o.after)
        #expect(after == before)
        #expect(after.users.count == 2 && after.factors.count == 3 && after.backupCodes.count == 3)
        #expect(after.memberships.count == 3 && after.webAuthnCredentials.count == 1 && after.sessions.count == 1)
        #expect(after.tokens.map(\.seq) == [1, 2, 3, 4, 5, 6])
        #expect(after.tokens.compactMap(\.revokedReason) == ["leaked", "rotated"])
        #expect(after.counters == ["revocation_epoch": 2])
        #expect(after.requests.count == 1 && after.approvals.count == 1 && after.delegations.count == 1)
        #expect(after.audit.count == 14)
        let report = try #require(o.report)
        #expect(report.rows.first { $0.table == "audit_log" }?.rows == 14)
        #expect(report.rows.first { $0.table == "tokens" }?.rows == 6)
        #expect(report.rows.first { $0.table == "backup_codes" }?.rows == 3)
        #expect(report.targetChain == AuditVerification(count: 14, firstBadSeq: nil, reason: nil))
        #expect(report.headHash == before.audit.last?.hash)

        // The target behaves like the source: revocation state, the status-list layout, sealed boxes, codes.
        #expect(o.revokedSeqs == [2, 4])
        #expect(o.lastSeq == 6 && o.epoch == 2)
        #expect(o.statusLists == [4, 1024])
        #expect(o.box == [9, 8, 7, 6])
        #expect(!o.replayAccepted)
        #expect(o.unusedCodes == [[1, 1], [3, 3]])
        #expect(o.throttle == nil)
        #expect(o.requestState == .issued)
        #expect(o.approvalDelegations == ["d1"])
        #expect(o.delegationReason == "done")

        #expect(o.nextSeq == 7)
        #expect(o.newCodeId > (before.backupCodes.map(\.id).max() ?? 0))
        #expect(o.newRows.map(\.seq) == [15] && o.newRows.first?.prevHash == report.headHash)
        #expect(o.chainAfter == AuditVerification(count: 15, firstBadSeq: nil, reason: nil))
    }

    @Test func aTamperedSourceIsRefusedAndNothingIsWritten() async throws {
        let (outcome, left) = try await {
            () async throws -> (Result<StoreCopyReport, StoreTransferError>, StoreSnapshot) in
            let source = try Source()
            try await source.fill()
            try await source.store.unsafeExecute("DROP TRIGGER audit_log_no_update")
            try await source.store.unsafeExecute(
                "UPDATE audit_log SET event = replace(event, 'j2', 'j3') WHERE seq = 7"
            )
            let target = try await freshTarget()
            let outcome: Result<StoreCopyReport, StoreTransferError>
            do { outcome = .success(try await StoreCopy.copy(from: source.store, to: target)) } catch {
                outcome = .failure(error as? StoreTransferError ?? .mismatch(["\(error)"]))
            }
            return (outcome, try await target.exportSnapshot())
        }()
        guard case .failure(.sourceChainBroken(let v)) = outcome else {
            Issue.record("expected sourceChainBroken, got \(outcome)")
            return
        }
        #expect(v.firstBadSeq == 7 && v.reason == "record hash does not match")
        #expect(left.rowCounts.filter { $0.table != "counters" }.allSatisfy { $0.rows == 0 })
        #expect(left.counters == ["revocation_epoch": 0])
    }

    @Test func aNonEmptyTargetIsRefusedAndNothingIsWritten() async throws {
        typealias Outcome = Result<StoreCopyReport, StoreTransferError>
        let (first, left, second) = try await { () async throws -> (Outcome, StoreSnapshot, Outcome) in
            let source = try Source()
            try await source.fill()
            func attempt(_ target: PostgresStore) async -> Outcome {
                do { return .success(try await StoreCopy.copy(from: source.store, to: target)) } catch {
                    return .failure(error as? StoreTransferError ?? .mismatch(["\(error)"]))
                }
            }
            let target = try await freshTarget()
            try await target.insertClient(ClientRecord(name: "already-here", secretHash: [1], createdAt: 1))
            let first = await attempt(target)
            let left = try await target.exportSnapshot()

            // A target holding nothing but one revocation (its epoch bump and audit record) is not empty either.
            let other = try await freshTarget()
            _ = try await other.revoke(
                .jti("none"),
                at: 1,
                reason: "x",
                audit: try source.event("token.revoke", "none")
            )
            return (first, left, await attempt(other))
        }()
        guard case .failure(let e) = first else {
            Issue.record("a non-empty target was accepted")
            return
        }
        #expect(e == .targetNotEmpty("the target database is not empty: clients has 1 row"))
        #expect(left.clients.map(\.name) == ["already-here"])
        #expect(left.users.isEmpty && left.tokens.isEmpty && left.audit.isEmpty)
        guard case .failure(.targetNotEmpty(let reason)) = second else {
            Issue.record("a target with a revocation was accepted: \(second)")
            return
        }
        #expect(reason == "the target database is not empty: audit_log has 1 row")
    }

    @Test func theSnapshotRestoresIntoSQLiteToo() async throws {
        let source = try Source()
        try await source.fill()
        let back = try SQLiteStore()
        try await back.importSnapshot(try await source.store.exportSnapshot())
        await #expect(try back.exportSnapshot() == source.store.exportSnapshot())
        await #expect(try HashChainAuditLog(store: back, clock: .system).verify().count == 14)
        await #expect(throws: StoreTransferError.self) { try await back.importSnapshot(StoreSnapshot()) }
    }
}

/// Fails a fixture (a thrown error) when a setup step did not do what it should.
private func check(_ ok: Bool, _ line: Int = #line) throws {
    if !ok { throw StoreError.backend("fixture step at line \(line) failed") }
}

/// A fresh, migrated PostgreSQL database of the test cluster (its pool stops when the store is released).
private func freshTarget() async throws -> PostgresStore {
    try await PostgresStore.open(url: try PostgresCluster.shared().createDatabase())
}
