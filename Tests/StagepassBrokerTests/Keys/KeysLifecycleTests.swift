import Foundation
import StagepassBroker
import StagepassJOSE
import Testing

@Suite("Keys: lifecycle and schedule")
struct KeysLifecycleTests {
    static let t0: Int64 = 1_700_000_000

    /// Across 10 rotations (two of them changing the algorithm), stepping the clock a minute at a time: exactly one
    /// active key at every step; every token signed within the last max-lifetime verifies against every JWKS a
    /// verifier could still hold under the max-age; no retired key is ever published; retired key files are gone.
    @Test func tenRotationsKeepOneActiveKeyAndEveryLiveTokenVerifies() async throws {
        let dir = try TempDir()
        let clock = ManualClock(Self.t0)
        let schedule = try KeySchedule(rotationPeriod: 3_600, prePublication: 1_200, maxTokenLifetime: 600, leeway: 60)
        let audit = MemoryAuditSink()
        let store = try makeStore(dir.keys, clock: clock, schedule: schedule, audit: audit)
        let maxAge = store.jwksMaxAge
        #expect(maxAge == 300)
        #expect(maxAge < schedule.prePublication)

        try await store.tick(now: clock.clock.now())  // bootstraps active + next
        var snapshots: [(time: Int64, jwks: JWKS)] = []
        var tokens: [(iat: Int64, token: String)] = []
        var rotations = 0
        var activeKid = try await store.signingKey().kid
        var algs: Set<JWSAlgorithm> = []
        var everUnpublished: Set<String> = []
        var manualDone: Set<Int> = []

        while rotations < 10 {
            clock.advance(60)
            let now = clock.clock.now()
            // An algorithm change is a rotation with a new alg (the new alg signs from the following rotation).
            if rotations == 3 || rotations == 6, !manualDone.contains(rotations),
                let active = await store.keys().first(where: { $0.state == .active }),
                let since = active.activates, now - since >= 1_800
            {
                try await store.rotate(alg: rotations == 3 ? .EdDSA : .PS256)
                manualDone.insert(rotations)
            }
            try await store.tick(now: now)

            let infos = await store.keys()
            #expect(infos.filter { $0.state == .active }.count == 1, "exactly one active key at \(now)")
            let jwks = try await store.jwks()
            for info in infos where !info.state.isPublished { everUnpublished.insert(info.kid) }
            #expect(jwks.keys.allSatisfy { !everUnpublished.contains($0.kid ?? "") }, "no retired key in the JWKS")
            #expect(jwks.keys.allSatisfy { $0.use == "sig" && $0.alg != nil && $0.kid == (try? $0.thumbprint()) })
            snapshots.append((now, jwks))
            snapshots.removeAll { $0.time < now - maxAge }

            let key = try await store.signingKey()
            algs.insert(key.alg)
            if key.kid != activeKid {
                rotations += 1
                activeKid = key.kid
            }
            tokens.append((now, try await signToken(store, now: now, lifetime: schedule.maxTokenLifetime)))
            tokens.removeAll { $0.iat < now - schedule.maxTokenLifetime }

            for (fetched, cached) in snapshots {
                for (iat, token) in tokens {
                    #expect(
                        verifies(token, against: cached),
                        "token signed at \(iat) must verify at \(now) with the JWKS fetched at \(fetched)"
                    )
                }
            }
        }
        #expect(algs.isSuperset(of: [.ES256, .EdDSA, .PS256]))

        // Let the last retiring keys run out, then check every retired key's file is destroyed.
        for _ in 0..<20 {
            clock.advance(60)
            try await store.tick(now: clock.clock.now())
        }
        let infos = await store.keys()
        let retired = infos.filter { $0.state == .retired }
        #expect(retired.count >= 9)
        for r in retired {
            #expect(!FileManager.default.fileExists(atPath: "\(dir.keys)/\(r.kid).pem"), "retired key file destroyed")
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.keys).filter { $0.hasSuffix(".pem") }
        #expect(Set(files) == Set(infos.filter { $0.state.isPublished }.map { "\($0.kid).pem" }))

