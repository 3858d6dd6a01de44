import Foundation
import Testing

@testable import StagepassJOSE

/// Project Wycheproof signature vectors (Specs/vectors/wycheproof, Apache-2.0). Every `valid` case must verify
/// and every `invalid` case must be refused. `acceptable` cases are legacy encodings we are free to refuse; the
/// JWS layer refuses all of them (strict lengths), which is asserted too.
@Suite("Wycheproof")
struct WycheproofTests {
    struct Case {
        let id: String
        let msg: [UInt8]
        let sig: [UInt8]
        let result: String
    }

    func groups(_ file: String) throws -> [([String: Any], [Case])] {
        let doc = try vectorFile("wycheproof/\(file)")
        return try #require(doc["testGroups"] as? [[String: Any]]).map { g in
            let tests = (g["tests"] as? [[String: Any]] ?? []).map {
                Case(
                    id: "\($0["tcId"] ?? "")",
                    msg: hex($0["msg"] as? String ?? ""),
                    sig: hex($0["sig"] as? String ?? ""),
                    result: $0["result"] as? String ?? ""
                )
            }
            return (g, tests)
        }
    }

    func run(_ file: String, minimum: Int, verify: (PublicKey, Case) -> Bool) throws {
        var checked = 0
        for (g, tests) in try groups(file) {
            let pem = try #require(g["publicKeyPem"] as? String)
            let key: PublicKey
            do { key = try PublicKey(spkiPEM: pem) } catch {
                // Keys OpenSSL or our policy refuses (e.g. RSA < 2048) cannot verify anything: that is a refusal.
                continue
            }
            for t in tests {
                let ok = verify(key, t)
                if t.result == "valid" { #expect(ok, "\(file) tc \(t.id) must verify") }
                if t.result == "invalid" { #expect(!ok, "\(file) tc \(t.id) must be refused") }
                checked += 1
            }
        }
        #expect(checked >= minimum)
    }

    /// The generic ECDSA primitive over raw r||s (P1363, the JWS encoding of RFC 7518 §3.4): every Wycheproof
    /// `valid` case verifies, high-S ones included, and every `invalid` one is refused.
    @Test func ecdsaP256P1363Primitive() throws {
        try run("ecdsa_secp256r1_sha256_p1363_test.json", minimum: 200) { k, t in
            k.verifyECDSARaw(signingInput: t.msg, signature: t.sig)
        }
    }

    /// The JWS verifier is the primitive plus the low-S rule (token-profile.md §4.1): a Wycheproof `valid` case
    /// verifies exactly when its s ≤ n/2, and its low-S twin (r, n − s) of a high-S case verifies; every `invalid`
    /// case is refused. This is a deliberate difference from generic ECDSA, not a Wycheproof failure.
    @Test func ecdsaP256P1363JWSLowSOnly() throws {
        var highS = 0
        var lowS = 0
        for (g, tests) in try groups("ecdsa_secp256r1_sha256_p1363_test.json") {
            guard let key = try? PublicKey(spkiPEM: try #require(g["publicKeyPem"] as? String)) else { continue }
            for t in tests {
                let jws = key.verify(.ES256, signingInput: t.msg, signature: t.sig)
                if t.result == "invalid" { #expect(!jws, "tc \(t.id) must be refused") }
                guard t.result == "valid", t.sig.count == 64 else { continue }
                if ecdsaSignatureIsLowS(t.sig) {
                    lowS += 1
                    #expect(jws, "tc \(t.id) (low-S) must verify")
                } else {
                    highS += 1
                    #expect(!jws, "tc \(t.id) (high-S) must be refused by the JWS verifier")
                    #expect(
                        key.verify(.ES256, signingInput: t.msg, signature: ecdsaNormalizedLowS(t.sig)),
                        "tc \(t.id) low-S twin"
                    )
                }
            }
        }
        #expect(highS > 10 && lowS > 10)
    }

    @Test func ecdsaP256DER() throws {
        try run("ecdsa_secp256r1_sha256_test.json", minimum: 300) { k, t in
            k.verifyECDSADER(signingInput: t.msg, der: t.sig)
        }
        // A DER signature handed to the JWS (raw) path is always refused.
        for (g, tests) in try groups("ecdsa_secp256r1_sha256_test.json") {
            let key = try PublicKey(spkiPEM: try #require(g["publicKeyPem"] as? String))
            for t in tests where t.result == "valid" {
                #expect(!key.verify(.ES256, signingInput: t.msg, signature: t.sig))
            }
        }
    }

    @Test func ed25519() throws {
        try run("ed25519_test.json", minimum: 100) { k, t in k.verify(.EdDSA, signingInput: t.msg, signature: t.sig) }
    }

    @Test func rsaPKCS1() throws {
        try run("rsa_signature_2048_sha256_test.json", minimum: 200) { k, t in
            k.verify(.RS256, signingInput: t.msg, signature: t.sig)
        }
    }

    @Test func rsaPSS() throws {
        try run("rsa_pss_2048_sha256_mgf1_32_test.json", minimum: 50) { k, t in
            k.verify(.PS256, signingInput: t.msg, signature: t.sig)
        }
    }
}
