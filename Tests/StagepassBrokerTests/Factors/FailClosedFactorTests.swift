import StagepassJOSE
import Testing

@testable import StagepassBroker

/// Factor checks fail closed when a crypto helper cannot produce a value: an empty MAC or hash never matches.
@Suite struct FailClosedFactorTests {
    /// HOTP over an empty secret used to be "" (HMAC returned [] on failure, then truncation gave up with ""), and ""
    /// compared equal to an empty code: a TOTP check with an unset seed accepted an empty code.
    @Test func emptySecretNeverMatches() async {
        #expect(throws: JOSEError.invalidKey("")) { try OTP.hotp(secret: [], counter: 1) }
        #expect(throws: JOSEError.invalidKey("")) { try OTP.totp(secret: [], unixTime: 1_700_000_000) }
        #expect(OTP.matchingStep(secret: [], code: "", unixTime: 1_700_000_000) == nil)
    }

    @Test func hashesThrowInsteadOfReturningEmpty() async throws {
        #expect(try SessionService.tokenHash("t").count == 32)
        #expect(try MasterKey(bytes: [UInt8](repeating: 1, count: 32)).fingerprint.count == 8)
    }
}
