import Foundation
import Hummingbird
import HummingbirdTesting
import StagepassJOSE
import StagepassVerify
import Synchronization
import Testing

@testable import StagepassHummingbird

/// `stagepass guard`'s responder: forward-auth subrequests as nginx `auth_request` (X-Original-*) and Traefik/Caddy
/// (X-Forwarded-*) send them, with the JWKS and status list fetched over loopback HTTP.
@Suite("Hummingbird: forward-auth guard")
struct ForwardAuthGuardTests {
    static let nginxHeaders: [(String, String)] = [
        ("X-Original-Method", "POST"), ("X-Original-URI", "/deploy?env=prod"), ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "deploy.example"),
    ]
    static let forwardedHeaders: [(String, String)] = [
        ("X-Forwarded-Method", "POST"), ("X-Forwarded-Uri", "/deploy"), ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "deploy.example:8443"),
    ]

    static func app(
        _ service: StagepassVerifierService,
        trusted: ForwardedHeaderSet = .nginx,
        publicOrigin: String? = nil
    ) -> some ApplicationProtocol {
        Application(
            responder: ForwardAuthGuard(
                gate: TokenGate(
                    verifier: service.verifier,
                    requirements: Requirements(roles: ["deployer"], stage: "production", pipeline: "acme/*")
                ),
                trusted: trusted,
                publicOrigin: publicOrigin,
                ready: { service.isReady }
            )
        )
    }

    static func auth(
        _ client: some TestClientProtocol,
        token: String?,
        forwarded: [(String, String)] = nginxHeaders,
        method: HTTPRequest.Method = .get
    ) async throws -> Answer {
        var headers: HTTPFields = [:]
        if let token { headers[.authorization] = "Bearer \(token)" }
        for (name, value) in forwarded {
            headers.append(HTTPFields.Element(name: try #require(FieldName(name)), value: value))
        }
        return Answer(try await client.execute(uri: "/auth", method: method, headers: headers))
    }

    @Test func anAcceptedTokenIs200WithTheIdentityHeaders() async throws {
        let issuer = try TestIssuer()
        let token = try issuer.token()
        try await issuer.withVerification { service in
            try await Self.app(service).test(.router) { client in
                // nginx keeps the original method on the subrequest; Caddy sends GET: both are answered.
                for method in [HTTPRequest.Method.get, .post, .head, .put, .delete] {
                    let a = try await Self.auth(client, token: token, method: method)
                    #expect(a.status == 200, "\(method)")
                }
                let a = try await Self.auth(client, token: token)
                let h = a.headers
                func header(_ name: String) -> String? { FieldName(name).flatMap { h[$0] } }
                #expect(header("X-Stagepass-Subject") == "rita")
                #expect(header("X-Stagepass-Role") == "deployer")
                #expect(header("X-Stagepass-Stage") == "production")
                #expect(header("X-Stagepass-Run") == "run-4711")
                #expect(header("X-Stagepass-Client") == "acme/web-deploy")
                #expect(header("X-Stagepass-Actor") == "acme/web-deploy")
                #expect(header("X-Stagepass-Commit") == "5d41402abc4b2a76b9719d911017c592")
                #expect(header("X-Stagepass-Token-Id")?.hasPrefix("tok-") == true)
                #expect(header("X-Stagepass-Expires").flatMap { Int64($0) } ?? 0 > TestIssuer.now)
                #expect(h[.cacheControl] == "no-store")
            }
        }
    }

    @Test func refusalsCarryTheirStatusAndChallenge() async throws {
        let issuer = try TestIssuer()
        let staging = try issuer.token(["stage": .string("staging")])
        let wrongAudience = try issuer.token(["aud": .string("other-api")])
        try await issuer.withVerification { service in
            try await Self.app(service).test(.router) { client in
                let none = try await Self.auth(client, token: nil)
                #expect(none.status == 401 && none.code == "missing_token")
                #expect(none.challenge == #"Bearer realm="stagepass", DPoP realm="stagepass", algs="ES256 EdDSA""#)
                let stage = try await Self.auth(client, token: staging)
                #expect(stage.status == 403 && stage.reason == "stage_mismatch")
                #expect(stage.challenge?.contains(#"error="insufficient_scope""#) == true)
                let aud = try await Self.auth(client, token: wrongAudience)
                #expect(aud.status == 401 && aud.reason == "wrong_audience")
                #expect(aud.challenge?.contains(#"error="invalid_token""#) == true)
                #expect(aud.json?["type"]?.stringValue == "urn:stagepass:problem:invalid_token")
            }
        }
    }

    @Test func theOriginalRequestComesOnlyFromTheTrustedHeaderSet() async throws {
        let issuer = try TestIssuer()
        let token = try issuer.token()
        try await issuer.withVerification { service in
            try await Self.app(service, trusted: .forwarded).test(.router) { client in
                #expect(try await Self.auth(client, token: token, forwarded: Self.forwardedHeaders).status == 200)
                // nginx's headers mean nothing to a guard that trusts the X-Forwarded-* set.
                let a = try await Self.auth(
                    client,
                    token: token,
                    forwarded: Self.nginxHeaders.filter { $0.0.hasPrefix("X-Original") }
                )
                #expect(a.status == 400)
                #expect(a.code == "invalid_request" && a.reason == "bad_forwarded_headers")
            }
        }
        let guardForNginx = ForwardAuthGuard(
            gate: TokenGate(
                verifier: Verifier(
                    configuration: try .init(issuer: "i", audiences: ["a"]),
                    keys: StaticKeySource(KeySet(jwks: JWKS(keys: [])))
                )
            ),
            trusted: .nginx
        )
        var headers = HTTPFields()
        for (n, v) in Self.nginxHeaders {
            headers.append(HTTPFields.Element(name: try #require(FieldName(n)), value: v))
        }
        #expect(
            try guardForNginx.originalRequest(headers).get()
                == OriginalRequest(method: "POST", url: "https://deploy.example/deploy?env=prod")
        )
        let traefik = ForwardAuthGuard(gate: guardForNginx.gate, trusted: .forwarded)
        var fwd = HTTPFields()
        for (n, v) in Self.forwardedHeaders {
            fwd.append(HTTPFields.Element(name: try #require(FieldName(n)), value: v))
        }
        #expect(
            try traefik.originalRequest(fwd).get()
                == OriginalRequest(method: "POST", url: "https://deploy.example:8443/deploy")
        )
        // A configured public origin replaces the forwarded proto and host (which need not be sent then).
        let pinned = ForwardAuthGuard(gate: guardForNginx.gate, trusted: .nginx, publicOrigin: "https://api.example/")
        var pinnedHeaders = HTTPFields()
        pinnedHeaders.append(HTTPFields.Element(name: try #require(FieldName("X-Original-Method")), value: "GET"))
        pinnedHeaders.append(HTTPFields.Element(name: try #require(FieldName("X-Original-URI")), value: "/v1/deploy"))
        #expect(
            try pinned.originalRequest(pinnedHeaders).get()
                == OriginalRequest(method: "GET", url: "https://api.example/v1/deploy")
        )
    }

    /// The refused proxy header sets (typed up front: one literal of nested tuples is slow to type-check).
    static let badProxyHeaders: [(String, [(String, String)])] = {
        let ok: [(String, String)] = [
            ("X-Original-Method", "GET"), ("X-Original-URI", "/d"), ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "h"),
        ]
        func without(_ name: String) -> [(String, String)] { ok.filter { $0.0 != name } }
        func replacing(_ name: String, _ value: String) -> [(String, String)] {
            ok.map { $0.0 == name ? (name, value) : $0 }
        }
        var cases: [(String, [(String, String)])] = []
        cases.append(("missing method", without("X-Original-Method")))
        cases.append(("missing uri", without("X-Original-URI")))
        cases.append(("missing host", without("X-Forwarded-Host")))
        cases.append(("two methods", ok + [("X-Original-Method", "POST")]))
        cases.append(("absolute uri", replacing("X-Original-URI", "https://evil/d")))
        cases.append(("bad proto", replacing("X-Forwarded-Proto", "gopher")))
        cases.append(("host with user info", replacing("X-Forwarded-Host", "user@h")))
        cases.append(("host with a path", replacing("X-Forwarded-Host", "h/x")))
        cases.append(("method with a space", replacing("X-Original-Method", "GE T")))
        return cases
    }()

    /// Each refused proxy header: missing, repeated, or not of its form. The answer is 400 (nginx turns it into a
    /// 500: the request is refused either way), never a verdict on a guessed URL.
    @Test(arguments: badProxyHeaders)
    func badProxyHeadersAre400(_ name: String, _ fields: [(String, String)]) throws {
        let g = ForwardAuthGuard(
            gate: TokenGate(
                verifier: Verifier(
                    configuration: try .init(issuer: "i", audiences: ["a"]),
                    keys: StaticKeySource(KeySet(jwks: JWKS(keys: [])))
                )
            ),
            trusted: .nginx
        )
        var headers = HTTPFields()
        for (n, v) in fields { headers.append(HTTPFields.Element(name: try #require(FieldName(n)), value: v)) }
        switch g.originalRequest(headers) {
        case .success(let o): Issue.record("\(name): accepted as \(o)")
        case .failure(let r):
            #expect(r.status == .badRequest, "\(name)")
            #expect(r.reason == "bad_forwarded_headers")
        }
    }

    @Test func healthReadinessAndOtherPaths() async throws {
        let issuer = try TestIssuer()
        try await issuer.withVerification(statusPath: "/missing") { service in
            try await Self.app(service).test(.router) { client in
                #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
                // Keys in, status list never obtained: not ready, and tokens fail closed.
                #expect(try await client.execute(uri: "/readyz", method: .get).status == .serviceUnavailable)
                let a = try await Self.auth(client, token: try issuer.token())
                #expect(a.status == 503 && a.code == "status_unavailable")
                #expect(try await client.execute(uri: "/other", method: .get).status == .notFound)
            }
        }
        try await issuer.withVerification { service in
            try await Self.app(service).test(.router) { client in
                let ready = try await client.execute(uri: "/readyz", method: .get)
                #expect(ready.status == .ok)
            }
        }
    }

    /// DPoP through the guard: the proof's `htm` and `htu` are checked against the original request the trusted proxy
    /// headers name, and each proof passes once (with or without the verified-token cache).
    @Test(arguments: [0, 1024])
    func dpopProofsAreBoundToTheForwardedRequestAndSeenOnce(_ capacity: Int) async throws {
        let issuer = try TestIssuer()
        let holder = try PrivateKey.generate(for: .ES256)
        let jkt = try JWK(publicKey: holder.publicKey(), alg: nil, use: nil).thumbprint()
        let token = try issuer.token(["cnf": .object(["jkt": .string(jkt)])])
        @Sendable func subrequest(
            _ client: some TestClientProtocol,
            proof: String,
            forwarded: [(String, String)]
        ) async throws
            -> Answer
        {
            var headers: HTTPFields = [.authorization: "DPoP \(token)"]
            headers.append(HTTPFields.Element(name: .dpop, value: proof))
            for (n, v) in forwarded { headers.append(HTTPFields.Element(name: try #require(FieldName(n)), value: v)) }
            return Answer(try await client.execute(uri: "/auth", method: .get, headers: headers))
        }
        try await issuer.withVerification(cacheCapacity: capacity) { service in
            try await Self.app(service, trusted: .forwarded).test(.router) { client in
                // Traefik: POST https://deploy.example:8443/deploy (the subrequest itself is a GET to /auth).
                let p = try DPoPProof.make(
                    key: holder,
                    method: "POST",
                    url: "https://deploy.example:8443/deploy",
                    accessToken: token,
                    issuedAt: TestIssuer.now
                )
                let a = try await subrequest(client, proof: p, forwarded: Self.forwardedHeaders)
                #expect(a.status == 200)
                #expect(FieldName("X-Stagepass-Subject").flatMap { a.headers[$0] } == "rita")
                let again = try await subrequest(client, proof: p, forwarded: Self.forwardedHeaders)
                #expect(again.status == 401 && again.reason == "dpop_replayed")
                // The same kind of proof made for the nginx request (another URL) does not fit this one.
                let other = try DPoPProof.make(
                    key: holder,
                    method: "POST",
                    url: "https://deploy.example/deploy",
                    accessToken: token,
                    issuedAt: TestIssuer.now
                )
                let wrongURL = try await subrequest(client, proof: other, forwarded: Self.forwardedHeaders)
                #expect(wrongURL.status == 401 && wrongURL.reason == "bad_dpop_proof")
            }
        }
    }

    /// A claim cannot inject a header line or smuggle bytes a proxy would mangle: values outside visible ASCII are
    /// percent-encoded (and `%` itself).
    @Test func identityHeaderValuesArePercentEncodedOutsideVisibleASCII() async throws {
        let issuer = try TestIssuer()
        let token = try issuer.token(["sub": .string("josé\r\nX-Evil: 1 100%")])
        try await issuer.withVerification { service in
            try await Self.app(service).test(.router) { client in
                let a = try await Self.auth(client, token: token)
                #expect(a.status == 200)
                let subject = FieldName("X-Stagepass-Subject").flatMap { a.headers[$0] }
                #expect(subject == "jos%C3%A9%0D%0AX-Evil: 1 100%25")
                #expect(FieldName("X-Evil").flatMap { a.headers[$0] } == nil)
            }
        }
    }

    /// The verified-token cache is the verifier's: on or off, the verdicts are the same, and a revocation reaches a
    /// cached token (status is checked on every call).
    @Test(arguments: [0, 1024])
    func verdictsDoNotDependOnTheTokenCache(_ capacity: Int) async throws {
        let issuer = try TestIssuer()
        let token = try issuer.token(idx: 20)
        try await issuer.withVerification(cacheCapacity: capacity) { service in
            try await Self.app(service).test(.router) { client in
                #expect(try await Self.auth(client, token: token).status == 200)
                #expect(try await Self.auth(client, token: token).status == 200)
                issuer.revoked.withLock { _ = $0.insert(20) }
                try await waitUntil("the revoked token is refused") {
                    try await Self.auth(client, token: token).status == 401
                }
                #expect(try await Self.auth(client, token: token).reason == "revoked")
            }
        }
    }
}
