import Foundation
import GRDB
import StagepassJOSE
import StagepassVerify
import Testing

@testable import StagepassBroker

/// Status lists sized for the issuance rate (Specs/token-profile.md §6, Specs/policy.md `tokens.status_list_size`):
/// lists keep the size they were created with, the served list is signed once per change, and concurrent fetches
/// share one signature.
@Suite struct StatusListSizingTests {
    func policy(size: Int64) -> AccessPolicy {
        var p = examplePolicy()
        p.tokens.statusListSize = size
        return p
    }

    func claims(_ jwt: String) throws -> JSONValue {
        try JSONValue.parse(Base64URL.decode(String(jwt.split(separator: ".")[1])))
    }

    /// Moves the ledger's `seq` on to `last` (as if that many tokens had been issued) without signing each one.
    func skipLedger(_ h: TokenHarness, to last: Int64) async throws {
        let store = try #require(h.human.store as? SQLiteStore)
        try await store.db.write { db in
            try db.execute(
                sql: "UPDATE sqlite_sequence SET seq = ? WHERE name = 'tokens'",
                arguments: [last]
            )
        }
    }

    func mint(_ h: TokenHarness, _ session: String) async throws -> IssuedToken {
        try await h.tokens.exchange(sessionToken: session, audience: "deploy-api", role: "builder", stage: "build")
    }

    @Test func defaultListHoldsTwoToTheTwentyEntriesAndCompressesSmall() async throws {
        #expect(TokenSettings().statusListSize == 1 << 20)
        // An hour of tokens at 10,000/s spans a few dozen lists.
        let perHour = Int64(10_000 * 3600)
        #expect((perHour + TokenSettings().statusListSize - 1) / TokenSettings().statusListSize == 35)
        let h = try await TokenHarness()
        try await h.user("dana", ["developers"])
        let s = try await h.signIn("dana")
        let t = try await mint(h, s)
        #expect(t.statusIndex == 0)
        #expect(t.statusURI == "https://stagepass.test/v1/statuslists/1")
        _ = try await h.tokens.revoke(.jti(t.jti), sessionToken: s, reason: nil)
        let jwt = try #require(try await h.tokens.statusLists.list(1))
        let c = try claims(jwt)
        #expect(c["status_list"]?["bits"]?.intValue == 1)
        let lst = try #require(c["status_list"]?["lst"]?.stringValue)
        let compressed = try Base64URL.decode(lst)
        let bytes = try Zlib.decompress(compressed, limit: 1 << 21)
        #expect(bytes.count == (1 << 20) / 8)
        #expect(bytes[0] == 1)
        #expect(bytes.dropFirst().allSatisfy { $0 == 0 })
        // ZLIB of 128 KiB of almost only zeros: a few hundred bytes.
        #expect(compressed.count < 1024)
        #expect(jwt.utf8.count < 2048)
        print("status list of 2^20 entries, one revoked: lst \(compressed.count) bytes, token \(jwt.utf8.count) bytes")
    }

