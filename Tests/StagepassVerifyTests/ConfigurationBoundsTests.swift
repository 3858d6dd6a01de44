import Foundation
import StagepassJOSE
import StagepassVerify
import Testing

/// The bounds of a verifier configuration (Specs/token-profile.md, "Verifier bounds"): negative and absurd durations
/// are a typed configuration error, never a silently weaker verifier.
@Suite("Verifier configuration bounds")
struct ConfigurationBoundsTests {
    static let tenYears: Int64 = 10 * 365 * 86_400

    func config(
        leeway: Int64 = 30,
        maxLifetime: Int64 = 3600,
        statusMaxAge: Int64? = nil
    ) throws(VerifierConfigurationError) -> VerifierConfiguration {
        try VerifierConfiguration(
            issuer: "https://sp",
            audiences: ["deploy-api"],
            leeway: leeway,
            maxLifetime: maxLifetime,
            statusMaxAge: statusMaxAge
        )
    }

    @Test(arguments: [Int64(-1), -30, 301, 3600, 999_999_999, Int64.max, Int64.min])
    func aLeewayOutsideZeroToFiveMinutesIsRefused(leeway: Int64) {
        #expect(throws: VerifierConfigurationError.invalidLeeway) { try config(leeway: leeway) }
    }

    @Test(arguments: [Int64(0), -1, 86_401, 315_360_000, Int64.max])
    func aMaxLifetimeOutsideOneSecondToADayIsRefused(maxLifetime: Int64) {
        #expect(throws: VerifierConfigurationError.invalidMaxLifetime) { try config(maxLifetime: maxLifetime) }
    }

    @Test(arguments: [Int64(0), -1, 86_401, Int64.max])
    func aStatusMaxAgeOutsideOneSecondToADayIsRefused(statusMaxAge: Int64) {
        #expect(throws: VerifierConfigurationError.invalidStatusMaxAge) { try config(statusMaxAge: statusMaxAge) }
    }

    @Test func theBoundsThemselvesAreAccepted() throws {
        let low = try config(leeway: 0, maxLifetime: 1, statusMaxAge: 1)
        #expect(low.leeway == 0 && low.maxLifetime == 1 && low.statusMaxAge == 1)
        let high = try config(
            leeway: VerifierLimits.maxLeeway,
            maxLifetime: VerifierLimits.maxLifetime,
            statusMaxAge: VerifierLimits.maxStatusMaxAge
        )
        #expect(high.leeway == 300 && high.maxLifetime == 86_400 && high.statusMaxAge == 86_400)
        #expect(try config().leeway == 30, "the defaults are in bounds")
    }

    @Test func theErrorNamesTheValueAndTheRange() {
        do {
            _ = try config(leeway: 999_999_999)
            Issue.record("accepted")
        } catch {
            #expect(error.code == "invalid_leeway")
            #expect(error.detail.contains("999999999") && error.detail.contains("0...300"))
        }
    }

    /// A token that expired ten years ago is `expired` under every leeway a configuration may have.
    @Test(arguments: [Int64(0), 30, 60, 299, 300])
    func aTokenExpiredTenYearsAgoIsRefusedWithAnyAllowedLeeway(leeway: Int64) throws {
        let key = try PrivateKey.generate(for: .ES256)
        var jwk = try JWK(publicKey: key.publicKey(), alg: .ES256)
        jwk.kid = try jwk.thumbprint()
        let issued: Int64 = 1_600_000_000
        let token = try JWS.sign(
            claims: .object([
                "iss": .string("https://sp"), "aud": .string("deploy-api"), "sub": .string("alice"),
                "jti": .string("j1"), "iat": .int(issued), "exp": .int(issued + 300),
            ]),
            header: ["typ": .string("at+jwt"), "kid": .string(jwk.kid ?? "")],
            key: key,
            alg: .ES256
        )
        let verifier = Verifier(
            configuration: try config(leeway: leeway),
            keys: StaticKeySource(KeySet(jwks: JWKS(keys: [jwk])))
        )
        _ = try verifier.verify(token, at: issued + 10)
        #expect(throws: VerificationError(.expired, "")) {
            try verifier.verify(token, at: issued + 300 + Self.tenYears)
        }
    }
}
