import Foundation
import StagepassJOSE
import StagepassVerify
import StagepassVerifyFetch
import Synchronization
import Testing

/// An in-memory web: URL → body (nil: unreachable), counting requests.
final class FakeWeb: HTTPGetting {
    let pages = Mutex<[String: [UInt8]]>([:])
    let hits = Mutex<[String: Int]>([:])

    func set(_ url: String, _ body: String?) { pages.withLock { $0[url] = body.map { Array($0.utf8) } } }
    func count(_ url: String) -> Int { hits.withLock { $0[url] ?? 0 } }

    func get(_ url: URL) async throws -> (body: [UInt8], maxAge: Int64?) {
        hits.withLock { $0[url.absoluteString, default: 0] += 1 }
        guard let body = pages.withLock({ $0[url.absoluteString] }) else {
            throw FetchError(message: "connection refused: \(url)")
        }
        return (body, 120)
    }
}

@Suite("Fetch: CI issuer keys through discovery")
struct DiscoveryKeySourceTests {
    static let issuer = "https://ci.example"
    static let discovery = "https://ci.example/.well-known/openid-configuration"
    static let jwksURL = "https://keys.ci.example/jwks"

    static func jwks(_ keys: [PrivateKey], alg: JWSAlgorithm? = .ES256) throws -> (String, [String]) {
        let jwks = JWKS(keys: try keys.map { try JWK(publicKey: try $0.publicKey(), alg: alg) })
        return (jwks.serialized(), jwks.keys.compactMap(\.kid))
    }

    func web(_ jwks: String, issuer: String = issuer) -> FakeWeb {
        let w = FakeWeb()
        w.set(Self.discovery, #"{"issuer":"\#(issuer)","jwks_uri":"\#(Self.jwksURL)"}"#)
        w.set(Self.jwksURL, jwks)
        return w
    }

    @Test func discoversTheJWKSAndSchedulesByMaxAge() async throws {
        let (doc, kids) = try Self.jwks([try PrivateKey.generate(for: .RS256, rsaBits: 2048)], alg: nil)
        let w = web(doc)
        let s = DiscoveryKeySource(issuer: Self.issuer, getter: w)
        #expect(s.current(now: 0) == nil)
        // RSA keys without alg take the issuer's algorithm (RS256 by default).
        #expect(await s.ready(now: 1000)?[kids[0]]?.alg == .RS256)
        #expect(w.count(Self.jwksURL) == 1)
        await s.refreshIfDue(now: 1100)
        #expect(w.count(Self.jwksURL) == 1)
        await s.refreshIfDue(now: 1120)
        #expect(w.count(Self.jwksURL) == 2)
        #expect(w.count(Self.discovery) == 1)
    }

    @Test func aDiscoveryDocumentForAnotherIssuerIsRefused() async throws {
        let (doc, _) = try Self.jwks([try PrivateKey.generate(for: .ES256)])
        let s = DiscoveryKeySource(issuer: Self.issuer, getter: web(doc, issuer: "https://evil.example"))
        #expect(await s.ready(now: 0) == nil)
        #expect(s.lastError?.contains("names another issuer") == true)
    }

    @Test func anUnreachableIssuerLeavesNoKeys() async throws {
        let s = DiscoveryKeySource(issuer: Self.issuer, getter: FakeWeb())
        #expect(await s.ready(now: 0) == nil)
        #expect(s.lastError?.contains("connection refused") == true)
    }

    @Test func unknownKidRefetchesAtMostOncePer30Seconds() async throws {
        let a = try PrivateKey.generate(for: .ES256)
        let (doc, _) = try Self.jwks([a])
        let w = web(doc)
        let s = DiscoveryKeySource(issuer: Self.issuer, getter: w)
        _ = await s.ready(now: 0)
        let b = try PrivateKey.generate(for: .ES256)
        let (rotated, kids) = try Self.jwks([a, b])
        w.set(Self.jwksURL, rotated)
        #expect(await s.refetchForUnknownKid(now: 10))
        #expect(s.current(now: 10)?[kids[1]] != nil)
        #expect(await s.refetchForUnknownKid(now: 39) == false)
        #expect(w.count(Self.jwksURL) == 2)
        #expect(await s.refetchForUnknownKid(now: 40))
        #expect(w.count(Self.jwksURL) == 3)
    }

    @Test func aBadJWKSKeepsTheLastGoodSet() async throws {
        let (doc, kids) = try Self.jwks([try PrivateKey.generate(for: .ES256)])
        let w = web(doc)
        let s = DiscoveryKeySource(issuer: Self.issuer, getter: w)
        _ = await s.ready(now: 0)
        w.set(Self.jwksURL, "not json")
        #expect(await s.refetchForUnknownKid(now: 100) == false)
        #expect(s.current(now: 100)?[kids[0]] != nil)
    }
}
