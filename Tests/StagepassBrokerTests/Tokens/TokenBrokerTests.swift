import Foundation
import StagepassJOSE
import StagepassVerify
import Testing

@testable import StagepassBroker

/// The issue's example shape, built in code so these tests do not depend on the YAML loader.
func examplePolicy(approvers: Int = 1, selfApproval: Bool = false) -> AccessPolicy {
    AccessPolicy(
        tokens: TokenSettings(maxTTL: 3600, requestLifetime: 600, pollInterval: 5),
        roles: [
            "builder": RolePolicy(
                name: "builder",
                groups: ["developers"],
                stages: ["build", "staging"],
                audiences: ["deploy-api"]
            ),
            "deployer": RolePolicy(
                name: "deployer",
                groups: ["release-managers"],
                stages: ["staging", "production"],
                audiences: ["deploy-api"]
            ),
        ],
        stages: [
            "build": StagePolicy(name: "build", maxTTL: 3600),
            "staging": StagePolicy(
                name: "staging",
                maxTTL: 1800,
                mfaMaxAge: 43200,
                approval: .delegated(maxWindow: 8 * 3600)
            ),
            "production": StagePolicy(
                name: "production",
                maxTTL: 300,
                mfaMaxAge: 300,
                factors: [.totp, .webauthn],
                approval: .perRun,
                approvers: approvers,
                allowSelfApproval: selfApproval
            ),
        ],
        audiences: ["deploy-api": AudiencePolicy(name: "deploy-api"), "other-api": AudiencePolicy(name: "other-api")],
        pipelines: ["acme-web": PipelinePolicy(name: "acme-web")]
    )
}

/// A token broker on an in-memory store, a temporary key store and a manual clock.
final class TokenHarness: @unchecked Sendable {
    let tmp: TempDir
    let manual: ManualClock
    let human: HumanBroker
    let keys: KeyStore
    let tokens: TokenBroker
    let issuer = "https://stagepass.test"
    private var secrets: [String: [UInt8]] = [:]

    init(policy: AccessPolicy = examplePolicy()) async throws {
        tmp = try TempDir()
        manual = ManualClock(1_700_000_000)
        human = HumanBroker(
            store: try SQLiteStore(),
            masterKey: try MasterKey.generate(),
            policies: PolicyHolder(policy),
            hasher: try PasswordHasher(parameters: .testing, pool: WorkPool(label: "test", workers: 2)),
            clock: manual.clock
        )
        keys = try makeStore(tmp.keys, clock: manual)
        try await keys.rotate()
        tokens = await TokenBroker(human: human, keys: keys, issuer: issuer)
    }

    /// Adds a user with an active TOTP factor.
    func user(_ name: String, _ groups: [String]) async throws {
        try await human.accounts.add(name: name, password: "a long enough password", groups: groups, actor: "root")
        let e = try await human.factors.enrolTOTP(userName: name, actor: "root")
        let secret = Base32.decode(e.secret) ?? []
        try await human.factors.confirmTOTP(
            userId: try await human.accounts.get(name).id,
            code: code(secret),
            actor: name
        )
        secrets[name] = secret
        manual.advance(30)
    }

    func code(_ secret: [UInt8]) -> String {
        (try? OTP.totp(secret: secret, unixTime: manual.clock.now())) ?? "no-code"
    }
    func code(for name: String) -> String { code(secrets[name] ?? []) }

    /// Password + TOTP; returns the MFA session token (the clock moves on a TOTP step afterwards).
    func signIn(_ name: String) async throws -> String {
        let p = try await human.sessions.signIn(name: name, password: "a long enough password", address: "t")
        let s = try await human.sessions.completeFactor(
            pendingToken: p.token,
            proof: .totp(code(for: name)),
            address: "t"
        )
        manual.advance(30)
        return s.token
    }

    func stepUp(_ token: String, _ name: String) async throws {
        _ = try await human.sessions.stepUp(token: token, proof: .totp(code(for: name)), address: "t")
        manual.advance(30)
    }

