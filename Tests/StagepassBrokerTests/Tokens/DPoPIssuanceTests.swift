import Foundation
import StagepassJOSE
import StagepassVerify
import Testing

@testable import StagepassBroker

/// DPoP at the token endpoint (RFC 9449 §5): proofs checked, bound tokens carry cnf.jkt, policy can require it.
@Suite struct DPoPIssuanceTests {
    /// The example policy with `require_dpop` on production (stage) and, optionally, on the pipeline.
    func policy(pipelineRequires: Bool = false, stageRequires: Bool = true) -> AccessPolicy {
        var p = examplePolicy()
        p.stages["production"]?.requireDPoP = stageRequires
        p.pipelines["acme-web"]?.requireDPoP = pipelineRequires
        return p
    }

    func proof(
        _ h: TokenHarness,
        key: PrivateKey,
        url: String? = nil,
        method: String = "POST",
        jti: String? = nil
    )
        throws -> String
    {
        try DPoPProof.make(
            key: key,
            method: method,
            url: url ?? h.tokens.tokenEndpoint,
            issuedAt: h.manual.clock.now(),
            jti: jti
        )
    }

    /// A pipeline run for production, approved by rita; returns the client secret and device code.
    func approvedRun(_ h: TokenHarness) async throws -> (String, String) {
        try await h.user("rita", ["release-managers"])
        try await h.user("root", ["developers"])
        let secret = try await h.tokens.clients.add(name: "acme-web", actor: "root")
        let d = try await h.tokens.startRequest(
            client: "acme-web",
            secret: secret,
            audience: "deploy-api",
            role: "deployer",
            stage: "production",
            runId: "run-1",
            commit: nil,
            triggeredBy: "root"
        )
        let s = try await h.signIn("rita")
        _ = try await h.tokens.approve(userCode: d.userCode, sessionToken: s, proof: nil, address: "t")
        h.manual.advance(10)
        return (secret, d.deviceCode)
    }

    @Test func approvedRunWithAProofGetsABoundTokenThatNeedsTheKey() async throws {
        let h = try await TokenHarness(policy: policy())
        let (secret, code) = try await approvedRun(h)
        let key = try PrivateKey.generate(for: .ES256)
        let jkt = try JWK(publicKey: key.publicKey(), alg: nil).thumbprint()
        let t = try await h.tokens.poll(
            client: "acme-web",
            secret: secret,
            deviceCode: code,
            dpopProof: try proof(h, key: key)
        )
        #expect(t.tokenType == "DPoP" && t.confirmationThumbprint == jkt)
        let v = try await h.verifier()
        // Bearer presentation: refused; with a proof by the key: accepted.
        #expect(throws: VerificationError(.dpopRequired, "")) { try v.verify(t.accessToken) }
        let url = "https://deploy.example/api/deploy"
        let p = try DPoPProof.make(
            key: key,
            method: "POST",
            url: url,
            accessToken: t.accessToken,
            issuedAt: h.manual.clock.now()
        )
        let verified = try v.verify(t.accessToken, dpop: .init(proof: p, method: "POST", url: url))
        #expect(verified.confirmationThumbprint == jkt)
        #expect(verified.claims["cnf"]?["jkt"]?.stringValue == jkt)
        let issue = try await #require(try h.auditEvents.last { $0.action == "token.issue" })
        #expect(issue.details["cnf_jkt"] == jkt)
    }

    @Test func requiredDPoPWithoutAProofIsRefusedClearly() async throws {
        let h = try await TokenHarness(policy: policy())
        let (secret, code) = try await approvedRun(h)
        do {
            _ = try await h.tokens.poll(client: "acme-web", secret: secret, deviceCode: code)
            Issue.record("a production token was issued without a DPoP proof")
        } catch let e as OAuthError {
            #expect(e.error == "invalid_dpop_proof")
            #expect(e.errorDescription.contains("production") && e.errorDescription.contains("DPoP"))
        }
        // Still issuable once a proof is sent.
        let key = try PrivateKey.generate(for: .EdDSA)
        let t = try await h.tokens.poll(
            client: "acme-web",
            secret: secret,
            deviceCode: code,
            dpopProof: try proof(h, key: key)
        )
        #expect(t.tokenType == "DPoP")
    }

