import Foundation
import StagepassJOSE
import StagepassVerify
import Testing

@testable import StagepassBroker

@Suite struct WebAuthnSessionTests {
    /// Password, then a security key: `amr` is `["pwd","hwk","user"]` with UV, `["pwd","hwk"]` without (RFC 8176 §2).
    @Test(arguments: [true, false])
    func signInWithASecurityKey(_ uv: Bool) async throws {
        let h = try WebAuthnHarness()
        let uid = try await h.user("alice")
        let key = try SoftAuthenticator(.es256)
        try await h.register(key, userId: uid)
        let p = try await h.human.sessions.signIn(
            name: "alice",
            password: WebAuthnHarness.password,
            address: "10.0.0.1"
        )
        #expect(p.needsFactor && p.allowedFactors == [.webauthn])
        let o = try await h.service.beginAssertion(userId: p.session.userId, purpose: .signIn)
        var k = SoftAuthenticator.Knobs()
        k.uv = uv
        let mfa = try await h.human.sessions.completeFactor(
            pendingToken: p.token,
            proof: .webauthn(credentialJSON: try key.assert(challenge: o.challenge, knobs: k)),
            address: "10.0.0.1"
        )
        let s = try await h.human.sessions.requireMFA(token: mfa.token)
        #expect(s.amr == (uv ? ["pwd", "hwk", "user"] : ["pwd", "hwk"]))
        #expect(s.authTime == h.manual.clock.now())
        let signin = try await #require(try h.events.last { $0.action == "signin" })
        #expect(signin.factors == s.amr)
    }

    @Test func aRefusedAssertionCountsLikeAWrongCode() async throws {
        let h = try WebAuthnHarness()
        let uid = try await h.user("alice")
        let key = try SoftAuthenticator(.eddsa)
        try await h.register(key, userId: uid)
        let p = try await h.human.sessions.signIn(name: "alice", password: WebAuthnHarness.password, address: "a")
        let o = try await h.service.beginAssertion(userId: uid, purpose: .signIn)
        await #expect(throws: BrokerError.invalidFactor) {
            try await h.human.sessions.completeFactor(
                pendingToken: p.token,
                proof: .webauthn(credentialJSON: try key.assert(challenge: o.challenge, corruptSignature: true)),
                address: "a"
            )
        }
        await #expect(try h.human.store.throttle(key: Throttle.factorKey(uid))?.failures == 1)
        let failure = try await #require(try h.events.last { $0.action == "signin.factor" })
        #expect(failure.result == "failure" && failure.details["webauthn"] == "invalid_signature")
        // A challenge issued for a step-up does not complete a sign-in.
        let wrong = try await h.service.beginAssertion(userId: uid, purpose: .stepUp)
        do {
            _ = try await h.human.sessions.completeFactor(
                pendingToken: p.token,
                proof: .webauthn(credentialJSON: try key.assert(challenge: wrong.challenge)),
                address: "a"
            )
            Issue.record("accepted a step-up assertion for sign-in")
        } catch let e as BrokerError {
            #expect(e == .invalidFactor && e.detail.contains("challenge_mismatch"))
        }
        await #expect(try h.human.store.throttle(key: Throttle.factorKey(uid))?.failures == 2)
        // Malformed JSON is a bad request, not a factor failure.
        await #expect(throws: BrokerError.invalidRequest) {
            try await h.human.sessions.completeFactor(
                pendingToken: p.token,
                proof: .webauthn(credentialJSON: "{"),
                address: "a"
            )
        }
        #expect(try await h.human.store.throttle(key: Throttle.factorKey(uid))?.failures == 2)
        // After a success the factor throttle is cleared.
        let ok = try await h.service.beginAssertion(userId: uid, purpose: .signIn)
        _ = try await h.human.sessions.completeFactor(
            pendingToken: p.token,
            proof: .webauthn(credentialJSON: try key.assert(challenge: ok.challenge)),
            address: "a"
        )
        #expect(try await h.human.store.throttle(key: Throttle.factorKey(uid)) == nil)
    }

    @Test func thePolicyMustAcceptSecurityKeys() async throws {
        let h = try WebAuthnHarness(factors: [.totp, .backup])
        let uid = try await h.user("alice")
        let key = try SoftAuthenticator(.es256)
        try await h.register(key, userId: uid)
        let p = try await h.human.sessions.signIn(name: "alice", password: WebAuthnHarness.password, address: "a")
        let o = try await h.service.beginAssertion(userId: uid, purpose: .signIn)
        await #expect(throws: BrokerError.factorNotAllowed) {
            try await h.human.sessions.completeFactor(
                pendingToken: p.token,
                proof: .webauthn(credentialJSON: try key.assert(challenge: o.challenge)),
                address: "a"
            )
        }
    }

    @Test func stepUpAddsHwk() async throws {
        let h = try WebAuthnHarness()
        let uid = try await h.user("alice")
        let codes = try await h.human.factors.regenerateBackupCodes(userName: "alice", actor: "root")
        let key = try SoftAuthenticator(.eddsa)
        try await h.register(key, userId: uid)
        let p = try await h.human.sessions.signIn(name: "alice", password: WebAuthnHarness.password, address: "a")
        let mfa = try await h.human.sessions.completeFactor(
            pendingToken: p.token,
            proof: .backupCode(codes[0]),
            address: "a"
        )
        h.manual.advance(60)
        let o = try await h.service.beginAssertion(userId: uid, purpose: .stepUp)
        let s = try await h.human.sessions.stepUp(
            token: mfa.token,
            proof: .webauthn(credentialJSON: try key.assert(challenge: o.challenge)),
            address: "a"
        )
        #expect(s.amr == ["pwd", "bkp", "hwk", "user"] && s.authTime == h.manual.clock.now())
    }
}

