import Foundation
import StagepassJOSE
import StagepassVerify
import Testing

@testable import StagepassBroker

/// A CI platform in a test: RSA keys, a pinned JWKS file the broker reads (``PinnedKeySource``), and tokens shaped
/// like the platform's documentation says.
final class TestCIPlatform: @unchecked Sendable {
    let dir: TempDir
    let issuer: String
    let audience = "https://stagepass.test"
    var key: PrivateKey
    var kid: String
    var jwksPath: String { dir.path + "/ci-jwks.json" }

    init(issuer: String) throws {
        dir = try TempDir()
        self.issuer = issuer
        (key, kid) = try Self.newKey()
        try publish([key])
    }

    static func newKey() throws -> (PrivateKey, String) {
        let k = try PrivateKey.generate(for: .RS256, rsaBits: 2048)
        let jwk = try JWK(publicKey: try k.publicKey(), alg: .RS256)
        return (k, jwk.kid ?? "")
    }

    /// Writes the JWKS file with these keys.
    func publish(_ keys: [PrivateKey]) throws {
        let jwks = JWKS(keys: try keys.map { try JWK(publicKey: try $0.publicKey(), alg: .RS256) })
        try jwks.serialized().write(toFile: jwksPath, atomically: true, encoding: .utf8)
    }

    /// Rotates to a fresh key, published in the file (the old one stays too).
    func rotate() throws {
        let old = key
        (key, kid) = try Self.newKey()
        try publish([old, key])
    }

    func sign(_ claims: [String: JSONValue], key: PrivateKey? = nil, kid: String? = nil) throws -> String {
        try JWS.sign(
            claims: .object(claims),
            header: ["typ": .string("JWT"), "kid": .string(kid ?? self.kid)],
            key: key ?? self.key,
            alg: .RS256
        )
    }

    var policy: CIIssuerPolicy {
        CIIssuerPolicy(name: "", issuer: issuer, audience: audience, mapping: .github, jwksFile: jwksPath)
    }
}

/// GitHub Actions' published claim set (docs.github.com: "About security hardening with OpenID Connect").
func githubClaims(
    _ p: TestCIPlatform,
    now: Int64,
    repositoryId: String = "1296269",
    ref: String = "refs/heads/main",
    protected: Bool = true,
    event: String = "push",
    jti: String = UUID().uuidString
) -> [String: JSONValue] {
    [
        "iss": .string(p.issuer), "aud": .string(p.audience), "iat": .int(now), "nbf": .int(now),
        "exp": .int(now + 300), "jti": .string(jti),
        "sub": .string("repo:octo-org/octo-repo:environment:prod"), "repository": .string("octo-org/octo-repo"),
        "repository_id": .string(repositoryId), "repository_owner": .string("octo-org"),
        "repository_owner_id": .string("65432"), "repository_visibility": .string("private"),
        "ref": .string(ref), "ref_type": .string("branch"), "ref_protected": .string(protected ? "true" : "false"),
        "sha": .string("example-sha-0d6fa26"), "workflow": .string("deploy"),
        "workflow_ref": .string("octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main"),
        "job_workflow_ref": .string("octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main"),
        "environment": .string("prod"), "event_name": .string(event), "run_id": .string("5067897711"),
        "run_number": .string("42"), "run_attempt": .string("1"), "actor": .string("octocat"),
        "actor_id": .string("583231"), "runner_environment": .string("github-hosted"),
    ]
}

/// GitLab's published ID token payload (docs.gitlab.com: "OpenID Connect (OIDC) Authentication Using ID Tokens").
func gitlabClaims(_ p: TestCIPlatform, now: Int64) -> [String: JSONValue] {
    [
        "iss": .string(p.issuer), "aud": .string(p.audience), "iat": .int(now), "nbf": .int(now),
        "exp": .int(now + 3600), "jti": .string(UUID().uuidString),
        "sub": .string("project_path:mygroup/myproject:ref_type:branch:ref:main"),
        "namespace_id": .string("72"), "namespace_path": .string("mygroup"), "project_id": .string("20"),
        "project_path": .string("mygroup/myproject"), "user_id": .string("1"), "user_login": .string("sample-user"),
        "user_email": .string("sample-user@example.com"), "pipeline_id": .string("574"),
        "pipeline_source": .string("push"), "job_id": .string("302"), "ref": .string("main"),
        "ref_type": .string("branch"), "ref_path": .string("refs/heads/main"), "ref_protected": .string("true"),
        "environment": .string("production"), "environment_protected": .string("true"),
        "deployment_tier": .string("production"), "sha": .string("714a629c0b401fdce83e847fc9589983fc6f46bc"),
        "ci_config_ref_uri": .string("gitlab.example.com/mygroup/myproject//.gitlab-ci.yml@refs/heads/main"),
        "ci_config_sha": .string("714a629c0b401fdce83e847fc9589983fc6f46bc"), "runner_id": .int(27),
        "runner_environment": .string("gitlab-hosted"),
    ]
}