        let actions = Set(audit.events.map(\.action))
        #expect(actions.isSuperset(of: ["key.generate", "key.rotate", "key.retire"]))
        #expect(audit.events.allSatisfy { $0.actor == "test" && $0.result == "success" })

        // A second process opening the directory sees the same keyring.
        let reopened = try makeStore(dir.keys, clock: clock, schedule: schedule)
        #expect(try await reopened.signingKey().kid == activeKid)
        #expect(try await reopened.jwks() == store.jwks())
    }

    /// A retiring key stays published exactly until every token it signed has expired plus leeway.
    @Test func retiringKeyStaysPublishedUntilItsTokensExpire() async throws {
        let dir = try TempDir()
        let clock = ManualClock(Self.t0)
        let schedule = try KeySchedule(rotationPeriod: 3_600, prePublication: 1_200, maxTokenLifetime: 600, leeway: 60)
        let store = try makeStore(dir.keys, clock: clock, schedule: schedule)
        try await store.rotate()
        let first = try await store.signingKey().kid
        clock.advance(3_600)
        let r = try await store.tick(now: clock.clock.now())
        #expect(r.rotation?.retiringKid == first)
        let demotedAt = clock.clock.now()
        clock.set(demotedAt + 660)
        try await store.tick(now: clock.clock.now())
        #expect(try await store.jwks().keys.contains { $0.kid == first }, "published through exp + leeway")
        clock.set(demotedAt + 661)
        let t = try await store.tick(now: clock.clock.now())
        #expect(t.retired == [first])
        #expect(try await !store.jwks().keys.contains { $0.kid == first })
        #expect(!FileManager.default.fileExists(atPath: "\(dir.keys)/\(first).pem"))
    }

    /// A manual rotation refuses to promote a `next` key younger than the pre-publication window unless forced.
    @Test func rotateRefusesAnUnderPublishedNextKeyUnlessForced() async throws {
        let dir = try TempDir()
        let clock = ManualClock(Self.t0)
        let store = try makeStore(dir.keys, clock: clock)
        let first = try await store.rotate()
        #expect(first.retiringKid == nil)
        let before = try snapshot(dir.keys)
        await #expect(throws: KeyStoreError.nextNotPrePublished) { try await store.rotate() }
        #expect(try snapshot(dir.keys) == before, "a refused rotation writes nothing")
        let forced = try await store.rotate(force: true)
        #expect(forced.activeKid == first.nextKid)
        #expect(forced.retiringKid == first.activeKid)
        clock.advance(KeySchedule.standard.prePublication)
        let third = try await store.rotate(alg: .EdDSA)
        #expect(third.activeKid == forced.nextKid)
        let infos = await store.keys()
        #expect(infos.first { $0.kid == third.nextKid }?.alg == "EdDSA")
    }

    /// Compromising the active key unpublishes it at once, destroys its file, and promotes `next`;
    /// compromising `next` replaces it; both report the kid and are audited.
    @Test func compromiseUnpublishesAndKeepsExactlyOneActiveKey() async throws {
        let dir = try TempDir()
        let clock = ManualClock(Self.t0)
        let audit = MemoryAuditSink()
        let store = try makeStore(dir.keys, clock: clock, audit: audit)
        let boot = try await store.rotate()
        let r = try await store.compromise(kid: boot.activeKid)
        #expect(r.kid == boot.activeKid)
        #expect(r.previousState == .active)
        #expect(r.activeKid == boot.nextKid)
        let jwks = try await store.jwks()
        #expect(!jwks.keys.contains { $0.kid == boot.activeKid })
        #expect(!FileManager.default.fileExists(atPath: "\(dir.keys)/\(boot.activeKid).pem"))
        #expect(await store.keys().filter { $0.state == .active }.count == 1)
        #expect(try await store.signingKey().kid == boot.nextKid)

        let n = try #require(r.nextKid)
        let r2 = try await store.compromise(kid: n)
        #expect(r2.previousState == .next)
        #expect(r2.activeKid == boot.nextKid)
        #expect(r2.nextKid != nil && r2.nextKid != n)
        #expect(try await !store.jwks().keys.contains { $0.kid == n })

        await #expect(throws: KeyStoreError.invalidState) { try await store.compromise(kid: n) }
        await #expect(throws: KeyStoreError.unknownKid) { try await store.compromise(kid: "nope") }
        #expect(audit.events.filter { $0.action == "key.compromise" }.map(\.subject) == [boot.activeKid, n])
    }

    /// The JWKS max-age is strictly shorter than the pre-publication window for every valid schedule.
    @Test(arguments: [(Int64(7 * 86_400), Int64(86_400)), (3_600, 1_200), (600, 40), (100, 3), (10, 2)])
    func jwksMaxAgeIsShorterThanPrePublication(rotation: Int64, pre: Int64) throws {
        let s = try KeySchedule(
            rotationPeriod: rotation,
            prePublication: pre,
            maxTokenLifetime: min(60, rotation),
            leeway: 5
        )
        #expect(s.jwksMaxAge < s.prePublication)
        #expect(s.jwksMaxAge >= 1 && s.jwksMaxAge <= 300)
    }

    @Test func invalidSchedulesAreRefused() async {
        #expect(throws: KeyStoreError.invalidSchedule) {
            try KeySchedule(rotationPeriod: 100, prePublication: 200, maxTokenLifetime: 60, leeway: 0)
        }
        #expect(throws: KeyStoreError.invalidSchedule) {
            try KeySchedule(rotationPeriod: 100, prePublication: 1, maxTokenLifetime: 60, leeway: 0)
        }
        #expect(throws: KeyStoreError.invalidSchedule) {
            try KeySchedule(rotationPeriod: 100, prePublication: 50, maxTokenLifetime: 0, leeway: 0)
        }
    }

    /// Imports and key actions are audited with the documented action names.
    @Test func everyAdminActionIsAudited() async throws {
        let dir = try TempDir()
        let clock = ManualClock(Self.t0)
        let audit = MemoryAuditSink()
        let store = try makeStore(dir.keys, clock: clock, audit: audit)
        try await store.rotate()
        let pem = try PrivateKey.generate(for: .ES256).pkcs8PEM(passphrase: nil)
        let kid = try await store.importKey(pem: pem)
        _ = try await store.compromise(kid: kid)
        let actions = audit.events.map(\.action)
        for a in ["key.generate", "key.rotate", "key.import", "key.compromise"] {
            #expect(actions.contains(a), "\(a) audited")
        }
        let serialized = audit.events.map { "\($0)" }.joined()
        #expect(!serialized.contains("correct horse"), "no passphrase in audit records")
    }

    /// The broker's loop: `runSchedule` ticks until cancelled (here it bootstraps an empty store, then rotates).
    @Test func runScheduleTicksUntilCancelled() async throws {
        let dir = try TempDir()
        let clock = ManualClock(Self.t0)
        let schedule = try KeySchedule(rotationPeriod: 100, prePublication: 40, maxTokenLifetime: 30, leeway: 5)
        let store = try makeStore(dir.keys, clock: clock, schedule: schedule)
        let loop = Task { await store.runSchedule(every: .milliseconds(10)) }
        defer { loop.cancel() }
        for _ in 0..<500 where await !store.isInitialized { try await Task.sleep(for: .milliseconds(10)) }
        let first = try await store.signingKey().kid
        clock.advance(100)
        for _ in 0..<500 where try await store.signingKey().kid == first {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(try await store.signingKey().kid != first)
        loop.cancel()
        await loop.value
    }
}
