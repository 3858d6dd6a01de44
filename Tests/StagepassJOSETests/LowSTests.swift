import Testing

@testable import StagepassJOSE

/// ES256 has one spelling per signature: the signer emits s ≤ n/2 and the JWS verifier refuses s > n/2
/// (Specs/token-profile.md §4.1; the (r, n − s) twin of a valid ECDSA signature is itself valid ECDSA).
@Suite("ES256 low-S")
struct LowSTests {
    let key: PrivateKey
    init() throws { key = try PrivateKey.generate(for: .ES256) }

    @Test func signerAlwaysEmitsLowS() throws {
        // Randomized ECDSA gives a high s about half the time: 64 signatures all low means normalisation happened
        // (an unnormalised signer passes with probability 2^-64).
        for i in 0..<64 {
            let sig = try key.sign(.ES256, signingInput: Array("message \(i)".utf8))
            #expect(sig.count == 64)
            #expect(ecdsaSignatureIsLowS(sig))
            #expect(try key.publicKey().verify(.ES256, signingInput: Array("message \(i)".utf8), signature: sig))
        }
    }

    @Test func highSTwinIsRefusedButValidECDSA() throws {
        let input = Array("header.payload".utf8)
        let sig = try key.sign(.ES256, signingInput: input)
        let twin = highTwin(sig)
        #expect(!ecdsaSignatureIsLowS(twin))
        let pub = try key.publicKey()
        #expect(pub.verifyECDSARaw(signingInput: input, signature: twin))  // generic ECDSA accepts both
        #expect(!pub.verify(.ES256, signingInput: input, signature: twin))  // the JWS rule accepts one
        #expect(ecdsaNormalizedLowS(twin) == sig)
    }

    @Test func boundaryIsHalfTheOrder() {
        // s = ⌊n/2⌋ is low, s = ⌊n/2⌋ + 1 is high.
        var atHalf = [UInt8](repeating: 1, count: 32) + p256HalfOrder
        #expect(ecdsaSignatureIsLowS(atHalf))
        atHalf[63] &+= 1
        #expect(!ecdsaSignatureIsLowS(atHalf))
    }

    @Test func jwsSignEmitsLowS() throws {
        for _ in 0..<16 {
            let jws = try JWS.sign(
                claims: .object(["a": .int(1)]),
                header: ["typ": .string("at+jwt")],
                key: key,
                alg: .ES256
            )
            let sig = try Base64URL.decode(String(jws.split(separator: ".")[2]))
            #expect(ecdsaSignatureIsLowS(sig))
        }
    }

    /// (r, n − s): the other spelling of a signature.
    private func highTwin(_ sig: [UInt8]) -> [UInt8] {
        var out = sig
        var borrow = 0
        for i in stride(from: 31, through: 0, by: -1) {
            var d = Int(p256Order[i]) - Int(sig[32 + i]) - borrow
            borrow = d < 0 ? 1 : 0
            if d < 0 { d += 256 }
            out[32 + i] = UInt8(d)
        }
        return out
    }
}