/// Buildkite's published claims (buildkite.com/docs: "OIDC with Buildkite"), with the optional `organization_id`
/// and `pipeline_id`; no `jti`.
func buildkiteClaims(_ p: TestCIPlatform, now: Int64) -> [String: JSONValue] {
    [
        "iss": .string(p.issuer), "aud": .string(p.audience), "iat": .int(now), "nbf": .int(now),
        "exp": .int(now + 300),
        "sub": .string("organization:acme-inc:pipeline:deploy-web:ref:refs/heads/main:commit:9f3182061f1e:step:deploy"),
        "organization_slug": .string("acme-inc"), "pipeline_slug": .string("deploy-web"), "build_number": .int(1),
        "build_branch": .string("main"), "build_tag": .null,
        "build_commit": .string("9f3182061f1e2cca4702c368cbc039b7dc9d4485"),
        "step_key": .string("deploy"), "job_id": .string("0184990a-477b-4fa8-9968-496074483cee"),
        "agent_id": .string("0184990a-4782-42b5-afc1-16715b10b8ff"),
        "organization_id": .string("0184990a-aaaa-4fa8-9968-496074483cee"),
        "pipeline_id": .string("0184990a-bbbb-4fa8-9968-496074483cee"),
    ]
}

/// Three platforms, one pipeline each, guardrails as the docs recommend.
func ciPolicy(github: TestCIPlatform, gitlab: TestCIPlatform, buildkite: TestCIPlatform) -> AccessPolicy {
    var p = examplePolicy(selfApproval: false)
    var gh = github.policy
    gh.name = "github"
    var gl = gitlab.policy
    gl.name = "gitlab"
    gl.mapping = .gitlab
    var bk = buildkite.policy
    bk.name = "buildkite"
    bk.mapping = .buildkite
    p.ciIssuers = ["github": gh, "gitlab": gl, "buildkite": bk]
    p.ciGuardrails = CIGuardrails(protectedRefStages: ["production"])
    p.pipelines["octo-deploy"] = PipelinePolicy(
        name: "octo-deploy",
        roles: ["deployer"],
        ci: CIRule(
            issuer: "github",
            claims: [
                .repository: .exact("octo-org/octo-repo"), .repositoryId: .exact("1296269"), .ownerId: .exact("65432"),
                .workflowRef: .glob("octo-org/octo-repo/.github/workflows/deploy.yml@*"),
            ]
        )
    )
    p.pipelines["gl-deploy"] = PipelinePolicy(
        name: "gl-deploy",
        ci: CIRule(
            issuer: "gitlab",
            claims: [.repository: .exact("mygroup/myproject"), .repositoryId: .exact("20"), .ownerId: .exact("72")]
        )
    )
    p.pipelines["bk-deploy"] = PipelinePolicy(
        name: "bk-deploy",
        ci: CIRule(
            issuer: "buildkite",
            claims: [
                .repository: .exact("deploy-web"), .repositoryId: .exact("0184990a-bbbb-4fa8-9968-496074483cee"),
                .ownerId: .exact("0184990a-aaaa-4fa8-9968-496074483cee"), .ref: .exact("main"),
            ]
        )
    )
    p.identities = ["github:octocat": "olivia", "sample-user": "sam"]
    return p
}

/// The broker's refusal: its OAuth code and description.
func refusal(_ body: () async throws -> Void) async -> (code: String, detail: String)? {
    do { try await body() } catch let e as OAuthError { return (e.error, e.errorDescription) } catch {
        return ("other", "\(error)")
    }
    return nil
}

@Suite struct CIFederationTests {
    let gh: TestCIPlatform
    let gl: TestCIPlatform
    let bk: TestCIPlatform

