import Foundation
import StagepassJOSE
import Testing

@testable import StagepassBroker

/// A change made through one store (the CLI) reaches another store on the same directory (a running broker) before
/// that one signs or publishes again: no schedule tick, no waiting.
@Suite("Keys: changes reach a running broker at once")
struct KeysReachRunningBrokerTests {
    static let t0: Int64 = 1_700_000_000

    @Test func aCompromiseByAnotherProcessStopsSigningAndPublishingAtOnce() async throws {
        let dir = try TempDir()
        let clock = ManualClock(Self.t0)
        let broker = try makeStore(dir.keys, clock: clock)
        try await broker.tick(now: clock.clock.now())
        let before = try await broker.signingKey().kid
        let next = try #require(await broker.keys().first { $0.state == .next }?.kid)
        #expect(try await broker.jwks().keys.contains { $0.kid == before })

        // The CLI opens its own store on the same directory and compromises the active key.
        let cli = try makeStore(dir.keys, clock: clock)
        let r = try await cli.compromise(kid: before)
        #expect(r.activeKid == next)

        // The broker's very next signing and JWKS requests see it.
        #expect(try await broker.signingKey().kid == next)
        let published = try await broker.jwks().keys.compactMap(\.kid)
        #expect(!published.contains(before))
        #expect(Set(published) == Set(try await cli.jwks().keys.compactMap(\.kid)))
        let token = try await signToken(broker, now: clock.clock.now(), lifetime: 60)
        #expect(verifies(token, against: try await cli.jwks()))
    }

    @Test func aRotationByAnotherProcessIsPublishedAtOnce() async throws {
        let dir = try TempDir()
        let clock = ManualClock(Self.t0)
        let broker = try makeStore(dir.keys, clock: clock)
        try await broker.tick(now: clock.clock.now())
        let cli = try makeStore(dir.keys, clock: clock)
        // Two changes in a row, well within one file-system timestamp tick: both are seen.
        let r1 = try await cli.rotate(force: true)
        #expect(try await broker.signingKey().kid == r1.activeKid)
        let r2 = try await cli.rotate(force: true)
        #expect(try await broker.signingKey().kid == r2.activeKid)
        #expect(try await broker.jwks().keys.contains { $0.kid == r2.nextKid })
    }

    /// Fail closed: a keyring that no longer loads stops signing and publishing; it is never "the last good one".
    @Test func aKeyringThatNoLongerLoadsStopsSigning() async throws {
        let dir = try TempDir()
        let clock = ManualClock(Self.t0)
        let broker = try makeStore(dir.keys, clock: clock)
        try await broker.tick(now: clock.clock.now())
        _ = try await broker.signingKey()
        try SecretFile.write(Array("{not a keyring".utf8), to: dir.keys + "/keyring.json")
        await #expect(throws: KeyStoreError.corruptKeyring) { try await broker.signingKey() }
        await #expect(throws: KeyStoreError.corruptKeyring) { try await broker.jwks() }
    }

    @Test func runningBrokersAnnounceThemselvesAndDeadOnesAreForgotten() async throws {
        let dir = try TempDir()
        let note = try RunningBrokers.announce(directory: dir.keys, url: "http://127.0.0.1:1")
        #expect(try modeOf(note) == 0o600)
        #expect(RunningBrokers.list(directory: dir.keys) == [RunningBroker(pid: getpid(), url: "http://127.0.0.1:1")])
        RunningBrokers.withdraw(note)
        #expect(RunningBrokers.list(directory: dir.keys).isEmpty)
        // A note left by a process that is gone (pid_max on Linux is at most 2^22).
        let stale = try RunningBrokers.announce(directory: dir.keys, url: "http://127.0.0.1:2", pid: 4_194_305)
        #expect(RunningBrokers.list(directory: dir.keys).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: stale))
        #expect(RunningBrokers.loopbackURL(host: "0.0.0.0", port: 80) == "http://127.0.0.1:80")
        #expect(RunningBrokers.loopbackURL(host: "::", port: 80) == "http://[::1]:80")
    }
}

