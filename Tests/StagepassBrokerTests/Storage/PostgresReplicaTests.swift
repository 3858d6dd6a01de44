import Foundation
import PostgresNIO
import StagepassJOSE
import Testing

@testable import StagepassBroker

/// Brokers sharing one PostgreSQL database: the keyring in the database (one active key, one JWKS, key changes and
/// their audit records in one transaction, compare-and-set between writers) and the schedule lease.
@Suite(.serialized) struct PostgresReplicaTests {
    static let passphrase = KeyPassphrase.passphrase("correct horse")

    func keyStore(
        _ db: PostgresStore,
        clock: ManualClock,
        passphrase: KeyPassphrase = Self.passphrase
    ) throws -> KeyStore {
        try KeyStore(
            configuration: KeyStoreConfiguration(
                directory: "/nonexistent/stagepass-keys",
                passphrase: passphrase,
                clock: clock.clock,
                audit: HashChainAuditLog(store: db, clock: clock.clock),
                actor: "test",
                rsaBits: 2048,
                database: db
            )
        )
    }

    func actions(_ db: PostgresStore) async throws -> [String] {
        try await db.auditRows(after: 0, limit: 1000).compactMap {
            try JSONValue.parse($0.event)["action"]?.stringValue
        }
    }

    @Test func twoBrokersSignWithTheOneActiveKeyAndPublishOneJWKS() async throws {
        let url = try PostgresCluster.shared().createDatabase()
        let (a, b) = (try await PostgresStore.open(url: url), try await PostgresStore.open(url: url))
        let clock = ManualClock(1_700_000_000)
        let ka = try keyStore(a, clock: clock)
        let kb = try keyStore(b, clock: clock)
        #expect(await !kb.isInitialized)

        let r = try await ka.rotate()
        // B reads the keyring version before signing: it signs with A's new key without being told.
        #expect(try await kb.signingKey().kid == r.activeKid)
        #expect(try await ka.jwks() == kb.jwks())
        #expect(try await kb.jwks().keys.compactMap(\.kid) == [r.activeKid, r.nextKid])
        let token = try await signToken(kb, now: clock.clock.now(), lifetime: 300)
        #expect(verifies(token, against: try await ka.jwks()))
        // The change and its audit records were one transaction; the private keys are stored encrypted.
        await #expect(try actions(a) == ["key.generate", "key.generate", "key.rotate"])
        #expect(try a.keyringVersion() == 1)
        let pems = try await a.rows("SELECT private_key_pem FROM keyring").map { try $0.decode(String.self) }
        #expect(pems.count == 2 && pems.allSatisfy { $0.contains("BEGIN ENCRYPTED PRIVATE KEY") })

        // A compromise committed by B: A stops signing with and publishing the key at its next request, also when
        // it has just checked the keyring for an earlier request (a shared check only serves requests made
        // before it began).
        #expect(try await ka.signingKey(coveringLifetime: 300, requestedAt: .now).kid == r.activeKid)
        _ = try await kb.compromise(kid: r.activeKid)
        #expect(try await ka.signingKey(coveringLifetime: 300, requestedAt: .now).kid == r.nextKid)
        #expect(try await ka.signingKey().kid == r.nextKid)
        #expect(try await !ka.jwks().keys.contains { $0.kid == r.activeKid })
        let destroyed = try await a.rows("SELECT private_key_pem IS NULL FROM keyring WHERE kid = \(r.activeKid)")
        #expect(try destroyed.first?.decode(Bool.self) == true)
        await #expect(try actions(a).suffix(2) == ["key.generate", "key.compromise"])
    }

    @Test func concurrentChangesCommitOneAtATime() async throws {
        let url = try PostgresCluster.shared().createDatabase()
        let (a, b) = (try await PostgresStore.open(url: url), try await PostgresStore.open(url: url))
        let clock = ManualClock(1_700_000_000)
        let (ka, kb) = (try keyStore(a, clock: clock), try keyStore(b, clock: clock))
        try await ka.rotate()
        // A stale writer writes nothing.
        #expect(try a.commitKeyring(KeyringChange(expectedVersion: 0, keys: [], newPEMs: [:], audit: [])) == nil)
        #expect(try a.keyringVersion() == 1)
        // Both rotate at once: each change is computed on the keyring the other left (one recomputes).
        async let ra = ka.rotate(force: true)
        async let rb = kb.rotate(force: true)
        let (x, y) = try await (ra, rb)
        #expect(x.activeKid != y.activeKid)
        #expect(try a.keyringVersion() == 3)
        let states = try await a.rows("SELECT state FROM keyring").map { try $0.decode(String.self) }
        #expect(states.filter { $0 == "active" }.count == 1 && states.filter { $0 == "next" }.count == 1)
        await #expect(try actions(a).filter { $0 == "key.rotate" }.count == 3)
    }

    @Test func aBrokerWithAnotherPassphraseRefusesTheKeyring() async throws {
        let url = try PostgresCluster.shared().createDatabase()
        let a = try await PostgresStore.open(url: url)
        let clock = ManualClock(1_700_000_000)
        try await keyStore(a, clock: clock).rotate()
        #expect(throws: KeyStoreError.self) {
            try keyStore(a, clock: clock, passphrase: .passphrase("wrong horse"))
        }
    }

    /// Waits (bounded) until `condition` holds; returns whether it did.
    func eventually(_ condition: () -> Bool) async throws -> Bool {
        for _ in 0..<300 {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return condition()
    }

    @Test func oneLeaseHolderAtATimeAndTheLeaseMovesWhenItsConnectionDies() async throws {
        let url = try PostgresCluster.shared().createDatabase()
        let (a, b) = (try await PostgresStore.open(url: url), try await PostgresStore.open(url: url))
        let (la, lb) = (ScheduleLease(), ScheduleLease())
        let ta = Task { await a.holdLease(la, every: .milliseconds(50)) }
        #expect(try await eventually { la.isHeld })
        let tb = Task { await b.holdLease(lb, every: .milliseconds(50)) }
        // B tries many times while A holds the lease, and never gets it.
        try await Task.sleep(for: .milliseconds(500))
        #expect(la.isHeld && !lb.isHeld)

        // The holder's connection dies (as when its process is killed): the server releases the lock and B takes it.
        let space = PostgresStore.lockSpace + PostgresStore.LockKey.scheduleLease.rawValue
        try await b.unsafeExecute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = \(space) AND granted"
        )
        #expect(try await eventually { lb.isHeld })

        // A graceful stop releases the lease at once.
        tb.cancel()
        await tb.value
        #expect(!lb.isHeld)
        // A's pooled connection was terminated under it: its task is cancelled, not awaited (see the lease docs).
        ta.cancel()
    }
}