    init() throws {
        gh = try TestCIPlatform(issuer: "https://token.actions.githubusercontent.com")
        gl = try TestCIPlatform(issuer: "https://gitlab.example.com")
        bk = try TestCIPlatform(issuer: "https://agent.buildkite.com")
    }

    func harness() async throws -> TokenHarness {
        let h = try await TokenHarness(policy: ciPolicy(github: gh, gitlab: gl, buildkite: bk))
        try await h.user("rita", ["release-managers"])
        return h
    }

    func start(
        _ h: TokenHarness,
        _ token: String,
        stage: String = "production",
        pipeline: String? = nil
    ) async throws
        -> DeviceAuthorization
    {
        try await h.tokens.startCIRequest(
            ciToken: token,
            pipeline: pipeline,
            audience: "deploy-api",
            role: "deployer",
            stage: stage
        )
    }

    /// The run approved by a human with a fresh TOTP, then the job's token: `act` names what the CI token said.
    @Test func githubJobGetsItsRequestAndAfterApprovalATokenWhoseActNamesTheRun() async throws {
        let h = try await harness()
        let now = h.manual.clock.now()
        let ciToken = try gh.sign(githubClaims(gh, now: now))
        let d = try await start(h, ciToken)
        #expect(d.pipeline == "octo-deploy" && d.runId == "5067897711")
        let r = try await #require(try h.human.store.request(id: d.requestId))
        #expect(r.runId == "5067897711" && r.commit == "example-sha-0d6fa26" && r.triggeredBy == "octocat")
        #expect(r.ciIssuer == gh.issuer)
        #expect(CIIdentity.parseClaims(r.ciClaims ?? "")[.workflowRef]?.hasSuffix("deploy.yml@refs/heads/main") == true)
        // Polled by the device code alone; a secret-less poll of a secret-authenticated request is refused elsewhere.
        #expect(
            await oauthCode {
                _ = try await h.tokens.poll(client: "octo-deploy", secret: nil, deviceCode: d.deviceCode)
            }
                == "authorization_pending"
        )
        let s = try await h.signIn("rita")
        await #expect(try h.tokens.approve(userCode: d.userCode, sessionToken: s, proof: nil, address: "t").approved)
        h.manual.advance(10)
        let t = try await h.tokens.poll(client: "octo-deploy", secret: nil, deviceCode: d.deviceCode)
        let c = try await h.verifier().verify(t.accessToken).claims
        #expect(c["sub"]?.stringValue == "rita" && c["client_id"]?.stringValue == "octo-deploy")
        let act = try #require(c["act"])
        #expect(act["sub"]?.stringValue == "octo-deploy")
        #expect(act["ci_iss"]?.stringValue == gh.issuer)
        #expect(act["repository"]?.stringValue == "octo-org/octo-repo")
        #expect(act["repository_id"]?.stringValue == "1296269")
        #expect(act["run_id"]?.stringValue == "5067897711")
        #expect(act["commit"]?.stringValue == "example-sha-0d6fa26")
        #expect(c["commit"]?.stringValue == "example-sha-0d6fa26")
        // The audit names the issuer, the rule and the claims, never the token.
        let start = try await #require(try h.auditEvents.first { $0.action == "request.start" })
        #expect(start.details["ci_issuer"] == gh.issuer && start.details["client"] == "octo-deploy")
        #expect(start.details["ci_claims"]?.contains("\"repository_id\":\"1296269\"") == true)
        let signature = String(ciToken.split(separator: ".")[2])
        await #expect(try h.auditEvents.allSatisfy { e in !e.details.values.contains { $0.contains(signature) } })
    }

    @Test func gitlabAndBuildkiteShapedTokensMapOntoTheirPipelines() async throws {
        let h = try await harness()
        let now = h.manual.clock.now()
        let g = try await start(h, try gl.sign(gitlabClaims(gl, now: now)))
        #expect(g.pipeline == "gl-deploy" && g.runId == "574")
        await #expect(try h.human.store.request(id: g.requestId)?.triggeredBy == "sample-user")
        // Buildkite tokens carry no actor: a stage that forbids self-approval cannot keep the trigger out.
        let noActor = await refusal { _ = try await start(h, try bk.sign(buildkiteClaims(bk, now: now))) }
        #expect(noActor?.code == "invalid_request" && noActor?.detail.contains("names no actor") == true)
        let b = try await start(h, try bk.sign(buildkiteClaims(bk, now: now + 1)), stage: "staging")
        #expect(b.pipeline == "bk-deploy" && b.runId == "1")
        let r = try await #require(try h.human.store.request(id: b.requestId))
        #expect(r.commit == "9f3182061f1e2cca4702c368cbc039b7dc9d4485" && r.triggeredBy == nil)
    }

    @Test func refusedWrongIssuer() async throws {
        let h = try await harness()
        let other = try TestCIPlatform(issuer: "https://evil.example")
        let e = await refusal { _ = try await start(h, try other.sign(githubClaims(other, now: h.manual.clock.now()))) }
        #expect(e?.code == "invalid_client" && e?.detail.contains("wrong_issuer") == true)
        await #expect(
            try h.auditEvents.contains { $0.action == "request.deny" && $0.details["ci_refusal"] == "wrong_issuer" }
        )
    }

    @Test func refusedWrongAudience() async throws {
        let h = try await harness()
        var c = githubClaims(gh, now: h.manual.clock.now())
        c["aud"] = .string("https://someone-else.example")
        let e = await refusal { _ = try await start(h, try gh.sign(c)) }
        #expect(e?.code == "invalid_client" && e?.detail.contains("wrong_audience") == true)
    }

    @Test func refusedExpiredBeyondTheLeeway() async throws {
        let h = try await harness()
        let token = try gh.sign(githubClaims(gh, now: h.manual.clock.now()))
        h.manual.advance(300 + 31)
        let e = await refusal { _ = try await start(h, token) }
        #expect(e?.code == "invalid_client" && e?.detail.contains("expired") == true)
    }

    @Test func refusedReplayedJTI() async throws {
        let h = try await harness()
        let token = try gh.sign(githubClaims(gh, now: h.manual.clock.now()))
        _ = try await start(h, token)
        let e = await refusal { _ = try await start(h, token) }
        #expect(e?.code == "invalid_client" && e?.detail.contains("replayed") == true)
        // A Buildkite token has no jti: the token's hash is what is remembered.
        let bkToken = try bk.sign(buildkiteClaims(bk, now: h.manual.clock.now()))
        _ = try await start(h, bkToken, stage: "staging")
        let again = await refusal { _ = try await start(h, bkToken, stage: "staging") }
        #expect(again?.detail.contains("replayed") == true)
    }

    @Test func refusedNameMatchingButIdNot() async throws {
        let h = try await harness()
        let token = try gh.sign(githubClaims(gh, now: h.manual.clock.now(), repositoryId: "99999"))
        let e = await refusal { _ = try await start(h, token, pipeline: "octo-deploy") }
        #expect(e?.code == "invalid_client")
        #expect(e?.detail.contains("repository_id '99999' does not match") == true)
        // The job is not told what the rule expects; the audit record is.
        #expect(e?.detail.contains("1296269") == false)
        let deny = try await #require(try h.auditEvents.last { $0.action == "request.deny" })
        #expect(deny.details["ci_explanation"]?.contains("the rule needs '1296269'") == true)
    }

    @Test func refusedUntrustedEvent() async throws {
        let h = try await harness()
        let token = try gh.sign(githubClaims(gh, now: h.manual.clock.now(), event: "pull_request_target"))
        let e = await refusal { _ = try await start(h, token, stage: "staging") }
        #expect(e?.detail.contains("'pull_request_target' are never trusted") == true)
    }

    @Test func refusedUnprotectedRefForProduction() async throws {
        let h = try await harness()
        let token = try gh.sign(githubClaims(gh, now: h.manual.clock.now(), ref: "refs/heads/wip", protected: false))
        let e = await refusal { _ = try await start(h, token) }
        #expect(e?.detail.contains("needs a run on a protected ref") == true)
        // The same run may reach a stage without that guardrail.
        let ok = try gh.sign(githubClaims(gh, now: h.manual.clock.now(), ref: "refs/heads/wip", protected: false))
        _ = try await start(h, ok, stage: "staging")
    }

    @Test func unknownKidIsRefetchedOnceThenRefused() async throws {
        let h = try await harness()
        let now = h.manual.clock.now()
        // Warm the cache with the current key.
        _ = try await start(h, try gh.sign(githubClaims(gh, now: now)), stage: "staging")
        // The platform rotates: the first token under the new key makes one re-read, and is accepted.
        try gh.rotate()
        _ = try await start(h, try gh.sign(githubClaims(gh, now: now)), stage: "staging")
        // A kid nobody published: one re-read (30 s after the last), still unknown → refused.
        h.manual.advance(31)
        let (stray, strayKid) = try TestCIPlatform.newKey()
        let e = await refusal {
            _ = try await start(h, try gh.sign(githubClaims(gh, now: h.manual.clock.now()), key: stray, kid: strayKid))
        }
        #expect(e?.code == "invalid_client" && e?.detail.contains("unknown_key") == true)
        #expect(e?.detail.contains("even after a re-fetch") == true)
        // Within 30 s, no re-read at all: even a key published meanwhile is not looked for.
        try gh.publish([gh.key, stray])
        let again = await refusal {
            _ = try await start(h, try gh.sign(githubClaims(gh, now: h.manual.clock.now()), key: stray, kid: strayKid))
        }
        #expect(again?.detail.contains("re-fetched within the last 30 s") == true)
    }

    @Test func unreachableIssuerFailsClosed() async throws {
        var p = ciPolicy(github: gh, gitlab: gl, buildkite: bk)
        p.ciIssuers["github"]?.jwksFile = gh.dir.path + "/missing.json"
        let h = try await TokenHarness(policy: p)
        let e = await refusal { _ = try await start(h, try gh.sign(githubClaims(gh, now: h.manual.clock.now()))) }
        #expect(e?.code == "temporarily_unavailable" && e?.detail.contains("cannot be had") == true)
    }

    @Test func aStagepassAccessTokenIsNotACIToken() async throws {
        let h = try await harness()
        let token = try JWS.sign(
            claims: .object(githubClaims(gh, now: h.manual.clock.now())),
            header: ["typ": .string("at+jwt"), "kid": .string(gh.kid)],
            key: gh.key,
            alg: .RS256
        )
        let e = await refusal { _ = try await start(h, token) }
        #expect(e?.detail.contains("wrong_type") == true)
    }

    @Test func theActorIsMappedThroughTheIdentitiesAndCannotApproveTheirOwnRun() async throws {
        let h = try await harness()
        try await h.user("olivia", ["release-managers"])
        let d = try await start(h, try gh.sign(githubClaims(gh, now: h.manual.clock.now())))
        let s = try await h.signIn("olivia")
        let e = await refusal {
            _ = try await h.tokens.approve(userCode: d.userCode, sessionToken: s, proof: nil, address: "t")
        }
        #expect(e?.code == "forbidden")
    }

    @Test func tokenExchangeOfACITokenNeedsALiveDelegation() async throws {
        let h = try await harness()
        let now = h.manual.clock.now()
        let e = await refusal {
            _ = try await h.tokens.exchangeCI(
                ciToken: try gh.sign(githubClaims(gh, now: now)),
                pipeline: nil,
                audience: "deploy-api",
                role: "deployer",
                stage: "production"
            )
        }
        #expect(e?.code == "unauthorized_client" && e?.detail.contains("needs a human's approval") == true)
        let s = try await h.signIn("rita")
        _ = try await h.tokens.delegate(
            sessionToken: s,
            client: "octo-deploy",
            role: "deployer",
            stage: "staging",
            audience: "deploy-api",
            window: 3600
        )
        let t = try await h.tokens.exchangeCI(
            ciToken: try gh.sign(githubClaims(gh, now: now)),
            pipeline: "octo-deploy",
            audience: "deploy-api",
            role: "deployer",
            stage: "staging"
        )
        let c = try await h.verifier().verify(t.accessToken).claims
        #expect(c["sub"]?.stringValue == "rita" && c["act"]?["repository"]?.stringValue == "octo-org/octo-repo")
    }

    /// A pipeline that requires DPoP requires it on the CI-token exchange too: without a proof the exchange is
    /// refused (and the CI token is not spent); with one, the token is bound to the proof's key.
    @Test func theCITokenExchangeHonoursRequireDPoP() async throws {
        var p = ciPolicy(github: gh, gitlab: gl, buildkite: bk)
        p.pipelines["octo-deploy"]?.requireDPoP = true
        let h = try await TokenHarness(policy: p)
        try await h.user("rita", ["release-managers"])
        let now = h.manual.clock.now()
        let s = try await h.signIn("rita")
        _ = try await h.tokens.delegate(
            sessionToken: s,
            client: "octo-deploy",
            role: "deployer",
            stage: "staging",
            audience: "deploy-api",
            window: 3600
        )
        let ciToken = try gh.sign(githubClaims(gh, now: now))
        let e = await refusal {
            _ = try await h.tokens.exchangeCI(
                ciToken: ciToken,
                pipeline: "octo-deploy",
                audience: "deploy-api",
                role: "deployer",
                stage: "staging"
            )
        }
        #expect(e?.code == "invalid_dpop_proof" && e?.detail.contains("octo-deploy") == true)
        let key = try PrivateKey.generate(for: .ES256)
        let proof = try DPoPProof.make(
            key: key,
            method: "POST",
            url: h.tokens.tokenEndpoint,
            issuedAt: h.manual.clock.now(),
            jti: nil
        )
        // The same CI token still works: the refusal above did not spend it.
        let t = try await h.tokens.exchangeCI(
            ciToken: ciToken,
            pipeline: "octo-deploy",
            audience: "deploy-api",
            role: "deployer",
            stage: "staging",
            dpopProof: proof
        )
        #expect(t.tokenType == "DPoP" && t.confirmationThumbprint != nil)
    }

    @Test func theBindingCoversTheCIClaims() async throws {
        var r = ApprovalRequestRecord(
            id: "req_1",
            deviceCodeHash: [1],
            userCode: "BBBB-CCCC",
            clientId: "octo-deploy",
            role: "deployer",
            stage: "production",
            audience: "deploy-api",
            runId: "1",
            commit: "abc",
            triggeredBy: "octocat",
            createdAt: 0,
            expiresAt: 600,
            interval: 5,
            ciIssuer: "https://token.actions.githubusercontent.com",
            ciClaims: #"{"ref":"refs/heads/main"}"#
        )
        let a = try TokenBroker.binding(r)
        r.ciClaims = #"{"ref":"refs/heads/evil"}"#
        #expect(try TokenBroker.binding(r) != a)
        r.ciIssuer = nil
        r.ciClaims = nil
        #expect(try TokenBroker.binding(r) != a)
    }
}

