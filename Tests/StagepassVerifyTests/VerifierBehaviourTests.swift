import Foundation
import StagepassJOSE
import Testing

@testable import StagepassVerify

/// Behaviour beyond single-token verdicts: cache, key withdrawal, concurrency, status lists, file sources.
@Suite("Verifier behaviour")
struct VerifierBehaviourTests {
    let now: Int64 = 1_900_000_000
    let key: PrivateKey
    let jwk: JWK

    init() throws {
        key = try PrivateKey.generate(for: .ES256)
        jwk = try JWK(publicKey: key.publicKey(), alg: .ES256)
    }

    func token(_ extra: [String: JSONValue] = [:], exp: Int64 = 300) throws -> String {
        var claims: [String: JSONValue] = [
            "iss": .string("https://sp"), "aud": .string("deploy-api"), "sub": .string("alice"),
            "jti": .string(UUID().uuidString),
            "iat": .int(now), "exp": .int(now + exp), "role": .string("deployer"), "stage": .string("production"),
            "client_id": .string("acme/web"),
        ]
        for (k, v) in extra { claims[k] = v }
        return try JWS.sign(
            claims: .object(claims),
            header: ["typ": .string("at+jwt"), "kid": .string(jwk.kid ?? "")],
            key: key,
            alg: .ES256
        )
    }

    func verifier(
        _ keys: StaticKeySource,
        lists: (any StatusListSource)? = nil,
        maxAge: Int64? = nil
    ) throws -> Verifier {
        Verifier(
            configuration: try .init(issuer: "https://sp", audiences: ["deploy-api"], statusMaxAge: maxAge),
            keys: keys,
            statusLists: lists
        )
    }

