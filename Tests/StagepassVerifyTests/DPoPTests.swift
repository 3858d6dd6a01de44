import Foundation
import StagepassJOSE
import Testing

@testable import StagepassVerify

/// Sender-constrained tokens (RFC 9449): every proof check, every refusal, the replay cache, the bearer rule.
@Suite("DPoP")
struct DPoPTests {
    let now: Int64 = 1_900_000_000
    let url = "https://deploy.example/api/deploy"
    let issuerKey: PrivateKey
    let issuerJWK: JWK
    let proofKey: PrivateKey
    let jkt: String

    init() throws {
        issuerKey = try PrivateKey.generate(for: .ES256)
        issuerJWK = try JWK(publicKey: issuerKey.publicKey(), alg: .ES256)
        proofKey = try PrivateKey.generate(for: .ES256)
        jkt = try JWK(publicKey: proofKey.publicKey(), alg: nil).thumbprint()
    }

    func token(jkt: String?, extra: [String: JSONValue] = [:]) throws -> String {
        var claims: [String: JSONValue] = [
            "iss": .string("https://sp"), "aud": .string("deploy-api"), "sub": .string("alice"),
            "jti": .string(UUID().uuidString), "iat": .int(now), "exp": .int(now + 300),
            "stage": .string("production"),
        ]
        if let jkt { claims["cnf"] = .object(["jkt": .string(jkt)]) }
        for (k, v) in extra { claims[k] = v }
        return try JWS.sign(
            claims: .object(claims),
            header: ["typ": .string("at+jwt"), "kid": .string(issuerJWK.kid ?? "")],
            key: issuerKey,
            alg: .ES256
        )
    }

    func verifier(capacity: Int = 65536) throws -> Verifier {
        Verifier(
            configuration: try .init(issuer: "https://sp", audiences: ["deploy-api"], dpopReplayCapacity: capacity),
            keys: StaticKeySource(KeySet(jwks: JWKS(keys: [issuerJWK])))
        )
    }

    func proof(
        _ token: String?,
        key: PrivateKey? = nil,
        method: String = "POST",
        url: String? = nil,
        iat: Int64? = nil,
        jti: String? = nil
    ) throws -> String {
        try DPoPProof.make(
            key: key ?? proofKey,
            method: method,
            url: url ?? self.url,
            accessToken: token,
            issuedAt: iat ?? now,
            jti: jti
        )
    }

    /// A proof with hand-made header and claims, signed by `key` with `alg`.
    func rawProof(
        header: [String: JSONValue],
        claims: [String: JSONValue],
        key: PrivateKey? = nil,
        alg: JWSAlgorithm = .ES256
    ) throws -> String {
        try JWS.sign(claims: .object(claims), header: header, key: key ?? proofKey, alg: alg)
    }

    var publicJWK: JSONValue {
        get throws {
            var o = try JWK(publicKey: proofKey.publicKey(), alg: nil, use: nil).json.objectValue ?? [:]
            o["kid"] = nil
            return .object(o)
        }
    }

    func claims(for token: String, _ changes: [String: JSONValue?] = [:]) throws -> [String: JSONValue] {
        var c: [String: JSONValue] = [
            "jti": .string(UUID().uuidString), "htm": .string("POST"), "htu": .string(url), "iat": .int(now),
            "ath": .string(Base64URL.encode(try Crypto.sha256(token.utf8))),
        ]
        for (k, v) in changes { c[k] = v }
        return c
    }

    func expect(
        _ code: VerificationErrorCode,
        _ v: Verifier,
        _ t: String,
        _ dpop: DPoPPresentation?,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(throws: VerificationError(code, ""), sourceLocation: sourceLocation) {
            try v.verify(t, dpop: dpop, at: now)
        }
    }

    // MARK: - accepted

    @Test func boundTokenWithValidProofIsAccepted() throws {
        let v = try verifier()
        let t = try token(jkt: jkt)
        let verified = try v.verify(t, dpop: .init(proof: try proof(t), method: "POST", url: url), at: now)
        #expect(verified.confirmationThumbprint == jkt)
        #expect(verified.subject == "alice")
    }

    @Test func eddsaProofKeyIsAccepted() throws {
        let ed = try PrivateKey.generate(for: .EdDSA)
        let edJKT = try JWK(publicKey: ed.publicKey(), alg: nil).thumbprint()
        let t = try token(jkt: edJKT)
        _ = try verifier().verify(t, dpop: .init(proof: try proof(t, key: ed), method: "POST", url: url), at: now)
    }