/// The pure rule matcher: every refusal reason, and what the job is (not) told.
@Suite struct CIPolicyEvaluatorTests {
    func identity(_ claims: [CIClaim: String], issuer: String = "github") -> CIIdentity {
        CIIdentity(issuerName: issuer, issuer: "https://i", subject: "s", replayKey: "j", expiresAt: 0, claims: claims)
    }

    var policy: AccessPolicy {
        var p = examplePolicy()
        p.ciIssuers = [
            "github": CIIssuerPolicy(name: "github", issuer: "https://i", audience: "a", mapping: .github),
            "gitlab": CIIssuerPolicy(name: "gitlab", issuer: "https://g", audience: "a", mapping: .gitlab),
        ]
        p.ciGuardrails = CIGuardrails(protectedRefStages: ["production"])
        p.pipelines["web"] = PipelinePolicy(
            name: "web",
            stages: ["staging", "production"],
            ci: CIRule(
                issuer: "github",
                claims: [
                    .repository: .exact("acme/web"), .repositoryId: .exact("1"), .ownerId: .exact("9"),
                    .ref: .anyOf([.exact("refs/heads/main"), .glob("refs/tags/v*")]),
                ]
            )
        )
        p.pipelines["api"] = PipelinePolicy(
            name: "api",
            ci: CIRule(
                issuer: "github",
                claims: [.repository: .exact("acme/api"), .repositoryId: .exact("2"), .ownerId: .exact("9")]
            )
        )
        return p
    }