    @Test func storeCreatesListsContiguouslyAndNeverResizesOne() async throws {
        let store = try SQLiteStore()
        await #expect(try store.statusLists().isEmpty)
        let a = try await store.placeStatusList(seq: 1, size: 1024, at: 10)
        #expect(a == StatusListRecord(number: 1, firstSeq: 1, size: 1024, createdAt: 10))
        // A later, different size does not touch list 1.
        await #expect(try store.placeStatusList(seq: 1024, size: 4096, at: 11) == a)
        let b = try await store.placeStatusList(seq: 1025, size: 4096, at: 12)
        #expect(b == StatusListRecord(number: 2, firstSeq: 1025, size: 4096, createdAt: 12))
        // A seq past several lists' worth creates each one in between.
        let d = try await store.placeStatusList(seq: 1024 + 4096 + 2048 + 5, size: 2048, at: 13)
        #expect(d.number == 4 && d.firstSeq == 1024 + 4096 + 2048 + 1 && d.size == 2048)
        await #expect(try store.statusLists().map(\.number) == [1, 2, 3, 4])
        await #expect(
            try store.statusLists()[2] == StatusListRecord(number: 3, firstSeq: 5121, size: 2048, createdAt: 13)
        )
        await #expect(throws: StoreError.self) { _ = try await store.placeStatusList(seq: 0, size: 1024, at: 14) }
    }

    @Test func tokensKeepTheirIndexAcrossASizeChange() async throws {
        let h = try await TokenHarness(policy: policy(size: 1024))
        try await h.user("dana", ["developers"])
        let s = try await h.signIn("dana")
        let t1 = try await mint(h, s)
        #expect(t1.statusURI.hasSuffix("/statuslists/1") && t1.statusIndex == 0)
        // The size changes: list 1 keeps its 1024 entries, the next list gets the new size.
        h.human.policies.replace(policy(size: 4096))
        let t2 = try await mint(h, s)
        #expect(t2.statusURI.hasSuffix("/statuslists/1") && t2.statusIndex == 1)
        try await skipLedger(h, to: 1024)
        let t3 = try await mint(h, s)
        #expect(t3.record.seq == 1025)
        #expect(t3.statusURI.hasSuffix("/statuslists/2") && t3.statusIndex == 0)
        let t4 = try await mint(h, s)
        #expect(t4.statusURI.hasSuffix("/statuslists/2") && t4.statusIndex == 1)
        await #expect(
            try h.tokens.statusListLayout.lists().map { [$0.number, $0.firstSeq, $0.size] } == [
                [1, 1, 1024], [2, 1025, 4096],
            ]
        )
        // Back to a small size: list 2 keeps 4096 entries; list 3 starts after it.
        h.human.policies.replace(policy(size: 1024))
        try await skipLedger(h, to: 1024 + 4096)
        let t5 = try await mint(h, s)
        #expect(t5.statusURI.hasSuffix("/statuslists/3") && t5.statusIndex == 0)
        #expect(try await h.tokens.statusLists.count() == 3)

        // Revoke t1 and t4: each list shows exactly its own token's bit, and a verifier holding all three lists
        // sees t1 and t4 revoked and the others valid.
        _ = try await h.tokens.revoke(.jti(t1.jti), sessionToken: s, reason: nil)
        _ = try await h.tokens.revoke(.jti(t4.jti), sessionToken: s, reason: nil)
        #expect(try await h.tokens.statusLists.revokedIndices(1) == [0])
        #expect(try await h.tokens.statusLists.revokedIndices(2) == [1])
        #expect(try await h.tokens.statusLists.revokedIndices(3) == [])
        var docs: [StatusListDocument] = []
        var sizes: [Int] = []
        for n in Int64(1)...3 {
            let jwt = try #require(try await h.tokens.statusLists.list(n))
            let lst = try #require(try claims(jwt)["status_list"]?["lst"]?.stringValue)
            sizes.append(try Zlib.decompress(Base64URL.decode(lst), limit: 1 << 21).count * 8)
            docs.append(StatusListDocument(jwt: jwt, fetchedAt: h.manual.clock.now()))
        }
        #expect(sizes == [1024, 4096, 1024])
        let now = h.manual.clock.now()
        let v = Verifier(
            configuration: try VerifierConfiguration(issuer: h.issuer, audiences: ["deploy-api"], cacheCapacity: 0),
            keys: StaticKeySource(KeySet(jwks: try await h.keys.jwks())),
            statusLists: StaticStatusListSource(docs),
            clock: { now }
        )
        for t in [t1, t4] { #expect(throws: VerificationError(.revoked, "")) { try v.verify(t.accessToken) } }
        for t in [t2, t3, t5] { #expect(throws: Never.self) { try v.verify(t.accessToken) } }
    }

    @Test func listsOfTokensIssuedBeforeTheLayoutKeepTheirOldSize() async throws {
        // A database from before the layout table: its tokens sat in lists of 2^16 by seq.
        let queue = try DatabaseQueue()
        try SQLiteStore.migrator.migrate(queue, upTo: "v4-factor-proofs")
        try await queue.write { db in
            try db.execute(
                sql: """
                    INSERT INTO tokens (jti, kid, user_id, user_name, role, stage, audience, issued_at, expires_at)
                    VALUES ('a', 'k', 'u', 'n', 'r', 's', 'aud', 1, 2);
                    UPDATE sqlite_sequence SET seq = 70000 WHERE name = 'tokens';
                    INSERT INTO tokens (jti, kid, user_id, user_name, role, stage, audience, issued_at, expires_at)
                    VALUES ('b', 'k', 'u', 'n', 'r', 's', 'aud', 1, 2);
                    """
            )
        }
        try SQLiteStore.migrator.migrate(queue)
        let lists = try await queue.read { db in
            try Row.fetchAll(db, sql: "SELECT number, first_seq, size FROM status_lists ORDER BY number").map {
                [$0["number"], $0["first_seq"], $0["size"]] as [Int64]
            }
        }
        #expect(lists == [[1, 1, 65536], [2, 65537, 65536]])
        // An empty ledger gets no legacy list: the first token creates list 1 with the policy's size.
        let empty = try DatabaseQueue()
        try SQLiteStore.migrator.migrate(empty)
        await #expect(try empty.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM status_lists") } == 0)
    }

    @Test func listIsSignedOncePerChange() async throws {
        let h = try await TokenHarness(policy: policy(size: 1024))
        try await h.user("dana", ["developers"])
        let s = try await h.signIn("dana")
        let t1 = try await mint(h, s)
        try await skipLedger(h, to: 1024)
        let t2 = try await mint(h, s)
        #expect(t2.statusURI.hasSuffix("/statuslists/2"))
        let lists = h.tokens.statusLists
        let first = try #require(try await lists.list(1))
        #expect(await lists.signatures == 1)
        // Cache hits: nothing changed, the same bytes, no signature.
        for _ in 0..<5 { #expect(try await lists.list(1) == first) }
        h.manual.advance(29)
        #expect(try await lists.list(1) == first)
        #expect(await lists.signatures == 1)
        _ = try await lists.list(2)
        #expect(await lists.signatures == 2)
        // A revocation in list 2 moves the epoch; list 1's bits did not change, so it is not signed again.
        _ = try await h.tokens.revoke(.jti(t2.jti), sessionToken: s, reason: nil)
        #expect(try await lists.list(1) == first)
        #expect(await lists.signatures == 2)
        let second = try #require(try await lists.list(2))
        #expect(await lists.signatures == 3)
        #expect(try await lists.list(2) == second)
        #expect(await lists.signatures == 3)
        // A revocation in list 1 re-signs list 1 once.
        _ = try await h.tokens.revoke(.jti(t1.jti), sessionToken: s, reason: nil)
        let third = try #require(try await lists.list(1))
        #expect(third != first)
        #expect(try await lists.list(1) == third)
        #expect(await lists.signatures == 4)
        // Half the ttl after signing, the list is signed again (its iat moves; verifiers count age from it).
        h.manual.advance(30)
        let fourth = try #require(try await lists.list(1))
        #expect(fourth != third)
        #expect(await lists.signatures == 5)
        #expect(try claims(fourth)["iat"]?.intValue == h.manual.clock.now())
        // A key rotation re-signs with the new key.
        try await h.keys.rotate(force: true)
        let fifth = try #require(try await lists.list(1))
        #expect(fifth != fourth)
        #expect(await lists.signatures == 6)
    }

    @Test func concurrentFetchesShareOneSignature() async throws {
        let h = try await TokenHarness()
        try await h.user("dana", ["developers"])
        let s = try await h.signIn("dana")
        let t = try await mint(h, s)
        let lists = h.tokens.statusLists
        _ = try await lists.list(1)
        let before = await lists.signatures
        _ = try await h.tokens.revoke(.jti(t.jti), sessionToken: s, reason: nil)
        let got = try await withThrowingTaskGroup(of: String?.self) { group in
            for _ in 0..<64 { group.addTask { try await lists.list(1) } }
            var out: [String?] = []
            for try await r in group { out.append(r) }
            return out
        }
        #expect(got.count == 64)
        #expect(Set(got.compactMap { $0 }).count == 1)
        #expect(got.allSatisfy { $0 != nil })
        #expect(await lists.signatures == before + 1)
    }
}