    @Test func htuIgnoresQueryFragmentDefaultPortAndCase() throws {
        let v = try verifier()
        let t = try token(jkt: jkt)
        let p = try proof(t, url: "HTTPS://Deploy.Example:443/api/deploy")
        _ = try v.verify(t, dpop: .init(proof: p, method: "POST", url: url + "?run=7#x"), at: now)
    }

    @Test func highSProofSignatureIsAccepted() throws {
        // A client library may emit either s; the proof is identified by its jti, not its signature bytes.
        let t = try token(jkt: jkt)
        let p = try proof(t)
        let parts = p.split(separator: ".").map(String.init)
        let sig = try Base64URL.decode(parts[2])
        let high = try #require(highS(sig))
        let twin = parts[0] + "." + parts[1] + "." + Base64URL.encode(high)
        _ = try verifier().verify(t, dpop: .init(proof: twin, method: "POST", url: url), at: now)
    }

    @Test func proofsWithinTheIatWindowAreAccepted() throws {
        let v = try verifier()
        let t = try token(jkt: jkt)
        // max age 60 s + leeway 30 s in the past; leeway 30 s in the future.
        for iat in [now - 90, now + 30] {
            _ = try v.verify(t, dpop: .init(proof: try proof(t, iat: iat), method: "POST", url: url), at: now)
        }
    }

    @Test func unboundTokenAsBearerIsAccepted() throws {
        let t = try token(jkt: nil)
        #expect(try verifier().verify(t, at: now).confirmationThumbprint == nil)
    }

    // MARK: - refused

    @Test func boundTokenAsBearerIsRefused() throws {
        let v = try verifier()
        let t = try token(jkt: jkt)
        #expect(throws: VerificationError(.dpopRequired, "")) { try v.verify(t, at: now) }
        expect(.dpopRequired, v, t, nil)
    }

    @Test func proofWithUnboundTokenIsRefused() throws {
        let t = try token(jkt: nil)
        expect(.dpopKeyMismatch, try verifier(), t, .init(proof: try proof(t), method: "POST", url: url))
    }

    @Test func proofByAnotherKeyIsRefused() throws {
        let other = try PrivateKey.generate(for: .ES256)
        let t = try token(jkt: jkt)
        expect(.dpopKeyMismatch, try verifier(), t, .init(proof: try proof(t, key: other), method: "POST", url: url))
    }

    @Test func replayedProofIsRefused() throws {
        let v = try verifier()
        let t = try token(jkt: jkt)
        let p = DPoPPresentation(proof: try proof(t), method: "POST", url: url)
        _ = try v.verify(t, dpop: p, at: now)
        expect(.dpopReplayed, v, t, p)
        // The same jti in a new proof is the same proof for the replay rule.
        let again = try proof(t, jti: try jti(of: p.proof))
        expect(.dpopReplayed, v, t, .init(proof: again, method: "POST", url: url))
    }

    @Test func refusedProofIsNotRecorded() throws {
        let v = try verifier()
        let t = try token(jkt: jkt)
        let p = try proof(t)
        expect(.badDPoPProof, v, t, .init(proof: p, method: "GET", url: url))
        _ = try v.verify(t, dpop: .init(proof: p, method: "POST", url: url), at: now)
    }

    @Test func fullReplayCacheFailsClosed() throws {
        let v = try verifier(capacity: 2)
        let t = try token(jkt: jkt)
        for _ in 0..<2 { _ = try v.verify(t, dpop: .init(proof: try proof(t), method: "POST", url: url), at: now) }
        expect(.dpopReplayCacheFull, v, t, .init(proof: try proof(t), method: "POST", url: url))
        // Once the recorded proofs are too old to be replayed anyway, their room is reused.
        let later = now + 200
        let fresh = try proof(t, iat: later)
        _ = try v.verify(t, dpop: .init(proof: fresh, method: "POST", url: url), at: later)
    }

    @Test func replayCacheForgetsOnlyExpiredEntries() throws {
        let cache = DPoPReplayCache(capacity: 2)
        try cache.record("a", expiresAt: 100, now: 0)
        try cache.record("b", expiresAt: 50, now: 0)
        #expect(throws: VerificationError(.dpopReplayCacheFull, "")) { try cache.record("c", expiresAt: 100, now: 10) }
        // At 60, "b" has expired (even though "a" sits before it in the queue): swept, room for "c".
        try cache.record("c", expiresAt: 120, now: 60)
        #expect(throws: VerificationError(.dpopReplayed, "")) { try cache.record("a", expiresAt: 100, now: 60) }
        #expect(cache.count == 2)
    }