    let good: [CIClaim: String] = [
        .repository: "acme/web", .repositoryId: "1", .ownerId: "9", .ref: "refs/tags/v1.2", .refProtected: "true",
        .event: "push",
    ]

    func eval(_ id: CIIdentity, stage: String = "production", pipeline: String? = nil) -> CIEvaluation {
        CIPolicyEvaluator.evaluate(
            id,
            role: "deployer",
            stage: stage,
            audience: "deploy-api",
            pipeline: pipeline,
            policy: policy
        )
    }

    @Test func matchesExactGlobAndListConditions() async {
        let e = eval(identity(good))
        #expect(e.matched == "web")
        #expect(e.rules.first { $0.pipeline == "api" }?.mismatch?.claim == .repository)
    }

    @Test(arguments: [
        (CIClaim.repositoryId, "7", "immutable id repository_id is '7', the rule needs '1'"),
        (
            .ref, "refs/heads/dev",
            "ref is 'refs/heads/dev', the rule needs one of ['refs/heads/main', the glob 'refs/tags/v*']"
        ),
        (.ownerId, "8", "immutable id owner_id is '8', the rule needs '9'"),
    ])
    func firstMismatchNamesTheClaimAndWhy(claim: CIClaim, value: String, reason: String) {
        var c = good
        c[claim] = value
        let e = eval(identity(c), pipeline: "web")
        #expect(e.matched == nil)
        #expect(e.rules.first?.mismatch?.claim == claim)
        #expect(e.rules.first?.mismatch?.reason == reason)
        #expect(!e.publicExplanation.contains("the rule needs"))
    }