    /// An offline verifier over the broker's JWKS and, with `statusList`, its current status list 1.
    func verifier(statusList: Bool = true) async throws -> Verifier {
        let ks = KeySet(jwks: try await keys.jwks())
        var lists: StaticStatusListSource?
        if statusList, let jwt = try await tokens.statusLists.list(1) {
            lists = StaticStatusListSource([StatusListDocument(jwt: jwt, fetchedAt: manual.clock.now())])
        }
        let now = manual.clock.now()
        return Verifier(
            configuration: try VerifierConfiguration(issuer: issuer, audiences: ["deploy-api"], cacheCapacity: 0),
            keys: StaticKeySource(ks),
            statusLists: lists,
            clock: { now }
        )
    }

    var auditEvents: [AuditEvent] {
        get async throws {
            try await human.store.auditRows(after: 0, limit: 10_000).compactMap {
                try? JSONDecoder().decode(AuditEvent.self, from: Data($0.event.utf8))
            }
        }
    }
}

func oauthCode(_ body: () async throws -> Void) async -> String? {
    do { try await body() } catch let e as OAuthError { return e.error } catch { return "other: \(error)" }
    return nil
}

@Suite struct TokenExchangeTests {
    @Test func builderGetsABuildTokenThatVerifiesOffline() async throws {
        let h = try await TokenHarness()
        try await h.user("dana", ["developers"])
        let s = try await h.signIn("dana")
        let t = try await h.tokens.exchange(sessionToken: s, audience: "deploy-api", role: "builder", stage: "build")
        let v = try await h.verifier().verify(
            t.accessToken,
            requirements: Requirements(roles: ["builder"], stage: "build")
        )
        let c = v.claims
        #expect(c["sub"]?.stringValue == "dana")
        #expect(c["amr"]?.arrayValue?.compactMap(\.stringValue) == ["pwd", "otp"])
        #expect(c["jti"]?.stringValue == t.jti)
        #expect(c["status"]?["status_list"]?["uri"]?.stringValue == "https://stagepass.test/v1/statuslists/1")
        #expect(c["client_id"] == nil)
        #expect((c["exp"]?.intValue ?? 0) - (c["iat"]?.intValue ?? 0) == 3600)
        // The audit names the human, both factors, role, stage, audience and jti.
        let issue = try await #require(try h.auditEvents.last { $0.action == "token.issue" })
        #expect(issue.actor == "dana" && issue.factors == ["pwd", "otp"])
        #expect(issue.details["jti"] == t.jti && issue.details["stage"] == "build")
        #expect(issue.details["audience"] == "deploy-api" && issue.details["role"] == "builder")
        await #expect(try h.human.store.token(jti: t.jti)?.userName == "dana")
    }

    @Test func productionNeedsAFreshFactorAndLivesFiveMinutes() async throws {
        let h = try await TokenHarness()
        try await h.user("rita", ["release-managers"])
        let s = try await h.signIn("rita")
        h.manual.advance(301)
        let err = await oauthCode {
            _ = try await h.tokens.exchange(
                sessionToken: s,
                audience: "deploy-api",
                role: "deployer",
                stage: "production"
            )
        }
        #expect(err == "insufficient_user_authentication")
        do {
            _ = try await h.tokens.exchange(
                sessionToken: s,
                audience: "deploy-api",
                role: "deployer",
                stage: "production"
            )
        } catch let e as OAuthError {
            #expect(e.maxAge == 300)
            #expect(e.acrValues == ["urn:stagepass:acr:totp", "urn:stagepass:acr:webauthn"])
        }
        let denial = try await #require(try h.auditEvents.last { $0.action == "token.deny" })
        #expect(denial.result == "denied" && denial.details["error"] == "insufficient_user_authentication")
        try await h.stepUp(s, "rita")
        let t = try await h.tokens.exchange(
            sessionToken: s,
            audience: "deploy-api",
            role: "deployer",
            stage: "production"
        )
        let c = try await h.verifier().verify(t.accessToken).claims
        #expect((c["exp"]?.intValue ?? 0) - (c["iat"]?.intValue ?? 0) <= 300)
    }