    @Test(arguments: [
        ("wrong method", "GET", "https://deploy.example/api/deploy"),
        ("method case", "post", "https://deploy.example/api/deploy"),
        ("other path", "POST", "https://deploy.example/api/other"),
        ("other host", "POST", "https://evil.example/api/deploy"),
        ("other scheme", "POST", "http://deploy.example/api/deploy"),
        ("other port", "POST", "https://deploy.example:8443/api/deploy"),
        ("not absolute", "POST", "/api/deploy"),
    ])
    func proofForAnotherRequestIsRefused(_ c: (String, String, String)) throws {
        let t = try token(jkt: jkt)
        expect(.badDPoPProof, try verifier(), t, .init(proof: try proof(t), method: c.1, url: c.2))
    }

    @Test func proofTooOldOrFromTheFutureIsRefused() throws {
        let v = try verifier()
        let t = try token(jkt: jkt)
        for iat in [now - 91, now + 31] {
            expect(.badDPoPProof, v, t, .init(proof: try proof(t, iat: iat), method: "POST", url: url))
        }
    }

    @Test func proofForAnotherTokenIsRefused() throws {
        let t = try token(jkt: jkt)
        let other = try token(jkt: jkt)
        expect(.badDPoPProof, try verifier(), t, .init(proof: try proof(other), method: "POST", url: url))
    }

    @Test func proofWithoutAthIsRefused() throws {
        let t = try token(jkt: jkt)
        expect(.badDPoPProof, try verifier(), t, .init(proof: try proof(nil), method: "POST", url: url))
    }