    @Test func cachedTokenStillExpiresAndChecksRequirements() throws {
        let v = try verifier(StaticKeySource(KeySet(jwks: JWKS(keys: [jwk]))))
        let t = try token()
        _ = try v.verify(t, at: now)
        _ = try v.verify(
            t,
            requirements: .init(roles: ["deployer"], stage: "production", pipeline: "acme/*"),
            at: now + 1
        )
        #expect(throws: VerificationError(.stageMismatch, "")) {
            try v.verify(t, requirements: .init(stage: "build"), at: now + 2)
        }
        #expect(throws: VerificationError(.pipelineMismatch, "")) {
            try v.verify(t, requirements: .init(pipeline: "other/*"), at: now + 2)
        }
        #expect(throws: VerificationError(.expired, "")) { try v.verify(t, at: now + 300 + 30) }
    }

    @Test func withdrawnKeyInvalidatesCachedTokens() throws {
        let keys = StaticKeySource(KeySet(jwks: JWKS(keys: [jwk])))
        let v = try verifier(keys)
        let t = try token()
        _ = try v.verify(t, at: now)
        keys.replace(KeySet(jwks: JWKS(keys: [])))
        #expect(throws: VerificationError(.unknownKey, "")) { try v.verify(t, at: now) }
    }

    /// A cache hit is only for the byte-identical token. `String` equality is canonical equivalence: U+212A KELVIN
    /// SIGN equals "K", so a String-keyed cache served a non-ASCII (malformed) twin of a verified token.
    @Test func cacheHitsOnlyTheByteIdenticalToken() throws {
        let v = try verifier(StaticKeySource(KeySet(jwks: JWKS(keys: [jwk]))))
        var t = try token()
        while !t.contains("K") { t = try token() }
        _ = try v.verify(t, at: now)
        let k = try #require(t.firstIndex(of: "K"))
        var twin = t
        twin.replaceSubrange(k...k, with: "\u{212A}")
        #expect(twin == t && Array(twin.utf8) != Array(t.utf8))
        #expect(throws: VerificationError(.malformed, "")) { try v.verify(twin, at: now) }
        _ = try v.verify(t, at: now)
    }

    /// Claims or headers outside the plain-JSON subset (non-ASCII, escapes, reals) are read by jansson instead of the
    /// scanner; the verdict and the claims are the same. A header over 1 KiB is decoded into a heap buffer.
    @Test func tokensOutsideThePlainSubsetVerifyAlike() throws {
        let v = try verifier(StaticKeySource(KeySet(jwks: JWKS(keys: [jwk]))), maxAge: nil)
        let t = try token(["name": .string("Zoë\n"), "score": .double(1.5)])
        let r = try v.verify(
            t,
            requirements: .init(roles: ["deployer"], stage: "production", pipeline: "acme/*"),
            at: now
        )
        #expect(r.subject == "alice" && r.claims["name"]?.stringValue == "Zoë\n")
        let claims: JSONValue = .object([
            "iss": .string("https://sp"), "aud": .array([.string("x"), .string("deploy-api")]), "sub": .string("bob"),
            "jti": .string("j1"), "iat": .int(now), "exp": .int(now + 60),
        ])
        for extra in [String(repeating: "a", count: 1500), String(repeating: "a", count: 1500) + "\t"] {
            let big = try JWS.sign(
                claims: claims,
                header: ["typ": .string("at+jwt"), "kid": .string(jwk.kid ?? ""), "x": .string(extra)],
                key: key,
                alg: .ES256
            )
            #expect(try v.verify(big, at: now).audiences == ["x", "deploy-api"])
            var forged = Array(big.utf8)
            forged[forged.count - 5] =
                forged[forged.count - 5] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
            #expect(throws: VerificationError(.badSignature, "")) {
                try v.verify(String(decoding: forged, as: UTF8.self), at: now)
            }
        }
    }

    @Test func concurrentCallersAgree() async throws {
        let v = try verifier(StaticKeySource(KeySet(jwks: JWKS(keys: [jwk]))))
        let good = try token()
        let bad = try token(["iss": .string("https://evil")])
        let now = self.now
        let results = await withTaskGroup(of: (Bool, Bool).self) { group in
            for _ in 0..<200 {
                group.addTask {
                    let ok = (try? v.verify(good, at: now)) != nil
                    let rejected = (try? v.verify(bad, at: now)) == nil
                    return (ok, rejected)
                }
            }
            return await group.reduce(into: [(Bool, Bool)]()) { $0.append($1) }
        }
        #expect(results.count == 200 && results.allSatisfy { $0.0 && $0.1 })
    }

    func statusList(
        bits: [Int],
        size: Int = 64,
        uri: String = "https://sp/statuslists/1",
        exp: Int64? = nil
    ) throws -> String {
        var bytes = [UInt8](repeating: 0, count: size / 8)
        for i in bits { bytes[i / 8] |= UInt8(1 << (i % 8)) }
        var claims: [String: JSONValue] = [
            "sub": .string(uri), "iat": .int(now), "ttl": .int(60),
            "status_list": .object(["bits": .int(1), "lst": .string(Base64URL.encode(try Zlib.compress(bytes)))]),
        ]
        if let exp { claims["exp"] = .int(exp) }
        return try JWS.sign(
            claims: .object(claims),
            header: ["typ": .string("statuslist+jwt"), "kid": .string(jwk.kid ?? "")],
            key: key,
            alg: .ES256
        )
    }

    @Test func revocationTakesEffectWhenTheListChanges() throws {
        let lists = StaticStatusListSource([StatusListDocument(jwt: try statusList(bits: []), fetchedAt: now)])
        let v = try verifier(StaticKeySource(KeySet(jwks: JWKS(keys: [jwk]))), lists: lists, maxAge: 120)
        let status: JSONValue = .object([
            "status_list": .object(["idx": .int(9), "uri": .string("https://sp/statuslists/1")])
        ])
        let t = try token(["status": status])
        _ = try v.verify(t, at: now)
        lists.replace([StatusListDocument(jwt: try statusList(bits: [9]), fetchedAt: now)])
        #expect(throws: VerificationError(.revoked, "")) { try v.verify(t, at: now) }
        // Fail closed once the list is older than max age.
        lists.replace([StatusListDocument(jwt: try statusList(bits: []), fetchedAt: now - 500)])
        #expect(throws: VerificationError(.statusUnavailable, "")) { try v.verify(t, at: now) }
        // A token without a status claim cannot be checked: refused.
        lists.replace([StatusListDocument(jwt: try statusList(bits: []), fetchedAt: now)])
        #expect(throws: VerificationError(.statusUnavailable, "")) { try v.verify(try token(), at: now) }
    }

    /// draft-ietf-oauth-status-list-20 §4.1 worked example: 1-bit list `b9a3` → indices with value 1.
    @Test func draftStatusListExample() throws {
        let doc = try vectorFile("rfc/status_list_draft20.json")
        let json = try JSONSerialization.data(withJSONObject: doc)
        let text = String(decoding: json, as: UTF8.self)
        #expect(text.contains("eNrbuRgAAhcBXQ"))
        let bytes = try Zlib.decompress(try Base64URL.decode("eNrbuRgAAhcBXQ"), limit: 1024)
        #expect(bytes == [0xB9, 0xA3])
        // Bits (LSB first) of b9 a3: 1 0 0 1 1 1 0 1 | 1 1 0 0 0 1 0 1
        let expected: [UInt8] = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]
        for (i, e) in expected.enumerated() { #expect((bytes[i / 8] >> UInt8(i % 8)) & 1 == e) }
    }

    @Test func fileKeySourceNoticesRotation() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sp-ks-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("jwks.json").path
        try JWKS(keys: []).serialized().write(toFile: path, atomically: true, encoding: .utf8)
        let source = try FileKeySource(path: path)
        let v = Verifier(configuration: try .init(issuer: "https://sp", audiences: ["deploy-api"]), keys: source)
        let t = try token()
        #expect(throws: VerificationError(.unknownKey, "")) { try v.verify(t, at: now) }
        try JWKS(keys: [jwk]).serialized().write(toFile: path, atomically: true, encoding: .utf8)
        // An unknown kid forces a re-read at once.
        _ = try v.verify(t, at: now)
    }
}