    @Test func backupCodesDoNotCountForProduction() async throws {
        let h = try await TokenHarness()
        try await h.user("rita", ["release-managers"])
        let codes = try await h.human.factors.regenerateBackupCodes(userName: "rita", actor: "root")
        let p = try await h.human.sessions.signIn(name: "rita", password: "a long enough password", address: "t")
        let s = try await h.human.sessions.completeFactor(
            pendingToken: p.token,
            proof: .backupCode(codes[0]),
            address: "t"
        )
        let err = await oauthCode {
            _ = try await h.tokens.exchange(
                sessionToken: s.token,
                audience: "deploy-api",
                role: "deployer",
                stage: "production"
            )
        }
        #expect(err == "insufficient_user_authentication")
        // Staging counts any factor.
        _ = try await h.tokens.exchange(
            sessionToken: s.token,
            audience: "deploy-api",
            role: "deployer",
            stage: "staging"
        )
    }

    @Test func roleStageAndAudienceAreEnforced() async throws {
        let h = try await TokenHarness()
        try await h.user("dana", ["developers"])
        let s = try await h.signIn("dana")
        #expect(
            await oauthCode {
                _ = try await h.tokens.exchange(
                    sessionToken: s,
                    audience: "deploy-api",
                    role: "deployer",
                    stage: "staging"
                )
            } == "invalid_scope"
        )
        #expect(
            await oauthCode {
                _ = try await h.tokens.exchange(
                    sessionToken: s,
                    audience: "deploy-api",
                    role: "builder",
                    stage: "production"
                )
            } == "invalid_scope"
        )
        #expect(
            await oauthCode {
                _ = try await h.tokens.exchange(
                    sessionToken: s,
                    audience: "other-api",
                    role: "builder",
                    stage: "build"
                )
            } == "invalid_target"
        )
        #expect(
            await oauthCode {
                _ = try await h.tokens.exchange(
                    sessionToken: "sps_nope",
                    audience: "deploy-api",
                    role: "builder",
                    stage: "build"
                )
            } == "invalid_grant"
        )
        await #expect(try h.human.store.lastTokenSeq() == 0)
        await #expect(try h.auditEvents.filter { $0.action == "token.deny" }.count == 4)
    }

    @Test func perRunStagesRefuseADirectPipelineExchange() async throws {
        let h = try await TokenHarness()
        try await h.user("rita", ["release-managers"])
        _ = try await h.tokens.clients.add(name: "acme-web", actor: "root")
        let s = try await h.signIn("rita")
        #expect(
            await oauthCode {
                _ = try await h.tokens.exchange(
                    sessionToken: s,
                    audience: "deploy-api",
                    role: "deployer",
                    stage: "production",
                    pipeline: "acme-web"
                )
            } == "unauthorized_client"
        )
        // A delegated stage names a pipeline only under a live delegation of this human for it.
        #expect(
            await oauthCode {
                _ = try await h.tokens.exchange(
                    sessionToken: s,
                    audience: "deploy-api",
                    role: "deployer",
                    stage: "staging",
                    pipeline: "acme-web"
                )
            } == "unauthorized_client"
        )
        let d = try await h.tokens.delegate(
            sessionToken: s,
            client: "acme-web",
            role: "deployer",
            stage: "staging",
            audience: "deploy-api",
            window: 3600
        )
        let t = try await h.tokens.exchange(
            sessionToken: s,
            audience: "deploy-api",
            role: "deployer",
            stage: "staging",
            pipeline: "acme-web"
        )
        let claims = try await h.verifier().verify(t.accessToken).claims
        #expect(claims["client_id"]?.stringValue == "acme-web")
        #expect(claims["act"]?["sub"]?.stringValue == "acme-web")
        let issued = try await #require(try h.auditEvents.last { $0.action == "token.issue" })
        #expect(issued.details["delegation"] == d.id)
    }
}