/// The retiring window follows the lifetimes the policy lets the broker sign.
@Suite("Keys: the schedule follows the policy")
struct KeysScheduleFollowsPolicyTests {
    static let t0: Int64 = 1_700_000_000

    @Test func theWindowCoversTheLongestTokenAnyStageCanIssue() async throws {
        let p = try AccessPolicy.load(
            yaml: """
                tokens: {max_ttl: 6h, status_list_lifetime: 1h}
                stages:
                  build: {approval: session, max_ttl: 4h}
                  production: {approval: per_run, max_ttl: 5m}
                """,
            source: "p.yaml"
        )
        #expect(p.longestTokenLifetime == 4 * 3600)
        #expect(p.longestSignedLifetime == 4 * 3600)
        let s = try KeySchedule.standard(covering: p.longestSignedLifetime)
        #expect(s.retiringPeriod == 4 * 3600 + 60)
        // A stage without max_ttl takes tokens.max_ttl.
        let q = try AccessPolicy.load(
            yaml: "tokens: {max_ttl: 2d}\nstages:\n  build: {approval: session}\n",
            source: "q.yaml"
        )
        #expect(q.longestTokenLifetime == 2 * 86_400)
    }

    @Test func aStageLongerThanTheScheduleCoversIsRefusedAtLoad() async throws {
        for yaml in [
            "tokens: {max_ttl: 30d}\nstages:\n  archive:\n    approval: session\n    max_ttl: 8d\n",
            "tokens: {max_ttl: 8d}\nstages:\n  archive: {approval: session}\n",
            "tokens: {status_list_lifetime: 8d}\n",
        ] {
            do {
                _ = try AccessPolicy.load(yaml: yaml, source: "p.yaml")
                Issue.record("accepted: \(yaml)")
            } catch let e as PolicyError {
                #expect(e.message.contains("exceeds what the key schedule covers (7d"), "\(e)")
            }
        }
        // Up to one rotation period is fine.
        _ = try AccessPolicy.load(
            yaml: "tokens: {max_ttl: 30d}\nstages:\n  archive: {approval: session, max_ttl: 7d}\n",
            source: "p.yaml"
        )
        #expect(throws: KeyStoreError.invalidSchedule) { try KeySchedule.standard(covering: 8 * 86_400) }
    }

    /// A token living longer than the schedule was opened with keeps its key published until it expires.
    @Test func signingALongerTokenWidensTheRetiringWindow() async throws {
        let dir = try TempDir()
        let clock = ManualClock(Self.t0)
        let schedule = try KeySchedule(rotationPeriod: 7_200, prePublication: 600, maxTokenLifetime: 600, leeway: 60)
        let store = try makeStore(dir.keys, clock: clock, schedule: schedule)
        try await store.tick(now: clock.clock.now())
        let key = try await store.signingKey(coveringLifetime: 3_000)
        let token = try JWS.sign(
            claims: .object(["iat": .int(Self.t0), "exp": .int(Self.t0 + 3_000)]),
            header: ["kid": .string(key.kid)],
            key: key.privateKey,
            alg: key.alg
        )
        clock.advance(700)
        try await store.rotate()
        // Past the schedule's own 600 + 60 s, before the token expires: still published.
        clock.advance(1_000)
        try await store.tick(now: clock.clock.now())
        #expect(verifies(token, against: try await store.jwks()))
        // A broker restarted with the shorter schedule still keeps it (the window was recorded at demotion).
        let restarted = try makeStore(dir.keys, clock: clock, schedule: schedule)
        try await restarted.tick(now: clock.clock.now())
        #expect(verifies(token, against: try await restarted.jwks()))
        // Once the token has expired plus leeway, the key is retired.
        clock.advance(3_000 + 60 + 1 - 1_000)
        try await restarted.tick(now: clock.clock.now())
        #expect(!verifies(token, against: try await restarted.jwks()))
        // Nothing longer than one rotation period is signed.
        await #expect(throws: KeyStoreError.invalidSchedule) { try await store.signingKey(coveringLifetime: 7_201) }
    }
}
