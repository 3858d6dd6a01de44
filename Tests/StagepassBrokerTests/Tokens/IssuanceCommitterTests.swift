import Foundation
import StagepassJOSE
import StagepassVerify
import Testing

@testable import StagepassBroker

/// Group commit of issued tokens (``IssuanceCommitter``, ``TokenStore/insertTokens(_:)``): many tokens per
/// transaction, each one signed only after its batch committed, the audit chain intact, and one item's conflict
/// rolled back alone.
@Suite struct IssuanceCommitterTests {
    /// Polls (without a time limit) until `committer` holds `n` waiters.
    static func waitForPending(_ committer: IssuanceCommitter, _ n: Int) async {
        while committer.pendingCount < n { try? await Task.sleep(for: .milliseconds(1)) }
    }

    /// 200 concurrent exchanges gathered while the writer is held, then written: every token has its own seq, its
    /// ledger row and its `token.issue` record, the chain verifies, and the 200 went in one transaction (the cap is
    /// 256), so one fsync covered them all.
    @Test func twoHundredConcurrentIssuancesShareACommitAndTheChainVerifies() async throws {
        let h = try await TokenHarness()
        try await h.user("dana", ["developers"])
        let s = try await h.signIn("dana")
        let auditBefore = try await h.human.audit.verify().count
        let committer = h.tokens.issuance
        let before = committer.stats
        committer.hold()
        let issued = try await withThrowingTaskGroup(of: IssuedToken.self) { group in
            for _ in 0..<200 {
                group.addTask {
                    try await h.tokens.exchange(
                        sessionToken: s,
                        audience: "deploy-api",
                        role: "builder",
                        stage: "build"
                    )
                }
            }
            await Self.waitForPending(committer, 200)
            committer.release()
            var out: [IssuedToken] = []
            for try await t in group { out.append(t) }
            return out
        }
        let stats = committer.stats
        print(
            "200 concurrent issuances: \(stats.commits - before.commits) commit(s), largest batch \(stats.largestBatch)"
        )
        #expect(issued.count == 200)
        #expect(Set(issued.map(\.record.seq)).count == 200)
        #expect(Set(issued.map(\.statusIndex)).count == 200)
        #expect(Set(issued.map(\.jti)).count == 200)
        #expect(stats.commits - before.commits == 1)
        #expect(stats.items - before.items == 200)
        #expect(stats.largestBatch == 200)
        // Every returned token has its durable ledger row and audit record; the chain is intact.
        let check = try await h.human.audit.verify()
        #expect(check.isIntact)
        #expect(check.count == auditBefore + 200)
        let audited = await Set(
            try h.auditEvents.filter { $0.action == "token.issue" }.compactMap { $0.details["jti"] }
        )
        #expect(Set(issued.map(\.jti)).isSubset(of: audited))
        for t in issued { await #expect(try h.human.store.token(jti: t.jti)?.seq == t.record.seq) }
        // And every one verifies offline with its status-list entry.
        let v = try await h.verifier()
        for t in issued.prefix(5) { _ = try v.verify(t.accessToken) }
    }

    /// Without holding the writer: concurrent issuances still batch by themselves (the next batch gathers while one
    /// commits) on a file database with `synchronous = FULL`; the figures are printed, the outcome asserted.
    @Test func naturalBatchingOnAFileDatabase() async throws {
        let tmp = try TempDir()
        let store = try SQLiteStore(path: tmp.path + "/batch.db")
        let committer = await IssuanceCommitter(store: store)
        let audit = HashChainAuditLog(store: store, clock: .system)
        let records = try await withThrowingTaskGroup(of: TokenRecord.self) { group in
            for i in 0..<200 {
                group.addTask { try await committer.commit(try Self.pending(i, audit: audit)) }
            }
            var out: [TokenRecord] = []
            for try await r in group { out.append(r) }
            return out
        }
        let stats = committer.stats
        print("natural batching, 200 issuances: \(stats.commits) commits, largest batch \(stats.largestBatch)")
        #expect(Set(records.map(\.seq)).count == 200)
        #expect(stats.items == 200 && stats.failedCommits == 0)
        let check = try await audit.verify()
        #expect(check.isIntact && check.count == 200)
    }

    /// In one batch, a claim of a request that is not `approved` and a second claim of a request the same batch
    /// already claimed fail alone; the other items commit, and the chain holds exactly their records, in order.
    @Test func aConflictingItemFailsAloneAndTheOthersCommit() async throws {
        let f = try Fixture()
        let audit = HashChainAuditLog(store: f.store, clock: f.manual.clock)
        try await f.store.insertRequest(
            Self.request("req_a", state: .approved),
            audit: try audit.entry(Self.event("a"))
        )
        try await f.store.insertRequest(Self.request("req_b", state: .pending), audit: try audit.entry(Self.event("b")))
        let batch = [
            try Self.pending(0, audit: audit, claim: "req_a"),
            try Self.pending(1, audit: audit, claim: "req_b"),  // pending, not approved: conflict
            try Self.pending(2, audit: audit),
            try Self.pending(3, audit: audit, claim: "req_a"),  // claimed by item 0 in this batch: conflict
            try Self.pending(4, audit: audit),
        ]
        let results = try await f.store.insertTokens(batch)
        #expect(results.count == 5)
        let ok = results.compactMap { try? $0.get() }
        #expect(ok.map(\.jti) == ["tok_0", "tok_2", "tok_4"])
        #expect(ok.map(\.seq) == [1, 2, 3])
        for i in [1, 3] {
            #expect(throws: StoreError.conflict) { try results[i].get() }
            await #expect(try f.store.token(jti: "tok_\(i)") == nil)
        }
        await #expect(try f.store.request(id: "req_a")?.state == .issued)
        await #expect(try f.store.request(id: "req_a")?.tokenJti == "tok_0")
        await #expect(try f.store.request(id: "req_b")?.state == .pending)
        let check = try await audit.verify()
        #expect(check.isIntact && check.count == 5)
        let jtis = try await f.store.auditRows(after: 2, limit: 10).map {
            try JSONDecoder().decode(AuditEvent.self, from: Data($0.event.utf8)).details["jti"]
        }
        #expect(jtis == ["tok_0", "tok_2", "tok_4"])
    }

    /// The same through the committer: each waiter gets its own outcome from the shared transaction.
    @Test func eachWaiterGetsItsOwnResult() async throws {
        let f = try Fixture()
        let audit = HashChainAuditLog(store: f.store, clock: f.manual.clock)
        try await f.store.insertRequest(
            Self.request("req_a", state: .approved),
            audit: try audit.entry(Self.event("a"))
        )
        let committer = await IssuanceCommitter(store: f.store)
        committer.hold()
        let outcomes = await withTaskGroup(of: (Int, Bool).self) { group in
            for i in 0..<4 {
                let item = try? Self.pending(i, audit: audit, claim: "req_a")
                group.addTask {
                    guard let item else { return (i, false) }
                    do {
                        _ = try await committer.commit(item)
                        return (i, true)
                    } catch let e as StoreError {
                        return (i, e != .conflict)
                    } catch { return (i, false) }
                }
            }
            await Self.waitForPending(committer, 4)
            committer.release()
            var out: [Int: Bool] = [:]
            for await (i, ok) in group { out[i] = ok }
            return out
        }
        // One claim of the request wins, three are refused; all four shared one transaction.
        #expect(outcomes.values.filter { $0 }.count == 1)
        #expect(committer.stats.commits == 1 && committer.stats.largestBatch == 4)
        let check = try await audit.verify()
        #expect(check.isIntact && check.count == 2)
        await #expect(try f.store.request(id: "req_a")?.state == .issued)
    }

    /// A batch larger than the cap is split: no transaction holds more than `maxBatch` items.
    @Test func batchesAreCapped() async throws {
        let f = try Fixture()
        let audit = HashChainAuditLog(store: f.store, clock: f.manual.clock)
        let committer = await IssuanceCommitter(store: f.store, maxBatch: 8)
        committer.hold()
        let seqs = try await withThrowingTaskGroup(of: Int64.self) { group in
            for i in 0..<20 {
                let item = try Self.pending(i, audit: audit)
                group.addTask { try await committer.commit(item).seq }
            }
            await Self.waitForPending(committer, 20)
            committer.release()
            var out: [Int64] = []
            for try await s in group { out.append(s) }
            return out
        }
        #expect(Set(seqs) == Set(1...20))
        #expect(committer.stats.largestBatch == 8 && committer.stats.commits == 3)
        await #expect(try audit.verify().isIntact)
    }

    /// A storage failure of the whole transaction reaches every waiter of the batch; nothing of it was written.
    @Test func aFailedTransactionFailsEveryWaiter() async throws {
        let f = try Fixture()
        let audit = HashChainAuditLog(store: f.store, clock: f.manual.clock)
        // The batched write fails as a full disk would: nothing written.
        let committer = IssuanceCommitter(maxBatch: 256) { _ in throw StorageFault(.diskFull, resultCode: 13) }
        committer.hold()
        let failures = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<3 {
                let item = try? Self.pending(i, audit: audit)
                group.addTask {
                    guard let item else { return false }
                    do { _ = try await committer.commit(item) } catch let e as StorageFault {
                        return e.cause == .diskFull
                    } catch { return false }
                    return false
                }
            }
            await Self.waitForPending(committer, 3)
            committer.release()
            var n = 0
            for await failed in group where failed { n += 1 }
            return n
        }
        #expect(failures == 3)
        #expect(committer.stats.failedCommits == 1)
        await #expect(try f.store.lastTokenSeq() == 0)
        await #expect(try audit.verify().count == 0)
    }