@Suite struct PipelineApprovalTests {
    @Test func approvedRunGetsATokenWithActAndTheCodeIsUsedOnce() async throws {
        let h = try await TokenHarness()
        try await h.user("rita", ["release-managers"])
        try await h.user("root", ["developers"])
        let secret = try await h.tokens.clients.add(name: "acme-web", actor: "root")
        #expect(
            await oauthCode {
                _ = try await h.tokens.startRequest(
                    client: "acme-web",
                    secret: "wrong",
                    audience: "deploy-api",
                    role: "deployer",
                    stage: "production",
                    runId: "1",
                    commit: nil,
                    triggeredBy: nil
                )
            } == "invalid_client"
        )
        let d = try await h.tokens.startRequest(
            client: "acme-web",
            secret: secret,
            audience: "deploy-api",
            role: "deployer",
            stage: "production",
            runId: "run-4711",
            commit: "5d41402a",
            triggeredBy: "root"
        )
        #expect(UserCode.normalize(d.userCode.lowercased().replacingOccurrences(of: "-", with: "")) == d.userCode)
        #expect(
            await oauthCode {
                _ = try await h.tokens.poll(client: "acme-web", secret: secret, deviceCode: d.deviceCode)
            } == "authorization_pending"
        )
        #expect(
            await oauthCode {
                _ = try await h.tokens.poll(client: "acme-web", secret: secret, deviceCode: d.deviceCode)
            } == "slow_down"
        )
        await #expect(try h.human.store.request(id: d.requestId)?.interval == 10)
        let s = try await h.signIn("rita")
        let o = try await h.tokens.approve(userCode: d.userCode, sessionToken: s, proof: nil, address: "t")
        #expect(o.approved)
        h.manual.advance(10)
        let t = try await h.tokens.poll(client: "acme-web", secret: secret, deviceCode: d.deviceCode)
        let c = try await h.verifier().verify(
            t.accessToken,
            requirements: Requirements(roles: ["deployer"], stage: "production", pipeline: "acme-*")
        ).claims
        #expect(c["sub"]?.stringValue == "rita")
        #expect(c["act"]?["sub"]?.stringValue == "acme-web")
        #expect(c["act"]?["run_id"]?.stringValue == "run-4711")
        #expect(c["approvals"]?.arrayValue?.compactMap(\.stringValue) == [o.approval.id])
        #expect(c["commit"]?.stringValue == "5d41402a")
        h.manual.advance(10)
        #expect(
            await oauthCode {
                _ = try await h.tokens.poll(client: "acme-web", secret: secret, deviceCode: d.deviceCode)
            } == "invalid_grant"
        )
        let approve = try await #require(try h.auditEvents.last { $0.action == "request.approve" })
        #expect(approve.actor == "rita" && approve.factors == ["pwd", "otp"])
        #expect(approve.details["binding"] == o.approval.binding)
    }

    @Test func twoDistinctApproversAndNoSelfApproval() async throws {
        let h = try await TokenHarness(policy: examplePolicy(approvers: 2))
        for n in ["rita", "rob", "carl"] { try await h.user(n, ["release-managers"]) }
        let secret = try await h.tokens.clients.add(name: "acme-web", actor: "root")
        let d = try await h.tokens.startRequest(
            client: "acme-web",
            secret: secret,
            audience: "deploy-api",
            role: "deployer",
            stage: "production",
            runId: "r2",
            commit: nil,
            triggeredBy: "carl"
        )
        let carl = try await h.signIn("carl")
        #expect(
            await oauthCode {
                _ = try await h.tokens.approve(userCode: d.userCode, sessionToken: carl, proof: nil, address: "t")
            }
                == "forbidden"
        )
        let rita = try await h.signIn("rita")
        let first = try await h.tokens.approve(userCode: d.userCode, sessionToken: rita, proof: nil, address: "t")
        #expect(!first.approved && first.approvals == 1 && first.needed == 2)
        #expect(
            await oauthCode {
                _ = try await h.tokens.approve(userCode: d.userCode, sessionToken: rita, proof: nil, address: "t")
            }
                == "conflict"
        )
        h.manual.advance(5)
        #expect(
            await oauthCode {
                _ = try await h.tokens.poll(client: "acme-web", secret: secret, deviceCode: d.deviceCode)
            }
                == "authorization_pending"
        )
        let rob = try await h.signIn("rob")
        let second = try await h.tokens.approve(userCode: d.userCode, sessionToken: rob, proof: nil, address: "t")
        #expect(second.approved)
        h.manual.advance(5)
        let t = try await h.tokens.poll(client: "acme-web", secret: secret, deviceCode: d.deviceCode)
        let c = try await h.verifier().verify(t.accessToken).claims
        #expect(c["approvals"]?.arrayValue?.count == 2)
        #expect(c["sub"]?.stringValue == "rob")
        let released = try await #require(try h.auditEvents.last { $0.action == "request.approved" })
        #expect(released.details["approvers"] == "rita,rob")
    }

    @Test func staleApproverMustStepUpInTheApproval() async throws {
        let h = try await TokenHarness()
        try await h.user("rita", ["release-managers"])
        try await h.user("dana", ["developers"])
        let secret = try await h.tokens.clients.add(name: "acme-web", actor: "root")
        let s = try await h.signIn("rita")
        h.manual.advance(400)
        let d = try await h.tokens.startRequest(
            client: "acme-web",
            secret: secret,
            audience: "deploy-api",
            role: "deployer",
            stage: "production",
            runId: "r3",
            commit: nil,
            triggeredBy: "dana"
        )
        #expect(
            await oauthCode {
                _ = try await h.tokens.approve(userCode: d.userCode, sessionToken: s, proof: nil, address: "t")
            }
                == "insufficient_user_authentication"
        )
        let o = try await h.tokens.approve(
            userCode: d.userCode,
            sessionToken: s,
            proof: .totp(h.code(for: "rita")),
            address: "t"
        )
        #expect(o.approved)
    }

    @Test func denialAndExpiryEndTheRequest() async throws {
        let h = try await TokenHarness()
        try await h.user("rita", ["release-managers"])
        try await h.user("dana", ["developers"])
        let secret = try await h.tokens.clients.add(name: "acme-web", actor: "root")
        let d1 = try await h.tokens.startRequest(
            client: "acme-web",
            secret: secret,
            audience: "deploy-api",
            role: "deployer",
            stage: "production",
            runId: "r4",
            commit: nil,
            triggeredBy: "dana"
        )
        let dana = try await h.signIn("dana")
        #expect(
            await oauthCode {
                try await h.tokens.deny(userCode: d1.userCode, sessionToken: dana, reason: nil, address: "t")
            }
                == "forbidden"
        )
        let rita = try await h.signIn("rita")
        try await h.tokens.deny(userCode: d1.userCode, sessionToken: rita, reason: "not today", address: "t")
        #expect(
            await oauthCode {
                _ = try await h.tokens.poll(client: "acme-web", secret: secret, deviceCode: d1.deviceCode)
            }
                == "access_denied"
        )
        let d2 = try await h.tokens.startRequest(
            client: "acme-web",
            secret: secret,
            audience: "deploy-api",
            role: "deployer",
            stage: "production",
            runId: "r5",
            commit: nil,
            triggeredBy: "dana"
        )
        h.manual.advance(601)
        #expect(
            await oauthCode {
                _ = try await h.tokens.poll(client: "acme-web", secret: secret, deviceCode: d2.deviceCode)
            }
                == "expired_token"
        )
        #expect(
            await oauthCode {
                _ = try await h.tokens.approve(userCode: d2.userCode, sessionToken: rita, proof: nil, address: "t")
            }
                != nil
        )
    }

    @Test func delegationApprovesRunsWithinItsWindowOnly() async throws {
        let h = try await TokenHarness()
        try await h.user("rita", ["release-managers"])
        let secret = try await h.tokens.clients.add(name: "acme-web", actor: "root")
        let s = try await h.signIn("rita")
        #expect(
            await oauthCode {
                _ = try await h.tokens.delegate(
                    sessionToken: s,
                    client: "acme-web",
                    role: "deployer",
                    stage: "production",
                    audience: "deploy-api",
                    window: 600
                )
            } == "forbidden"
        )
        #expect(
            await oauthCode {
                _ = try await h.tokens.delegate(
                    sessionToken: s,
                    client: "acme-web",
                    role: "deployer",
                    stage: "staging",
                    audience: "deploy-api",
                    window: 9 * 3600
                )
            } == "invalid_request"
        )
        let dl = try await h.tokens.delegate(
            sessionToken: s,
            client: "acme-web",
            role: "deployer",
            stage: "staging",
            audience: "deploy-api",
            window: 3600
        )
        let d = try await h.tokens.startRequest(
            client: "acme-web",
            secret: secret,
            audience: "deploy-api",
            role: "deployer",
            stage: "staging",
            runId: "r6",
            commit: nil,
            triggeredBy: nil
        )
        #expect(d.preApproved)
        let t = try await h.tokens.poll(client: "acme-web", secret: secret, deviceCode: d.deviceCode)
        #expect(try await h.verifier().verify(t.accessToken).claims["sub"]?.stringValue == "rita")
        await #expect(try h.human.store.approvals(requestId: d.requestId).first?.delegationId == dl.id)
        h.manual.advance(3601)
        let later = try await h.tokens.startRequest(
            client: "acme-web",
            secret: secret,
            audience: "deploy-api",
            role: "deployer",
            stage: "staging",
            runId: "r7",
            commit: nil,
            triggeredBy: nil
        )
        #expect(!later.preApproved)
    }

    @Test func userCodesAreNormalisedAndGuessesAreThrottled() async throws {
        #expect(UserCode.normalize("bcdf ghjk") == "BCDF-GHJK")
        #expect(UserCode.normalize("BCDF-GHJA") == nil)  // a vowel is not in the alphabet
        #expect(UserCode.normalize("BCD") == nil)
        let h = try await TokenHarness()
        try await h.user("rita", ["release-managers"])
        let s = try await h.signIn("rita")
        var codes: [String] = []
        for _ in 0..<8 {
            codes.append(
                await oauthCode {
                    _ = try await h.tokens.view(userCode: "BCDF-GHJK", sessionToken: s, address: "9.9.9.9")
                }
                    ?? "none"
            )
        }
        #expect(codes.prefix(3).allSatisfy { $0 == "not_found" })
        #expect(codes.contains { $0.contains("throttled") })
    }
}