    @Test func pendingPollWithoutARequiredProofIsRefusedAtOnce() async throws {
        let h = try await TokenHarness(policy: policy())
        try await h.user("root", ["developers"])
        let secret = try await h.tokens.clients.add(name: "acme-web", actor: "root")
        let d = try await h.tokens.startRequest(
            client: "acme-web",
            secret: secret,
            audience: "deploy-api",
            role: "deployer",
            stage: "production",
            runId: "run-2",
            commit: nil,
            triggeredBy: "root"
        )
        #expect(
            await oauthCode {
                _ = try await h.tokens.poll(client: "acme-web", secret: secret, deviceCode: d.deviceCode)
            } == "invalid_dpop_proof"
        )
    }

    @Test func pipelinePolicyCanRequireDPoP() async throws {
        let h = try await TokenHarness(policy: policy(pipelineRequires: true, stageRequires: false))
        let (secret, code) = try await approvedRun(h)
        let refused = await oauthCode {
            _ = try await h.tokens.poll(client: "acme-web", secret: secret, deviceCode: code)
        }
        #expect(refused == "invalid_dpop_proof")
    }

    @Test func replayedOrInvalidProofsAreRefused() async throws {
        let h = try await TokenHarness(policy: policy(stageRequires: false))
        try await h.user("dana", ["developers"])
        let s = try await h.signIn("dana")
        let key = try PrivateKey.generate(for: .ES256)
        let p = try proof(h, key: key)
        let t = try await h.tokens.exchange(
            sessionToken: s,
            audience: "deploy-api",
            role: "builder",
            stage: "build",
            dpopProof: p
        )
        #expect(t.tokenType == "DPoP")
        // The same proof again: refused (the record is in the store, shared by every broker on it).
        let replay = await oauthCode {
            _ = try await h.tokens.exchange(
                sessionToken: s,
                audience: "deploy-api",
                role: "builder",
                stage: "build",
                dpopProof: p
            )
        }
        #expect(replay == "invalid_dpop_proof")
        let bad = [
            try proof(h, key: key, url: "https://elsewhere.test/v1/token"),
            try proof(h, key: key, method: "GET"),
            "not.a.proof",
            try DPoPProof.make(
                key: key,
                method: "POST",
                url: h.tokens.tokenEndpoint,
                issuedAt: h.manual.clock.now() - 600
            ),
        ]
        for b in bad {
            let code = await oauthCode {
                _ = try await h.tokens.exchange(
                    sessionToken: s,
                    audience: "deploy-api",
                    role: "builder",
                    stage: "build",
                    dpopProof: b
                )
            }
            #expect(code == "invalid_dpop_proof")
        }
        // Without a proof, where nothing requires one: a bearer token.
        let bearer = try await h.tokens.exchange(
            sessionToken: s,
            audience: "deploy-api",
            role: "builder",
            stage: "build"
        )
        #expect(bearer.tokenType == "Bearer" && bearer.confirmationThumbprint == nil)
        _ = try await h.verifier().verify(bearer.accessToken)
    }

    @Test func requireDPoPIsReadFromThePolicy() async throws {
        let yaml = AccessPolicy.exampleYAML
            .replacingOccurrences(
                of: "    approvers: 1\n",
                with: "    approvers: 1\n    require_dpop: true\n"
            )
            .replacingOccurrences(
                of: "  acme-web:\n",
                with: "  acme-web:\n    require_dpop: true\n"
            )
        let p = try AccessPolicy.load(yaml: yaml)
        #expect(p.stages["production"]?.requireDPoP == true)
        #expect(p.stages["build"]?.requireDPoP == false)
        #expect(p.pipelines["acme-web"]?.requireDPoP == true)
        #expect(throws: (any Error).self) {
            try AccessPolicy.load(
                yaml: yaml.replacingOccurrences(of: "require_dpop: true", with: "require_dpop: maybe")
            )
        }
        #expect(try AccessPolicy.load(yaml: AccessPolicy.exampleYAML).stages["production"]?.requireDPoP == false)
    }
}
