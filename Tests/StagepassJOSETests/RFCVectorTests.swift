import Foundation
import Testing

@testable import StagepassJOSE

@Suite("RFC known-answer vectors")
struct RFCVectorTests {
    /// RFC 7515 Appendix A.3: ES256 signature verifies; A.2: RS256 re-signing reproduces the signature exactly.
    @Test func rfc7515() throws {
        let doc = try vectorFile("rfc/rfc7515_jws_examples.json")
        let vectors = try #require(doc["vectors"] as? [[String: Any]])
        let payload = try #require((doc["common"] as? [String: Any])?["payload_b64u"] as? String)
        for v in vectors {
            let alg = try #require(v["alg"] as? String)
            if alg == "HS256" {
                // HMAC is never an accepted algorithm (RFC 8725 §3.1).
                #expect(throws: JOSEError.unsupportedAlgorithm) { try JWSAlgorithm(name: "HS256") }
                continue
            }
            let header = try #require(v["protected_header_b64u"] as? String)
            let compact = try #require(v["jws_compact"] as? String)
            let parts = compact.split(separator: ".").map(String.init)
            #expect(parts[0] == header && parts[1] == payload)
            let input = Array("\(header).\(payload)".utf8)
            let sig = try Base64URL.decode(parts[2])
            let priv = try #require(v["jwk_private"] as? [String: Any])
            let jwk = try JWK(json: JSONValue.parse(Array(try JSONSerialization.data(withJSONObject: priv))))
            switch alg {
            case "ES256":
                // The A.3 signature happens to be high-S: a valid ECDSA signature (the generic primitive accepts it)
                // that the low-S JWS rule refuses; its low-S twin (r, n − s) is the one spelling we accept.
                #expect(!ecdsaSignatureIsLowS(sig))
                #expect(try jwk.publicKey().verifyECDSARaw(signingInput: input, signature: sig))
                #expect(try !jwk.publicKey().verify(.ES256, signingInput: input, signature: sig))
                #expect(try jwk.publicKey().verify(.ES256, signingInput: input, signature: ecdsaNormalizedLowS(sig)))
                var bad = ecdsaNormalizedLowS(sig)
                bad[5] ^= 1
                #expect(try !jwk.publicKey().verify(.ES256, signingInput: input, signature: bad))
                // A fresh signature from the private key verifies too (ECDSA is randomized).
                let fresh = try jwk.privateKey().sign(.ES256, signingInput: input)
                #expect(fresh.count == 64)
                #expect(try jwk.publicKey().verify(.ES256, signingInput: input, signature: fresh))
            case "RS256":
                #expect(try jwk.privateKey().sign(.RS256, signingInput: input) == sig)
                #expect(try jwk.publicKey().verify(.RS256, signingInput: input, signature: sig))
            default:
                Issue.record("unexpected alg \(alg)")
            }
        }
    }

    /// RFC 8037 Appendix A: Ed25519 signing is deterministic and must reproduce A.4; thumbprint per A.3.
    @Test func rfc8037() throws {
        let doc = try vectorFile("rfc/rfc8037_ed25519.json")
        for v in try #require(doc["vectors"] as? [[String: Any]]) {
            let priv = try #require(v["jwk_private"] as? [String: Any])
            let jwk = try JWK(json: JSONValue.parse(Array(try JSONSerialization.data(withJSONObject: priv))))
            let thumb = try #require((v["thumbprint"] as? [String: Any])?["thumbprint_b64u"] as? String)
            #expect(try jwk.thumbprint() == thumb)
            let header = try #require(v["protected_header_b64u"] as? String)
            let payload = try #require(v["payload_b64u"] as? String)
            let expected = try #require(v["signature_b64u"] as? String)
            let input = Array("\(header).\(payload)".utf8)
            let sig = try jwk.privateKey().sign(.EdDSA, signingInput: input)
            #expect(Base64URL.encode(sig) == expected)
            #expect(try jwk.publicKey().verify(.EdDSA, signingInput: input, signature: sig))
            // The public JWK derived from the key matches x.
            let derived = try JWK(publicKey: jwk.privateKey().publicKey(), alg: .EdDSA)
            #expect(derived.params["x"] == jwk.params["x"])
        }
    }

    /// RFC 7638 §3.1 (RSA) plus the EC and OKP thumbprints.
    @Test func rfc7638() throws {
        let doc = try vectorFile("rfc/rfc7638_jwk_thumbprint.json")
        for v in try #require(doc["vectors"] as? [[String: Any]]) {
            let j = try #require(v["jwk"] as? [String: Any])
            let thumb = try #require(v["thumbprint_b64u"] as? String)
            let jwk = try JWK(json: JSONValue.parse(Array(try JSONSerialization.data(withJSONObject: j))))
            #expect(try jwk.thumbprint() == thumb, "\(v["id"] ?? "")")
        }
    }
}

@Suite("Primitives")
struct PrimitiveTests {
    @Test(
        arguments: [
            ("", []), ("Zg", [0x66]), ("Zm8", [0x66, 0x6F]), ("Zm9v", [0x66, 0x6F, 0x6F]), ("-_8", [0xFB, 0xFF]),
        ] as [(String, [UInt8])]
    )
    func base64urlRoundTrip(text: String, bytes: [UInt8]) throws {
        #expect(try Base64URL.decode(text) == bytes)
        #expect(Base64URL.encode(bytes) == text)
    }

