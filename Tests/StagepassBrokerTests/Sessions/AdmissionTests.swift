import Synchronization
import Testing

@testable import StagepassBroker

/// Admission control of sign-in: the bounded hashing pool and the global password budget. Refused attempts count
/// nothing and change nothing, and a known and an unknown name are refused alike.
@Suite struct AdmissionTests {
    static let right = "a long enough password"

    /// The live count of a throttle key (0 when there is none).
    func count(_ b: Broker, _ key: String) async throws -> Int { try await b.f.store.throttle(key: key)?.failures ?? 0 }

    func globalKey(_ b: Broker, window: Int64 = 60) -> String {
        Throttle.globalKey(window: b.f.manual.clock.now() / window)
    }

    @Test func aFullHashingPoolRefusesKnownAndUnknownNamesAlikeAndCountsNothing() async throws {
        var policy = AuthPolicy.default
        policy.throttle.hashQueuePerWorker = 0
        let pool = WorkPool(label: "test.signin.full", workers: 1)
        let b = try Broker(policy: policy, pool: pool)
        try await b.user("alice")
        let gate = Gate()
        let limits = policy.throttle.hashLimits(workers: 1)
        async let blocker: Void = pool.run(limits) { gate.wait() }
        #expect(await eventually { pool.statistics.running == 1 })
        let before = try await b.log.events().count
        var refusals: [BrokerError] = []
        for name in ["alice", "nobody"] {
            do {
                _ = try await b.sessions.signIn(name: name, password: Self.right, address: "10.0.0.1")
                Issue.record("expected a refusal")
            } catch let e as BrokerError { refusals.append(e) }
        }
        #expect(refusals.count == 2 && refusals.allSatisfy { $0 == .overloaded })
        #expect(Set(refusals.map(\.detail)).count == 1)
        #expect(refusals.allSatisfy { ($0.retryAfter ?? 0) >= 1 })
        for key in ["acct:alice", "acct:nobody", "addr:10.0.0.1", globalKey(b)] {
            await #expect(try count(b, key) == 0)
        }
        await #expect(try b.log.events().count == before)  // no audit record, no session
        gate.open()
        try await blocker
        let ok = try await b.sessions.signIn(name: "alice", password: Self.right, address: "10.0.0.1")
        #expect(ok.needsFactor)
    }

    @Test func anAttemptThatWaitedTooLongIsRefundedInFull() async throws {
        let nanos = FakeNanos()
        let pool = WorkPool(label: "test.signin.wait", workers: 1, now: { nanos.now() })
        let b = try Broker(pool: pool)
        try await b.user("alice")
        let gate = Gate()
        let limits = AuthPolicy.default.throttle.hashLimits(workers: 1)
        async let blocker: Void = pool.run(limits) { gate.wait() }
        #expect(await eventually { pool.statistics.running == 1 })
        let sessions = b.sessions
        let attempt = Task {
            try await sessions.signIn(name: "alice", password: "wrong password!!", address: "10.0.0.2")
        }
        #expect(await eventually { pool.statistics.queued == 1 })
        // The attempt was reserved before it queued for the hash.
        await #expect(try count(b, "acct:alice") == 1)
        await #expect(try count(b, "addr:10.0.0.2") == 1)
        await #expect(try count(b, globalKey(b)) == 1)
        nanos.advance(milliseconds: 1001)  // past the default one-second maximum wait
        gate.open()
        try await blocker
        await #expect(throws: BrokerError.overloaded) { _ = try await attempt.value }
        for key in ["acct:alice", "addr:10.0.0.2", globalKey(b)] { await #expect(try count(b, key) == 0) }
        await #expect(try b.log.events().filter { $0.action == "signin.password" }.isEmpty)
    }

    @Test func freshNamesFromFreshAddressesSpendTheGlobalBudget() async throws {
        var policy = AuthPolicy.default
        policy.throttle.globalFailures = 3
        policy.throttle.globalWindow = 60
        let b = try Broker(policy: policy)
        try await b.user("alice")
        for i in 0..<3 {
            await #expect(throws: BrokerError.invalidCredentials) {
                _ = try await b.sessions.signIn(name: "fresh\(i)", password: "guess", address: "192.0.2.\(i)")
            }
        }
        await #expect(try count(b, globalKey(b)) == 3)
        let now = b.f.manual.clock.now()
        let left = 60 - now % 60
        // Spent: every password attempt is refused the same way, known or unknown name, right password or not.
        var refusals: [BrokerError] = []
        for (name, password) in [("fresh9", "guess"), ("alice", Self.right), ("alice", "wrong")] {
            do {
                _ = try await b.sessions.signIn(name: name, password: password, address: "198.51.100.7")
                Issue.record("expected the budget to refuse \(name)")
            } catch let e as BrokerError { refusals.append(e) }
        }
        #expect(refusals.count == 3 && refusals.allSatisfy { $0 == .overloaded && $0.retryAfter == left })
        #expect(Set(refusals.map(\.detail)).count == 1)
        await #expect(try count(b, "acct:alice") == 0)
        await #expect(try count(b, "addr:198.51.100.7") == 0)
        // The next window has a fresh budget.
        b.f.manual.advance(left)
        let ok = try await b.sessions.signIn(name: "alice", password: Self.right, address: "198.51.100.7")
        #expect(ok.needsFactor)
    }

    @Test func successesGiveTheirGlobalReservationBack() async throws {
        var policy = AuthPolicy.default
        policy.throttle.globalFailures = 1
        let b = try Broker(policy: policy)
        try await b.user("alice")
        for _ in 0..<3 {
            _ = try await b.sessions.signIn(name: "alice", password: Self.right, address: "10.0.0.3")
            await #expect(try count(b, globalKey(b)) == 0)
        }
        await #expect(throws: BrokerError.invalidCredentials) {
            _ = try await b.sessions.signIn(name: "nobody", password: "guess", address: "10.0.0.4")
        }
        await #expect(throws: BrokerError.overloaded) {
            _ = try await b.sessions.signIn(name: "alice", password: Self.right, address: "10.0.0.3")
        }
    }

    @Test func aThrottledAttemptGivesItsGlobalReservationBack() async throws {
        let b = try Broker()
        for i in 0..<3 {
            await #expect(throws: BrokerError.invalidCredentials) {
                _ = try await b.sessions.signIn(name: "u\(i)", password: "guess", address: "203.0.113.9")
            }
        }
        await #expect(try count(b, globalKey(b)) == 3)
        await #expect(throws: BrokerError.throttled) {
            _ = try await b.sessions.signIn(name: "u9", password: "guess", address: "203.0.113.9")
        }
        await #expect(try count(b, globalKey(b)) == 3)
    }

    @Test func theGlobalKeysAlternateSoThatAnOldWindowNeverCarriesOver() async throws {
        #expect(Throttle.globalKey(window: 10) == Throttle.globalKey(window: 12))
        #expect(Throttle.globalKey(window: 10) != Throttle.globalKey(window: 11))
    }
}