@Suite struct RevocationTests {
    @Test func eachRevocationKindReachesTheStatusList() async throws {
        let h = try await TokenHarness()
        try await h.user("ada", ["admins", "developers"])
        try await h.user("dana", ["developers"])
        let admin = try await h.signIn("ada")
        let dana = try await h.signIn("dana")
        func mint(_ s: String) async throws -> IssuedToken {
            try await h.tokens.exchange(sessionToken: s, audience: "deploy-api", role: "builder", stage: "build")
        }
        let a = try await mint(dana)
        let b = try await mint(dana)
        let keep = try await mint(admin)
        // A user revokes their own token by jti.
        #expect(try await h.tokens.revoke(.jti(a.jti), sessionToken: dana, reason: "mine") == [a.jti])
        var v = try await h.verifier()
        #expect(throws: VerificationError(.revoked, "")) { try v.verify(a.accessToken) }
        _ = try v.verify(b.accessToken)
        _ = try v.verify(keep.accessToken)
        // Not someone else's.
        #expect(
            await oauthCode { _ = try await h.tokens.revoke(.jti(keep.jti), sessionToken: dana, reason: nil) }
                == "forbidden"
        )
        // By user (admin, fresh).
        #expect(try await h.tokens.revoke(.user("dana"), sessionToken: admin, reason: nil) == [b.jti])
        v = try await h.verifier()
        #expect(throws: VerificationError(.revoked, "")) { try v.verify(b.accessToken) }
        // By session: the session ends too.
        let dana2 = try await h.signIn("dana")
        let c = try await mint(dana2)
        let sid = try await h.human.sessions.requireMFA(token: dana2).id
        _ = try await h.tokens.revoke(.session(sid), sessionToken: dana2, reason: nil)
        await #expect(throws: BrokerError.invalidSession) { _ = try await h.human.sessions.requireMFA(token: dana2) }
        v = try await h.verifier()
        #expect(throws: VerificationError(.revoked, "")) { try v.verify(c.accessToken) }
        // By key: admin only, and an admin whose factor is stale must step up.
        h.manual.advance(301)
        #expect(
            await oauthCode { _ = try await h.tokens.revoke(.kid(keep.record.kid), sessionToken: admin, reason: nil) }
                == "insufficient_user_authentication"
        )
        try await h.stepUp(admin, "ada")
        // A deploy endpoint still holding the JWKS from before the compromise (it holds the promoted `next` key).
        let cachedKeys = KeySet(jwks: try await h.keys.jwks())
        let jtis = try await h.tokens.revoke(.kid(keep.record.kid), sessionToken: admin, reason: "leak")
        #expect(jtis == [keep.jti])
        // The key is unpublished and the promoted next key signs from now on.
        #expect(try await h.keys.signingKey().kid != keep.record.kid)
        #expect(try await h.keys.jwks().keys.allSatisfy { $0.kid != keep.record.kid })
        v = try await h.verifier()
        #expect(throws: VerificationError(.unknownKey, "")) { try v.verify(keep.accessToken) }
        // With the stale JWKS the signature still checks out, and the live status list says revoked.
        let list = try #require(try await h.tokens.statusLists.list(1))
        let now = h.manual.clock.now()
        let stale = Verifier(
            configuration: try VerifierConfiguration(issuer: h.issuer, audiences: ["deploy-api"], cacheCapacity: 0),
            keys: StaticKeySource(cachedKeys),
            statusLists: StaticStatusListSource([StatusListDocument(jwt: list, fetchedAt: now)]),
            clock: { now }
        )
        for t in [a, b, c, keep] {
            #expect(throws: VerificationError(.revoked, "")) { try stale.verify(t.accessToken) }
        }
        #expect(try await h.tokens.statusLists.revokedIndices(1) == [0, 1, 2, 3])
        let revokes = try await h.auditEvents.filter { $0.action == "revoke" && $0.result == "success" }
        #expect(revokes.count == 4)
    }

    @Test func statusListIsResignedOnRevocationAndCachedOtherwise() async throws {
        let h = try await TokenHarness()
        try await h.user("dana", ["developers"])
        let s = try await h.signIn("dana")
        let t = try await h.tokens.exchange(sessionToken: s, audience: "deploy-api", role: "builder", stage: "build")
        let first = try #require(try await h.tokens.statusLists.list(1))
        #expect(try await h.tokens.statusLists.list(1) == first)
        #expect(try await h.tokens.statusLists.list(2) == nil)
        _ = try await h.tokens.revoke(.jti(t.jti), sessionToken: s, reason: nil)
        let second = try #require(try await h.tokens.statusLists.list(1))
        #expect(second != first)
        let header = try JSONValue.parse(Base64URL.decode(String(second.split(separator: ".")[0])))
        #expect(header["typ"]?.stringValue == "statuslist+jwt")
        let claims = try JSONValue.parse(Base64URL.decode(String(second.split(separator: ".")[1])))
        #expect(claims["ttl"]?.intValue == 60)
        #expect(claims["exp"]?.intValue == (claims["iat"]?.intValue ?? 0) + 3600)
    }
}
