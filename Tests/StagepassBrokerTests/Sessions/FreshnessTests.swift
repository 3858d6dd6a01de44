import Foundation
import StagepassJOSE
import Testing

@testable import StagepassBroker

/// Per-factor freshness, factor lifecycle and throttle reservations at the service level.
@Suite struct FreshnessTests {
    @Test func freshestProofReadsOnlyTheCountedMethods() async {
        let s = Session(
            id: "s",
            userId: "u",
            userName: "u",
            groups: [],
            state: .mfa,
            amr: ["pwd", "otp", "bkp"],
            authTime: 900,
            createdAt: 0,
            idleExpiresAt: 2000,
            absoluteExpiresAt: 2000,
            proofs: [
                "pwd": FactorStamp(at: 100, credential: nil), "otp": FactorStamp(at: 100, credential: "f_t"),
                "bkp": FactorStamp(at: 900, credential: "f_b"),
            ]
        )
        #expect(s.freshestProof(of: [.totp, .webauthn])?.at == 100)
        #expect(s.freshestProof(of: [.totp, .backup])?.kind == .backup)
        #expect(s.freshestProof(of: [.webauthn]) == nil)
    }

    @Test func aFactorChangeNeedsAFreshProofOfAnActiveFactor() async throws {
        let b = try Broker()
        let secret = try await b.user("alice")
        let p = try await b.sessions.signIn(name: "alice", password: "a long enough password", address: "a")
        let s = try await b.sessions.completeFactor(pendingToken: p.token, proof: .totp(b.code(secret)), address: "a")
        let grant = try await b.sessions.authorizeFactorChange(token: s.token)
        #expect(grant.proof?.kind == .totp && grant.authorisedBy.hasPrefix("otp:f_"))
        b.f.manual.advance(301)
        await #expect(throws: BrokerError.stepUpRequired) { try await b.sessions.authorizeFactorChange(token: s.token) }
        // A removed factor's proof no longer authorises anything, even when fresh.
        b.f.manual.advance(30)
        _ = try await b.sessions.stepUp(token: s.token, proof: .totp(b.code(secret)), address: "a")
        let id = try await #require(try b.factors.list(userId: s.session.userId).first?.id)
        try await b.factors.remove(userId: s.session.userId, factorId: id, actor: "alice")
        let after = try await b.sessions.authenticate(token: s.token)
        #expect(after.proofs["otp"] == nil)
    }

    @Test func stepUpRejectsAPendingFactor() async throws {
        let b = try Broker()
        let secret = try await b.user("bob")
        let p = try await b.sessions.signIn(name: "bob", password: "a long enough password", address: "a")
        let s = try await b.sessions.completeFactor(pendingToken: p.token, proof: .totp(b.code(secret)), address: "a")
        let pending = try await b.factors.enrolTOTP(userName: "bob", actor: "bob")
        b.f.manual.advance(30)
        let code = try OTP.totp(secret: Base32.decode(pending.secret) ?? [], unixTime: b.f.manual.clock.now())
        await #expect(throws: BrokerError.invalidFactor) {
            _ = try await b.sessions.stepUp(token: s.token, proof: .totp(code), address: "a")
        }
        await #expect(try b.factors.list(userId: s.session.userId).filter { $0.state == .pending }.count == 1)
    }

    /// Concurrent reservations on one key: exactly `freeFailures` go through, the rest are throttled, whatever the
    /// interleaving.
    @Test func reservationsHoldUnderConcurrency() async throws {
        let f = try Fixture()
        let throttle = Throttle(store: f.store, clock: f.manual.clock, policy: .init(freeFailures: 3))
        let granted = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<64 {
                group.addTask { await (try? throttle.reserve(["acct:x", "addr:y"])) != nil }
            }
            var n = 0
            for await ok in group where ok { n += 1 }
            return n
        }
        #expect(granted == 3)
        await #expect(try f.store.throttle(key: "acct:x")?.failures == 3)
    }

    /// A success gives its reservation back without a trace: the shared address key keeps its count and its last
    /// failure time, so signing in does not extend anyone's delay.
    @Test func aSuccessGivesItsReservationBack() async throws {
        let f = try Fixture()
        let t = Throttle(store: f.store, clock: f.manual.clock, policy: .init(freeFailures: 3))
        _ = try await t.reserve(["acct:a", "addr:x"])  // a failure: kept
        f.manual.advance(10)
        let ok = try await t.reserve(["acct:b", "addr:x"])
        #expect(ok.counts == [1, 2])
        try await t.succeeded(ok)
        await #expect(try f.store.throttle(key: "acct:b") == nil)
        let addr = try await #require(try f.store.throttle(key: "addr:x"))
        #expect(addr.failures == 1 && addr.lastFailureAt == 1_700_000_000)
        let fresh = try await t.reserve(["acct:c", "addr:y"])
        try await t.refund(fresh)
        await #expect(try f.store.throttle(key: "addr:y") == nil)
    }
}