    /// Strictness (RFC 7515 §2): no padding, no standard alphabet, no whitespace, canonical trailing bits.
    @Test(arguments: ["Zg==", "Zm9v=", "+/8", "Zm 9v", "Z", "Zh", "Zm9", "Zm9v\n", "Zm9v%"])
    func base64urlRejects(text: String) {
        #expect(throws: JOSEError.invalidBase64URL) { try Base64URL.decode(text) }
    }

    @Test func strictJSON() throws {
        for bad in [
            #"{"a":1,"a":2}"#, #"{"a":1e999}"#, "[1]", #""s""#, #"{"a":1} x"#, "{\"a\":\"\u{0}\"}",
            String(repeating: "{\"a\":", count: 20) + "1" + String(repeating: "}", count: 20),
        ] {
            #expect(throws: JOSEError.invalidJSON, "\(bad)") {
                _ = try withBytes(Array(bad.utf8)) { b throws(JOSEError) in try StrictJSON(b, maxDepth: 16) }
            }
        }
        let invalidUTF8: [UInt8] = Array(#"{"a":""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8)
        #expect(throws: JOSEError.invalidJSON) {
            _ = try withBytes(invalidUTF8) { b throws(JOSEError) in try StrictJSON(b, maxDepth: 16) }
        }
        let ok = try withBytes(Array(#"{"a":"x","n":5}"#.utf8)) { b throws(JOSEError) in try StrictJSON(b, maxDepth: 16)
        }
        #expect(ok.root["a"]?.string == "x" && ok.root["n"]?.integer == 5)
    }

    @Test(arguments: JWSAlgorithm.allCases)
    func pemRoundTripAndPassphrase(alg: JWSAlgorithm) throws {
        let key = try PrivateKey.generate(for: alg, rsaBits: 2048)
        let pem = try key.pkcs8PEM(passphrase: "correct horse")
        #expect(pem.contains("BEGIN ENCRYPTED PRIVATE KEY"))
        let back = try PrivateKey(pem: pem, passphrase: "correct horse")
        let input = Array("hello".utf8)
        let sig = try back.sign(alg, signingInput: input)
        #expect(try key.publicKey().verify(alg, signingInput: input, signature: sig))
        #expect(throws: JOSEError.wrongPassphrase) { try PrivateKey(pem: pem, passphrase: "wrong") }
        #expect(throws: JOSEError.wrongPassphrase) { try PrivateKey(pem: pem, passphrase: nil) }
        #expect(throws: JOSEError.invalidPEM) {
            try PrivateKey(pem: String(pem.prefix(80)), passphrase: "correct horse")
        }
        let spki = try key.publicKey().spkiPEM()
        #expect(try PublicKey(spkiPEM: spki).verify(alg, signingInput: input, signature: sig))
        // The JWK round trip keeps the thumbprint and the key.
        let jwk = try JWK(publicKey: key.publicKey(), alg: alg)
        let reparsed = try JWK(jsonString: jwk.json.serialized())
        #expect(try reparsed.thumbprint() == jwk.kid)
        #expect(try reparsed.publicKey().verify(alg, signingInput: input, signature: sig))
    }

    @Test func weakRSARefused() throws {
        #expect(throws: JOSEError.weakKey) { try PrivateKey.generate(for: .RS256, rsaBits: 1024) }
        // A 1024-bit key made by OpenSSL is refused on import too.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sp-weak-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("k.pem").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", path]
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        #expect(throws: JOSEError.weakKey) { try PrivateKey(pem: String(contentsOfFile: path, encoding: .utf8)) }
    }

    @Test func offCurvePointRefused() throws {
        let jwk = try JWK(
            jsonString:
                #"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a1"}"#
        )
        #expect(throws: JOSEError.invalidKey) { try jwk.publicKey() }
    }

    @Test func aesGCM() throws {
        let key = try Crypto.randomBytes(32)
        let box = try AESGCM.seal(Array("seed".utf8), key: key, aad: [1])
        #expect(try AESGCM.open(box, key: key, aad: [1]) == Array("seed".utf8))
        var tampered = box
        tampered[13] ^= 1
        #expect(throws: JOSEError.invalidSignature) { try AESGCM.open(tampered, key: key, aad: [1]) }
        #expect(throws: JOSEError.invalidSignature) { try AESGCM.open(box, key: key, aad: [2]) }
    }

    /// RFC 4226 Appendix D: HMAC-SHA-1 values through the OpenSSL wrapper.
    @Test func hmacSHA1() throws {
        let doc = try vectorFile("rfc/rfc4226_hotp.json")
        let vectors = try #require(doc["vectors"] as? [[String: Any]])
        let secret = Array("12345678901234567890".utf8)
        for v in vectors {
            let counter = try #require(v["counter"] as? Int)
            let h = try #require(v["hmac_sha1_hex"] as? String)
            var c = UInt64(counter).bigEndian
            let msg = withUnsafeBytes(of: &c) { Array($0) }
            #expect(try Crypto.hmac(.sha1, key: secret, data: msg) == hex(h))
        }
        #expect(
            Crypto.constantTimeEqual([1, 2], [1, 2]) && !Crypto.constantTimeEqual([1, 2], [1, 3])
                && !Crypto.constantTimeEqual([1], [1, 2])
        )
    }
}