    @Test func aMissingClaimIsAMismatch() async {
        var c = good
        c[.repositoryId] = nil
        #expect(
            eval(identity(c), pipeline: "web").rules.first?.mismatch?.reason.hasPrefix("the token has no repository_id")
                == true
        )
    }

    @Test func guardrailsComeFirst() async {
        var c = good
        c[.event] = "workflow_run"
        #expect(eval(identity(c)).guardrail?.claim == .event)
        c = good
        c[.refProtected] = "false"
        #expect(eval(identity(c)).guardrail?.claim == .refProtected)
        #expect(eval(identity(c), stage: "staging").matched == "web")
        var p = policy
        p.ciGuardrails.allowedIssuers = ["gitlab"]
        let e = CIPolicyEvaluator.evaluate(
            identity(good),
            role: "deployer",
            stage: "staging",
            audience: "deploy-api",
            pipeline: nil,
            policy: p
        )
        #expect(e.guardrail?.reason.contains("not allowed on this server") == true)
    }

    @Test func otherRepositoriesRulesAreNotDisclosed() async {
        var c = good
        c[.repository] = "acme/other"
        c[.repositoryId] = "5"
        let e = eval(identity(c))
        #expect(e.matched == nil)
        #expect(!e.publicExplanation.contains("web") && !e.publicExplanation.contains("api"))
        #expect(e.explanation.contains("pipeline 'api'") && e.explanation.contains("pipeline 'web'"))
    }

    @Test func roleStageAndAudienceOfThePipelineStillApply() async {
        let e = eval(identity(good), stage: "build", pipeline: "web")
        #expect(e.rules.first?.mismatch?.reason == "the pipeline may not reach the stage 'build'")
    }

    @Test func aPlatformThatCannotSayProtectionNeedsTheRuleToPinTheRef() async {
        var p = policy
        p.ciIssuers["buildkite"] = CIIssuerPolicy(
            name: "buildkite",
            issuer: "https://b",
            audience: "a",
            mapping: .buildkite
        )
        p.pipelines["bk"] = PipelinePolicy(
            name: "bk",
            ci: CIRule(issuer: "buildkite", claims: [.repositoryId: .exact("p"), .ownerId: .exact("o")])
        )
        let id = CIIdentity(
            issuerName: "buildkite",
            issuer: "https://b",
            subject: "s",
            replayKey: "j",
            expiresAt: 0,
            claims: [.repositoryId: "p", .ownerId: "o", .ref: "main"]
        )
        func run(_ p: AccessPolicy) -> CIEvaluation {
            CIPolicyEvaluator.evaluate(
                id,
                role: "deployer",
                stage: "production",
                audience: "deploy-api",
                pipeline: "bk",
                policy: p
            )
        }
        #expect(run(p).rules.first?.mismatch?.claim == .ref)
        p.pipelines["bk"]?.ci?.claims[.ref] = .exact("main")
        #expect(run(p).matched == "bk")
    }

    @Test func anotherIssuersTokenDoesNotMatch() async {
        let e = eval(identity(good, issuer: "gitlab"), pipeline: "web")
        #expect(e.rules.first?.mismatch?.reason == "issued by 'gitlab', the rule trusts 'github'")
    }

    @Test func claimsAreMappedFromEachPlatformsNames() async {
        let raw: JSONValue = .object([
            "project_path": .string("g/p"), "project_id": .string("20"), "namespace_id": .int(72),
            "ref_protected": .bool(true), "user_login": .string("u"), "pipeline_id": .string("5"), "sha": .null,
        ])
        let m = CIIdentity.mapped(raw, .gitlab)
        #expect(
            m == [
                .repository: "g/p", .repositoryId: "20", .ownerId: "72", .refProtected: "true", .actor: "u",
                .runId: "5",
            ]
        )
    }
}
