import Foundation
import Hummingbird
import HummingbirdTesting
import StagepassJOSE
import StagepassVerify
import Synchronization
import Testing

@testable import StagepassHummingbird

/// The middleware in front of a handler, with the JWKS and the status list fetched over loopback HTTP by the
/// verifier service's background loops.
@Suite("Hummingbird: token middleware")
struct MiddlewareTests {
    /// A router with `POST /deploy` guarded for production deployers of `acme/*`; the handler echoes the context's
    /// token.
    static func app(_ verifier: Verifier) -> some ApplicationProtocol {
        let router = Router(context: StagepassTokenRequestContext.self)
        router.group("/deploy")
            .add(
                middleware: StagepassTokenMiddleware(
                    gate: TokenGate(
                        verifier: verifier,
                        requirements: Requirements(roles: ["deployer"], stage: "production", pipeline: "acme/*")
                    ),
                    publicOrigin: "https://deploy.example"
                )
            )
            .post { _, context in
                let t = try context.requireStagepassToken()
                return "\(t.subject) \(t.role ?? "-") \(t.stage ?? "-") \(t.clientID ?? "-")"
            }
        router.get("/open") { _, context in
            // Not guarded: asking for a token refuses instead of running without one.
            _ = try context.requireStagepassToken()
            return "unreachable"
        }
        return Application(router: router)
    }

    static func post(
        _ client: some TestClientProtocol,
        _ authorization: [String],
        dpop: [String] = []
    ) async throws -> Answer {
        var headers: HTTPFields = [:]
        for a in authorization { headers.append(HTTPFields.Element(name: .authorization, value: a)) }
        for d in dpop { headers.append(HTTPFields.Element(name: .dpop, value: d)) }
        return Answer(try await client.execute(uri: "/deploy", method: .post, headers: headers))
    }

    @Test func aValidTokenReachesTheHandlerWithItsClaimsInTheContext() async throws {
        let issuer = try TestIssuer()
        let token = try issuer.token()
        try await issuer.withVerification { service in
            try await Self.app(service.verifier).test(.router) { client in
                let a = try await Self.post(client, ["Bearer \(token)"])
                #expect(a.status == 200)
                #expect(a.body == "rita deployer production acme/web-deploy")
                // The scheme name is case-insensitive (RFC 9110 §11.1).
                #expect(try await Self.post(client, ["bearer \(token)"]).status == 200)
            }
        }
    }

    @Test func noCredentialsIs401WithBothChallengesAndNoErrorCode() async throws {
        let issuer = try TestIssuer()
        try await issuer.withVerification { service in
            try await Self.app(service.verifier).test(.router) { client in
                for authorization in [[], ["Basic YWxpY2U6c2VjcmV0"]] {
                    let a = try await Self.post(client, authorization)
                    #expect(a.status == 401)
                    // RFC 6750 §3.1: no error code when the request carries no credentials; RFC 9449 §7.1 algs.
                    #expect(a.challenge == #"Bearer realm="stagepass", DPoP realm="stagepass", algs="ES256 EdDSA""#)
                    #expect(a.headers[.contentType] == "application/problem+json")
                    #expect(a.headers[.cacheControl] == "no-store")
                    #expect(a.code == "missing_token")
                    #expect(a.json?["type"]?.stringValue == "urn:stagepass:problem:missing_token")
                    #expect(a.json?["status"]?.intValue == 401)
                }
            }
        }
    }

    @Test func malformedCredentialsAre400InvalidRequest() async throws {
        let issuer = try TestIssuer()
        let token = try issuer.token()
        try await issuer.withVerification { service in
            try await Self.app(service.verifier).test(.router) { client in
                for authorization in [
                    ["Bearer \(token)", "Bearer \(token)"],  // two Authorization fields
                    ["Bearer"],  // no token
                    ["Bearer a b"],  // not a b64token
                    ["Bearer tok\"en"],
                    ["Bearer abc=def"],  // padding only at the end
                ] {
                    let a = try await Self.post(client, authorization)
                    #expect(a.status == 400, "\(authorization)")
                    #expect(a.code == "invalid_request")
                    #expect(a.challenge?.contains(#"Bearer realm="stagepass", error="invalid_request""#) == true)
                }
            }
        }
    }

