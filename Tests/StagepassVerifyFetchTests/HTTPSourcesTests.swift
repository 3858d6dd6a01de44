import Foundation
import Hummingbird
import HummingbirdTesting
import StagepassVerify
import StagepassVerifyFetch
import Testing

/// The HTTP key source against a broker stand-in: a Hummingbird server on a free loopback port serving a JWKS.
@Suite("Fetch: JWKS over HTTP")
struct HTTPSourcesTests {
    /// The `es256-valid` case of Specs/vectors/conformance.json: a token, its JWKS and the verifier's settings.
    struct Vector {
        let token: String
        let jwks: String
        let kid: String
        let issuer: String
        let audience: String
        let now: Int64
    }

    static func vector() throws -> Vector {
        // #filePath = <root>/Tests/StagepassVerifyFetchTests/HTTPSourcesTests.swift
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let data = try Data(contentsOf: root.appendingPathComponent("Specs/vectors/conformance.json"))
        let doc = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let cases = try #require(doc["cases"] as? [[String: Any]])
        let c = try #require(cases.first { $0["id"] as? String == "es256-valid" })
        let jwks = try #require(c["jwks"] as? [String: Any])
        let keys = try #require(jwks["keys"] as? [[String: Any]])
        let config = try #require(c["config"] as? [String: Any])
        return Vector(
            token: try #require(c["token"] as? String),
            jwks: String(decoding: try JSONSerialization.data(withJSONObject: jwks), as: UTF8.self),
            kid: try #require(keys.first?["kid"] as? String),
            issuer: try #require(config["issuer"] as? String),
            audience: try #require((config["audiences"] as? [String])?.first),
            now: try #require((c["now"] as? NSNumber)?.int64Value)
        )
    }

    /// A server with `/jwks.json` (Cache-Control max-age=120) and `/missing` (404).
    static func application(jwks: String) -> some ApplicationProtocol {
        let router = Router()
        router.get("/jwks.json") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "application/jwk-set+json", .cacheControl: "public, max-age=120"],
                body: .init(byteBuffer: ByteBuffer(string: jwks))
            )
        }
        router.get("/missing") { _, _ in Response(status: .notFound) }
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }

    @Test func fetchReturnsTheBodyAndItsMaxAge() async throws {
        let v = try Self.vector()
        try await Self.application(jwks: v.jwks).test(.live) { client in
            let port = try #require(client.port)
            let url = try #require(URL(string: "http://127.0.0.1:\(port)/jwks.json"))
            let (body, maxAge) = try await URLSessionGetter().get(url)
            #expect(String(decoding: body, as: UTF8.self) == v.jwks)
            #expect(maxAge == 120)
        }
    }

    @Test func aKeySourceVerifiesATokenSignedByAServedKey() async throws {
        let v = try Self.vector()
        try await Self.application(jwks: v.jwks).test(.live) { client in
            let port = try #require(client.port)
            let url = try #require(URL(string: "http://127.0.0.1:\(port)/jwks.json"))
            let source = URLKeySource(url: url)
            #expect(source.current(now: v.now) == nil, "nothing is fetched until refresh() or run()")
            #expect(try await source.refresh() == 120)
            #expect(source.current(now: v.now)?[v.kid] != nil, "the served key is in the fetched set")
            let verifier = Verifier(
                configuration: try VerifierConfiguration(issuer: v.issuer, audiences: [v.audience], cacheCapacity: 0),
                keys: source
            )
            let verified = try verifier.verify(v.token, requirements: Requirements(), at: v.now)
            #expect(verified.issuer == v.issuer)
            #expect(verified.kid == v.kid)
        }
    }

    @Test func aFailedFetchIsAnErrorAndInstallsNothing() async throws {
        let v = try Self.vector()
        try await Self.application(jwks: v.jwks).test(.live) { client in
            let port = try #require(client.port)
            let url = try #require(URL(string: "http://127.0.0.1:\(port)/missing"))
            let source = URLKeySource(url: url)
            await #expect(throws: FetchError.self) { try await source.refresh() }
            #expect(source.current(now: v.now) == nil)
        }
    }
}