/// Approvals with a security key bound to the request.
@Suite struct WebAuthnApprovalTests {
    static func policy(productionFactors: Set<FactorKind> = [.totp, .webauthn]) -> AccessPolicy {
        var p = examplePolicy()
        p.auth = AuthPolicy(factors: [.totp, .backup, .webauthn])
        p.stages["production"]?.factors = productionFactors
        p.identities = ["ci-bot": "dana"]  // the runs below are triggered by a CI identity that maps to dana
        return p
    }

    func start(_ h: TokenHarness, _ secret: String, run: String) async throws -> DeviceAuthorization {
        try await h.tokens.startRequest(
            client: "acme-web",
            secret: secret,
            audience: "deploy-api",
            role: "deployer",
            stage: "production",
            runId: run,
            commit: "abc123",
            triggeredBy: "ci-bot"
        )
    }

    @Test func anAssertionForOneRequestCannotApproveAnother() async throws {
        let h = try await TokenHarness(policy: Self.policy())
        try await h.user("rita", ["release-managers"])
        let rita = try await h.human.accounts.get("rita").id
        let key = try SoftAuthenticator(.es256)
        let o = try await h.human.webauthn.beginRegistration(userId: rita, userName: "rita")
        try await h.human.webauthn.finishRegistration(
            userId: rita,
            name: "key",
            credentialJSON: try key.register(challenge: o.challenge)
        )
        let secret = try await h.tokens.clients.add(name: "acme-web", actor: "root")
        let s = try await h.signIn("rita")
        let a = try await start(h, secret, run: "run-A")
        let b = try await start(h, secret, run: "run-B")
        h.manual.advance(400)  // the sign-in factor is stale for production (mfa_max_age 300)
        let forA = try await h.tokens.beginApprovalAssertion(userCode: a.userCode, sessionToken: s, address: "t")
        let assertionA = try key.assert(challenge: forA.challenge)
        // Replayed against request B: refused, and B stays pending.
        do {
            _ = try await h.tokens.approve(
                userCode: b.userCode,
                sessionToken: s,
                proof: .webauthn(credentialJSON: assertionA),
                address: "t"
            )
            Issue.record("an assertion for request A approved request B")
        } catch let e as BrokerError {
            #expect(e == .invalidFactor && e.detail.contains("challenge_mismatch"))
        }
        await #expect(try h.human.store.request(userCode: b.userCode)?.state == .pending)
        // A fresh assertion for A approves A, and the approval records hwk.
        let forA2 = try await h.tokens.beginApprovalAssertion(userCode: a.userCode, sessionToken: s, address: "t")
        let outcome = try await h.tokens.approve(
            userCode: a.userCode,
            sessionToken: s,
            proof: .webauthn(credentialJSON: try key.assert(challenge: forA2.challenge)),
            address: "t"
        )
        #expect(outcome.approved)
        #expect(outcome.approval.amr.contains("hwk") && outcome.approval.amr.contains("user"))
        let stepup = try await #require(try h.auditEvents.last { $0.action == "stepup" })
        #expect(stepup.details["binding"] == outcome.approval.binding)
        // The pipeline receives a token whose amr carries hwk.
        h.manual.advance(10)
        let t = try await h.tokens.poll(client: "acme-web", secret: secret, deviceCode: a.deviceCode)
        let c = try await h.verifier().verify(t.accessToken).claims
        #expect(c["amr"]?.arrayValue?.compactMap(\.stringValue).contains("hwk") == true)
        // A decided request hands out no more challenges.
        await #expect(throws: OAuthError.self) {
            _ = try await h.tokens.beginApprovalAssertion(userCode: a.userCode, sessionToken: s, address: "t")
        }
    }

    /// A stage that counts only security keys: a session that signed in with a key but steps up with TOTP in the
    /// approval has not proved a phishing-resistant factor for it.
    @Test func aSecurityKeyOnlyStageRefusesATOTPStepUp() async throws {
        let h = try await TokenHarness(policy: Self.policy(productionFactors: [.webauthn]))
        try await h.user("rita", ["release-managers"])
        let rita = try await h.human.accounts.get("rita").id
        let key = try SoftAuthenticator(.eddsa)
        let o = try await h.human.webauthn.beginRegistration(userId: rita, userName: "rita")
        try await h.human.webauthn.finishRegistration(
            userId: rita,
            name: "key",
            credentialJSON: try key.register(challenge: o.challenge)
        )
        let secret = try await h.tokens.clients.add(name: "acme-web", actor: "root")
        // Sign in with the key: amr pwd, hwk, user.
        let p = try await h.human.sessions.signIn(name: "rita", password: "a long enough password", address: "t")
        let so = try await h.human.webauthn.beginAssertion(userId: rita, purpose: .signIn)
        let s = try await h.human.sessions.completeFactor(
            pendingToken: p.token,
            proof: .webauthn(credentialJSON: try key.assert(challenge: so.challenge)),
            address: "t"
        ).token
        let d = try await start(h, secret, run: "run-1")
        h.manual.advance(400)
        #expect(
            await oauthCode {
                _ = try await h.tokens.approve(
                    userCode: d.userCode,
                    sessionToken: s,
                    proof: .totp(h.code(for: "rita")),
                    address: "t"
                )
            } == "insufficient_user_authentication"
        )
        let fresh = try await h.tokens.beginApprovalAssertion(userCode: d.userCode, sessionToken: s, address: "t")
        let ok = try await h.tokens.approve(
            userCode: d.userCode,
            sessionToken: s,
            proof: .webauthn(credentialJSON: try key.assert(challenge: fresh.challenge)),
            address: "t"
        )
        #expect(ok.approved)
    }
}