    @Test func refusedTokensAre401InvalidTokenNamingTheReason() async throws {
        let issuer = try TestIssuer()
        let cases: [(String, String)] = [
            (try issuer.token(["exp": .int(TestIssuer.now - 120), "iat": .int(TestIssuer.now - 400)]), "expired"),
            (try issuer.token(["aud": .string("other-api")]), "wrong_audience"),
            (try issuer.token(["iss": .string("https://evil.test")]), "wrong_issuer"),
            ("not-a-jwt", "malformed"),
        ]
        let other = try TestIssuer()  // same issuer name, another key: its kid is unknown here
        let foreign = try other.token()
        try await issuer.withVerification { service in
            try await Self.app(service.verifier).test(.router) { client in
                for (token, reason) in cases + [(foreign, "unknown_key")] {
                    let a = try await Self.post(client, ["Bearer \(token)"])
                    #expect(a.status == 401, "\(reason)")
                    #expect(a.code == "invalid_token")
                    #expect(a.reason == reason)
                    let challenge = try #require(a.challenge)
                    #expect(
                        challenge.hasPrefix(#"Bearer realm="stagepass", error="invalid_token", error_description=""#)
                    )
                    #expect(challenge.hasSuffix(#", DPoP realm="stagepass", algs="ES256 EdDSA""#))
                    #expect(!a.body.contains(token), "the token is never echoed")
                }
            }
        }
    }

    @Test func unmetRequirementsAre403InsufficientScope() async throws {
        let issuer = try TestIssuer()
        let cases: [(String, String)] = [
            (try issuer.token(["stage": .string("staging")]), "stage_mismatch"),
            (try issuer.token(["role": .string("builder")]), "role_mismatch"),
            (try issuer.token(["client_id": .string("other/pipeline")]), "pipeline_mismatch"),
            (try issuer.token(["client_id": .null]), "pipeline_mismatch"),
        ]
        try await issuer.withVerification { service in
            try await Self.app(service.verifier).test(.router) { client in
                for (token, reason) in cases {
                    let a = try await Self.post(client, ["Bearer \(token)"])
                    #expect(a.status == 403, "\(reason)")
                    #expect(a.code == "insufficient_scope")
                    #expect(a.reason == reason)
                    #expect(a.challenge?.contains(#"error="insufficient_scope""#) == true)
                }
            }
        }
    }

    /// The status list is re-fetched in the background (ttl 1 s): a revocation reaches the middleware without a
    /// restart, and no request waited for the fetch.
    @Test func aRevocationReachesTheMiddlewareThroughTheBackgroundRefresh() async throws {
        let issuer = try TestIssuer()
        let token = try issuer.token(idx: 12)
        let bystander = try issuer.token(idx: 13)
        try await issuer.withVerification { service in
            try await Self.app(service.verifier).test(.router) { client in
                #expect(try await Self.post(client, ["Bearer \(token)"]).status == 200)
                issuer.revoked.withLock { _ = $0.insert(12) }
                try await waitUntil("the revoked token is refused") {
                    try await Self.post(client, ["Bearer \(token)"]).status == 401
                }
                let a = try await Self.post(client, ["Bearer \(token)"])
                #expect(a.code == "invalid_token" && a.reason == "revoked")
                #expect(try await Self.post(client, ["Bearer \(bystander)"]).status == 200)
            }
        }
    }

    /// Fail closed: with a status list configured but never obtained, no token passes (503, not 200).
    @Test func withoutItsStatusListTheMiddlewareFailsClosed() async throws {
        let issuer = try TestIssuer()
        let token = try issuer.token()
        try await issuer.withVerification(statusPath: "/missing") { service in
            #expect(service.isReady == false)
            try await Self.app(service.verifier).test(.router) { client in
                let a = try await Self.post(client, ["Bearer \(token)"])
                #expect(a.status == 503)
                #expect(a.code == "status_unavailable")
                #expect(a.headers[.retryAfter] == "5")
                #expect(a.challenge == nil)
            }
        }
    }

