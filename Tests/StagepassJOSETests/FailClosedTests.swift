import Testing

@testable import StagepassJOSE

/// Crypto helpers fail closed: they throw instead of returning an empty result, and no comparison of secrets
/// succeeds on empty input.
@Suite("Fail closed")
struct FailClosedTests {
    @Test func emptySecretsNeverCompareEqual() {
        #expect(!Crypto.constantTimeEqual([], []))
        #expect(!Crypto.constantTimeEqual([], [0]))
        #expect(!Crypto.constantTimeEqual([0], []))
        #expect(!Crypto.constantTimeEqual([1, 2], [1, 2, 3]))
        #expect(!Crypto.constantTimeEqual([1, 2], [1, 3]))
        #expect(Crypto.constantTimeEqual([1, 2], [1, 2]))
    }

    @Test func hmacWithAnEmptyKeyThrows() {
        // An unset secret must not yield a MAC anyone can compute (HMAC with an empty key is public).
        #expect(throws: JOSEError.invalidKey("")) { try Crypto.hmac(.sha256, key: [], data: [1, 2, 3]) }
    }

    @Test func hmacAndHashNeverReturnEmpty() throws {
        for d in [Crypto.Digest.sha1, .sha256, .sha384, .sha512] {
            let expected = [Crypto.Digest.sha1: 20, .sha256: 32, .sha384: 48, .sha512: 64][d]
            #expect(try Crypto.hash(d, []).count == expected)
            #expect(try Crypto.hmac(d, key: [7], data: []).count == expected)
        }
        // FIPS 180-4 / NIST example: SHA-256("abc").
        #expect(try Crypto.sha256(Array("abc".utf8)).prefix(4) == [0xBA, 0x78, 0x16, 0xBF])
    }

    /// The funnel every libcrypto status goes through throws (and clears the error queue) on failure.
    @Test func checkThrowsOnFailure() {
        #expect(throws: JOSEError.cryptoFailure("")) { try check(false, "test") }
        #expect(throws: Never.self) { try check(true, "test") }
    }

    /// RFC 7638 §3.2 needs every required member: a JWK without `y` has no thumbprint (it is not hashed with "").
    @Test func thumbprintNeedsEveryRequiredMember() {
        #expect(throws: JOSEError.self) {
            try JWK(jsonString: #"{"kty":"EC","crv":"P-256","x":"0ODLOlP4YfFNwmFT-Os7ayjhP0opwzUm7ya55sLLUNI"}"#)
                .thumbprint()
        }
    }
}