    // MARK: fixtures

    static func event(_ what: String) -> AuditEvent {
        AuditEvent(action: "request.create", actor: "acme-web", subject: "acme-web", details: ["request": what])
    }

    static func request(_ id: String, state: RequestState) -> ApprovalRequestRecord {
        ApprovalRequestRecord(
            id: id,
            deviceCodeHash: Array(id.utf8),
            userCode: "CODE-" + id,
            clientId: "acme-web",
            role: "deployer",
            stage: "production",
            audience: "deploy-api",
            runId: "run-" + id,
            commit: nil,
            triggeredBy: nil,
            createdAt: 1_700_000_000,
            expiresAt: 1_700_000_600,
            state: state,
            interval: 5
        )
    }

    static func pending(_ i: Int, audit: HashChainAuditLog, claim: String? = nil) throws -> PendingToken {
        let jti = "tok_\(i)"
        let row = TokenRecord(
            jti: jti,
            kid: "kid",
            userId: "u1",
            userName: "dana",
            sessionId: nil,
            clientId: claim == nil ? nil : "acme-web",
            role: "builder",
            stage: "build",
            audience: "deploy-api",
            requestId: claim,
            issuedAt: 1_700_000_000,
            expiresAt: 1_700_003_600
        )
        let entry = try audit.entry(
            AuditEvent(action: "token.issue", actor: "dana", subject: "dana", details: ["jti": jti])
        )
        return PendingToken(token: row, audit: entry, claimRequest: claim)
    }
}