    /// RFC 9449 §7.1: a DPoP-bound token (`cnf.jkt`) passes with `Authorization: DPoP` and a fresh proof for this
    /// method and URL; a replayed proof, a proof for another URL or by another key, a missing proof and a Bearer
    /// presentation of the bound token are refused in the DPoP challenge.
    @Test func dpopBoundTokensNeedAFreshProofForThisRequest() async throws {
        let issuer = try TestIssuer()
        let holder = try PrivateKey.generate(for: .ES256)
        let jkt = try JWK(publicKey: holder.publicKey(), alg: nil, use: nil).thumbprint()
        let token = try issuer.token(["cnf": .object(["jkt": .string(jkt)])])
        let url = "https://deploy.example/deploy"
        @Sendable func proof(_ key: PrivateKey = holder, method: String = "POST", url: String = url) throws -> String {
            try DPoPProof.make(key: key, method: method, url: url, accessToken: token, issuedAt: TestIssuer.now)
        }
        let dpopChallenge = #"Bearer realm="stagepass", DPoP realm="stagepass", algs="ES256 EdDSA", error="#
        try await issuer.withVerification { service in
            try await Self.app(service.verifier).test(.router) { client in
                let once = try proof()
                let ok = try await Self.post(client, ["DPoP \(token)"], dpop: [once])
                #expect(ok.status == 200)
                #expect(ok.body == "rita deployer production acme/web-deploy")

                let replay = try await Self.post(client, ["DPoP \(token)"], dpop: [once])
                #expect(replay.status == 401 && replay.code == "invalid_dpop_proof" && replay.reason == "dpop_replayed")
                #expect(replay.challenge?.hasPrefix(dpopChallenge + #""invalid_dpop_proof""#) == true)

                let elsewhere = try await Self.post(client, ["DPoP \(token)"], dpop: [try proof(url: url + "x")])
                #expect(elsewhere.status == 401 && elsewhere.reason == "bad_dpop_proof")
                let method = try await Self.post(client, ["DPoP \(token)"], dpop: [try proof(method: "GET")])
                #expect(method.status == 401 && method.reason == "bad_dpop_proof")
                let otherKey = try PrivateKey.generate(for: .ES256)
                let stolen = try await Self.post(client, ["DPoP \(token)"], dpop: [try proof(otherKey)])
                #expect(stolen.status == 401 && stolen.reason == "dpop_key_mismatch")

                let missing = try await Self.post(client, ["DPoP \(token)"])
                #expect(missing.status == 401 && missing.code == "invalid_dpop_proof")
                let two = try await Self.post(client, ["DPoP \(token)"], dpop: [try proof(), try proof()])
                #expect(two.status == 401 && two.code == "invalid_dpop_proof")

                let bearer = try await Self.post(client, ["Bearer \(token)"], dpop: [try proof()])
                #expect(bearer.status == 401 && bearer.code == "invalid_token" && bearer.reason == "dpop_required")
                #expect(bearer.challenge?.hasPrefix(dpopChallenge + #""invalid_token""#) == true)

                // An unbound token presented with the DPoP scheme asserts a binding it does not have.
                let plain = try issuer.token()
                let unbound = try await Self.post(
                    client,
                    ["DPoP \(plain)"],
                    dpop: [
                        try DPoPProof.make(
                            key: holder,
                            method: "POST",
                            url: url,
                            accessToken: plain,
                            issuedAt: TestIssuer.now
                        )
                    ]
                )
                #expect(unbound.status == 401 && unbound.reason == "dpop_key_mismatch")
            }
        }
    }

    @Test func aRouteTheMiddlewareDoesNotGuardCannotGetAToken() async throws {
        let issuer = try TestIssuer()
        try await issuer.withVerification { service in
            try await Self.app(service.verifier).test(.router) { client in
                let r = try await client.execute(uri: "/open", method: .get)
                #expect(r.status == .unauthorized)
            }
        }
    }

    @Test func theReadmeDeployServiceAcceptsAndRefuses() async throws {
        let issuer = try TestIssuer()
        let good = try issuer.token()
        let staging = try issuer.token(["stage": .string("staging")])
        try await issuer.application().test(.live) { documents in
            let port = try #require(documents.port)
            let app = try buildDeployService(
                issuer: issuer.issuer,
                jwks: try #require(URL(string: "http://127.0.0.1:\(port)/jwks.json")),
                statusList: try #require(URL(string: "http://127.0.0.1:\(port)/statuslists/1"))
            )
            try await app.test(.router) { client in
                try await waitUntil("the deploy service fetched its documents") {
                    try await Self.post(client, ["Bearer \(good)"]).status == 200
                }
                let a = try await Self.post(client, ["Bearer \(good)"])
                #expect(a.body == "deploying for rita, pipeline acme/web-deploy\n")
                #expect(try await Self.post(client, ["Bearer \(staging)"]).status == 403)
                #expect(try await Self.post(client, []).status == 401)
                #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
            }
        }
    }
}