    /// Each malformed header or claim set is `bad_dpop_proof` (RFC 9449 §4.3 steps 2-11).
    @Test func malformedProofsAreRefused() throws {
        let v = try verifier()
        let t = try token(jkt: jkt)
        let jwk = try publicJWK
        let good: [String: JSONValue] = ["typ": .string("dpop+jwt"), "jwk": jwk]
        var privateJWK = jwk.objectValue ?? [:]
        privateJWK["d"] = .string("AAAA")
        var cases: [(String, String)] = [
            ("typ missing", try rawProof(header: ["jwk": jwk], claims: try claims(for: t))),
            ("typ JWT", try rawProof(header: ["typ": .string("JWT"), "jwk": jwk], claims: try claims(for: t))),
            ("no jwk", try rawProof(header: ["typ": .string("dpop+jwt")], claims: try claims(for: t))),
            (
                "private jwk",
                try rawProof(
                    header: ["typ": .string("dpop+jwt"), "jwk": .object(privateJWK)],
                    claims: try claims(for: t)
                )
            ),
            (
                "jwk not an object",
                try rawProof(header: ["typ": .string("dpop+jwt"), "jwk": .string("x")], claims: [:])
            ),
            (
                "crit",
                try rawProof(
                    header: ["typ": .string("dpop+jwt"), "jwk": jwk, "crit": .array([.string("x")])],
                    claims: try claims(for: t)
                )
            ),
            ("no jti", try rawProof(header: good, claims: try claims(for: t, ["jti": nil]))),
            ("empty jti", try rawProof(header: good, claims: try claims(for: t, ["jti": .string("")]))),
            (
                "long jti",
                try rawProof(
                    header: good,
                    claims: try claims(for: t, ["jti": .string(String(repeating: "j", count: 129))])
                )
            ),
            ("no htm", try rawProof(header: good, claims: try claims(for: t, ["htm": nil]))),
            ("no htu", try rawProof(header: good, claims: try claims(for: t, ["htu": nil]))),
            ("no iat", try rawProof(header: good, claims: try claims(for: t, ["iat": nil]))),
            ("iat string", try rawProof(header: good, claims: try claims(for: t, ["iat": .string("\(now)")]))),
            ("ath wrong", try rawProof(header: good, claims: try claims(for: t, ["ath": .string("AAAA")]))),
            ("not three segments", "a.b"),
            ("empty signature", String(try proof(t).split(separator: ".").prefix(2).joined(separator: ".")) + "."),
            ("garbage", "!!!.###.$$$"),
        ]
        // alg none / RS256 / HS256 in the header over a valid ES256 signature, and an alg that does not fit the jwk.
        for alg in ["none", "RS256", "HS256", "EdDSA"] {
            let p = try proof(t).split(separator: ".").map(String.init)
            var header = try JSONValue.parse(Base64URL.decode(p[0])).objectValue ?? [:]
            header["alg"] = .string(alg)
            let h = Base64URL.encode(Array(JSONValue.object(header).serialized().utf8))
            cases.append(("alg \(alg)", h + "." + p[1] + "." + p[2]))
        }
        // A flipped bit in the signature.
        let p = try proof(t)
        var sig = try Base64URL.decode(String(p.split(separator: ".")[2]))
        sig[10] ^= 1
        cases.append(
            ("bad signature", p.split(separator: ".").prefix(2).joined(separator: ".") + "." + Base64URL.encode(sig))
        )
        // Oversized.
        cases.append(("too large", String(repeating: "a", count: DPoPProofChecker.maxProofBytes + 1)))
        for (name, bad) in cases {
            #expect(throws: VerificationError(.badDPoPProof, ""), "\(name)") {
                try v.verify(t, dpop: .init(proof: bad, method: "POST", url: url), at: now)
            }
        }
    }

    /// The verifier keeps imported proof keys; a cached key decides exactly as a fresh import would.
    @Test func cachedProofKeysDecideAlike() throws {
        let v = try verifier()
        let t = try token(jkt: jkt)
        for _ in 0..<3 { _ = try v.verify(t, dpop: .init(proof: try proof(t), method: "POST", url: url), at: now) }
        var members = try publicJWK.objectValue ?? [:]
        members["kid"] = .int(5)
        let odd = try rawProof(
            header: ["typ": .string("dpop+jwt"), "jwk": .object(members)],
            claims: try claims(for: t)
        )
        expect(.badDPoPProof, v, t, .init(proof: odd, method: "POST", url: url))
        let other = try PrivateKey.generate(for: .ES256)
        expect(.dpopKeyMismatch, v, t, .init(proof: try proof(t, key: other), method: "POST", url: url))
    }

    @Test func tokenWithUnusableCnfIsRefused() throws {
        let v = try verifier()
        for cnf: JSONValue in [.object(["x5t#S256": .string("abc")]), .string("jkt"), .object(["jkt": .int(1)])] {
            let t = try token(jkt: nil, extra: ["cnf": cnf])
            #expect(throws: VerificationError(.missingClaim, "")) { try v.verify(t, at: now) }
        }
    }

    @Test func proofIsCheckedOnEveryCallOfACachedToken() throws {
        let v = try verifier()
        let t = try token(jkt: jkt)
        _ = try v.verify(t, dpop: .init(proof: try proof(t), method: "POST", url: url), at: now)
        // The token now comes from the cache; the bearer rule and the proof rules still apply.
        expect(.dpopRequired, v, t, nil)
        expect(.badDPoPProof, v, t, .init(proof: try proof(t), method: "GET", url: url))
    }

    @Test func errorsAreNotRaisedBeforeTokenChecks() throws {
        // A token failing an earlier check reports that check, whatever the proof.
        let v = try verifier()
        let t = try token(jkt: jkt, extra: ["exp": .int(now - 100), "iat": .int(now - 400)])
        expect(.expired, v, t, nil)
    }

    @Test func normalisedTargetURIs() {
        let n = DPoPProofChecker.normalizedTargetURI
        #expect(n("https://A.example:443/p?q#f") == "https://a.example/p")
        #expect(n("http://a.example:80") == "http://a.example/")
        #expect(n("https://a.example/%7e") == "https://a.example/%7E")
        #expect(n("https://a.example:8443/p") == "https://a.example:8443/p")
        #expect(n("https://user@a.example/p") == nil)
        #expect(n("ftp://a.example/p") == nil)
        #expect(n("a.example/p") == nil)
    }

    @Test func configurationBoundsTheProofAge() {
        #expect(throws: VerifierConfigurationError.invalidDPoPProofMaxAge) {
            try VerifierConfiguration(issuer: "i", audiences: ["a"], dpopProofMaxAge: 0)
        }
        #expect(throws: VerifierConfigurationError.invalidDPoPProofMaxAge) {
            try VerifierConfiguration(issuer: "i", audiences: ["a"], dpopProofMaxAge: 301)
        }
    }

    func jti(of proof: String) throws -> String {
        let claims = try JSONValue.parse(Base64URL.decode(String(proof.split(separator: ".")[1])))
        return try #require(claims["jti"]?.stringValue)
    }

    /// The high-S twin (r, n - s) of a raw P-256 signature, or nil when it is already high.
    func highS(_ sig: [UInt8]) -> [UInt8]? {
        let n: [UInt8] = [
            0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
        ]
        guard ecdsaSignatureIsLowS(sig) else { return nil }
        var out = Array(sig[0..<32])
        var borrow = 0
        var s = [UInt8](repeating: 0, count: 32)
        for i in stride(from: 31, through: 0, by: -1) {
            var d = Int(n[i]) - Int(sig[32 + i]) - borrow
            borrow = d < 0 ? 1 : 0
            if d < 0 { d += 256 }
            s[i] = UInt8(d)
        }
        out += s
        return out
    }
}
