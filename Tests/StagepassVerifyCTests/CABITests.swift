import Foundation
import StagepassVerifyCHeader
import Testing

/// The C ABI (`stagepass_verify.h`) called through the header's declarations, as a C caller links it.
@Suite("C ABI through the header")
struct CABITests {
    /// One conformance case (Specs/vectors/conformance.json) without status lists.
    struct Case: Sendable, CustomTestStringConvertible {
        let id: String
        let token: String
        let jwks: String
        let issuer: String
        let audiences: String
        let leeway: Int64
        let maxLifetime: Int64
        let roles: String?
        let stage: String?
        let pipeline: String?
        let now: Int64
        /// The DPoP presentation (proof, method, url), nil for a bearer one, and those made before it.
        var dpop: [String]? = nil
        var dpopEarlier: [[String]] = []
        var replayCapacity: Int64 = 0
        let expected: String

        var testDescription: String { id }
    }

    /// The cases the C ABI checks without a status list installed (status lists have their own tests).
    static let cases: [Case] = {
        // #filePath = <root>/Tests/StagepassVerifyCTests/CABITests.swift
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let url = root.appendingPathComponent("Specs/vectors/conformance.json")
        guard let data = try? Data(contentsOf: url),
            let doc = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let cases = doc["cases"] as? [[String: Any]]
        else { return [] }
        return cases.compactMap { c -> Case? in
            guard c["status_lists"] == nil, let id = c["id"] as? String, let token = c["token"] as? String,
                let jwks = c["jwks"], let jwksData = try? JSONSerialization.data(withJSONObject: jwks),
                let config = c["config"] as? [String: Any], let issuer = config["issuer"] as? String,
                let audiences = config["audiences"] as? [String], let expected = c["expected"] as? String
            else { return nil }
            let requirements = c["requirements"] as? [String: Any] ?? [:]
            let roles = (requirements["roles"] as? [String]).flatMap { $0.isEmpty ? nil : $0.joined(separator: ",") }
            func presentation(_ any: Any?) -> [String]? {
                guard let d = any as? [String: Any], let p = d["proof"] as? String, let m = d["method"] as? String,
                    let u = d["url"] as? String
                else { return nil }
                return [p, m, u]
            }
            return Case(
                id: id,
                token: token,
                jwks: String(decoding: jwksData, as: UTF8.self),
                issuer: issuer,
                audiences: audiences.joined(separator: ","),
                leeway: (config["leeway"] as? NSNumber)?.int64Value ?? -1,
                maxLifetime: (config["max_lifetime"] as? NSNumber)?.int64Value ?? 0,
                roles: roles,
                stage: requirements["stage"] as? String,
                pipeline: requirements["pipeline"] as? String,
                now: (c["now"] as? NSNumber)?.int64Value ?? 0,
                dpop: presentation(c["dpop"]),
                dpopEarlier: (c["dpop_earlier"] as? [Any] ?? []).compactMap(presentation),
                replayCapacity: (config["dpop_replay_capacity"] as? NSNumber)?.int64Value ?? 0,
                expected: expected
            )
        }
    }()

    static func code(_ r: stagepass_result) -> Int32 { Int32(bitPattern: r.rawValue) }

    static func name(_ result: Int32) -> String { String(cString: stagepass_result_name(result)) }

    /// Creates a verifier for `c`, runs `body`, and frees it.
    static func withVerifier<T>(_ c: Case, _ body: (OpaquePointer) throws -> T) throws -> T {
        var result: Int32 = -1
        let handle =
            c.replayCapacity == 0
            ? stagepass_verifier_new(c.issuer, c.audiences, c.jwks, c.leeway, c.maxLifetime, &result)
            : stagepass_verifier_new_with_dpop(
                c.issuer,
                c.audiences,
                c.jwks,
                c.leeway,
                c.maxLifetime,
                0,
                c.replayCapacity,
                &result
            )
        let verifier = try #require(handle, "stagepass_verifier_new failed: \(name(result))")
        defer { stagepass_verifier_free(verifier) }
        #expect(result == code(STAGEPASS_OK))
        return try body(verifier)
    }

    static func verify(
        _ verifier: OpaquePointer,
        _ c: Case,
        claimsCap: Int = 65536,
        dpop: [String]? = nil
    )
        -> (result: Int32, claims: String, claimsLength: Int, detail: String)
    {
        var claims = [CChar](repeating: 0, count: max(claimsCap, 1))
        let detailCap = 512
        var detail = [CChar](repeating: 0, count: detailCap)
        var length = 0
        let utf8 = Array(c.token.utf8)
        let rc = utf8.withUnsafeBufferPointer { bytes in
            bytes.withMemoryRebound(to: CChar.self) { tokenBytes in
                // A DPoP presentation goes through stagepass_verify_dpop; a NULL proof there is a bearer one.
                dpop == nil
                    ? stagepass_verify(
                        verifier,
                        tokenBytes.baseAddress,
                        tokenBytes.count,
                        c.roles,
                        c.stage,
                        c.pipeline,
                        c.now,
                        &claims,
                        claimsCap,
                        &length,
                        &detail,
                        detailCap
                    )
                    : stagepass_verify_dpop(
                        verifier,
                        tokenBytes.baseAddress,
                        tokenBytes.count,
                        c.roles,
                        c.stage,
                        c.pipeline,
                        dpop?[0],
                        dpop?[1],
                        dpop?[2],
                        c.now,
                        &claims,
                        claimsCap,
                        &length,
                        &detail,
                        detailCap
                    )
            }
        }
        let text = rc == code(STAGEPASS_OK) ? String(cString: claims) : ""
        return (rc, text, length, String(cString: detail))
    }

    @Test func theVectorsAreThere() {
        #expect(Self.cases.count > 100, "Specs/vectors/conformance.json holds the conformance cases")
        #expect(Self.cases.contains { $0.id == "es256-valid" })
    }

    /// Every conformance case without a status list gives the expected verdict through the C ABI.
    @Test(arguments: cases)
    func conformanceCase(_ c: Case) throws {
        try Self.withVerifier(c) { verifier in
            for earlier in c.dpopEarlier {
                #expect(Self.verify(verifier, c, dpop: earlier).result == Self.code(STAGEPASS_OK), "\(c.id)")
            }
            let out = Self.verify(verifier, c, dpop: c.dpop)
            #expect(Self.name(out.result) == c.expected, "\(c.id): \(out.detail)")
            if c.expected == "ok" {
                #expect(out.claimsLength == out.claims.utf8.count)
                let claims = try JSONSerialization.jsonObject(with: Data(out.claims.utf8)) as? [String: Any]
                #expect(claims?["iss"] as? String == c.issuer)
            } else {
                #expect(!out.detail.isEmpty, "a rejection says why")
            }
        }
    }

    /// `stagepass_verify_dpop` needs the method and URL with a proof; `stagepass_verifier_new_with_dpop` bounds its
    /// settings (Specs/token-profile.md §8).
    @Test func dpopCallsCheckTheirArguments() throws {
        let c = try #require(Self.cases.first { $0.id == "dpop-valid-es256" })
        let proof = try #require(c.dpop)
        try Self.withVerifier(c) { verifier in
            #expect(Self.verify(verifier, c, dpop: [proof[0], proof[1], proof[2]]).result == Self.code(STAGEPASS_OK))
            let noMethod = Array(c.token.utf8).withUnsafeBufferPointer { b in
                b.withMemoryRebound(to: CChar.self) { t in
                    stagepass_verify_dpop(
                        verifier,
                        t.baseAddress,
                        t.count,
                        nil,
                        nil,
                        nil,
                        proof[0],
                        nil,
                        proof[2],
                        c.now,
                        nil,
                        0,
                        nil,
                        nil,
                        0
                    )
                }
            }
            #expect(noMethod == Self.code(STAGEPASS_ERR_INVALID_ARGUMENT))
        }
        for (age, capacity) in [(Int64(301), Int64(0)), (-1, 0), (0, -5)] {
            var result: Int32 = -1
            let h = stagepass_verifier_new_with_dpop(c.issuer, c.audiences, c.jwks, -1, 0, age, capacity, &result)
            #expect(h == nil && result == Self.code(STAGEPASS_ERR_INVALID_CONFIGURATION), "\(age), \(capacity)")
        }
    }

    @Test func aSmallClaimsBufferReportsTheLengthNeeded() throws {
        let c = try #require(Self.cases.first { $0.id == "es256-valid" })
        try Self.withVerifier(c) { verifier in
            let full = Self.verify(verifier, c)
            #expect(full.result == Self.code(STAGEPASS_OK))
            let small = Self.verify(verifier, c, claimsCap: 8)
            #expect(small.result == Self.code(STAGEPASS_ERR_BUFFER_TOO_SMALL))
            #expect(Self.name(small.result) == "buffer_too_small")
            #expect(small.claimsLength == full.claimsLength)
        }
    }

    @Test func aTamperedSignatureIsRejected() throws {
        let good = try #require(Self.cases.first { $0.id == "es256-valid" })
        let parts = good.token.split(separator: ".").map(String.init)
        let sig = parts[2]
        let flipped = (sig.first == "A" ? "B" : "A") + sig.dropFirst()
        let tampered = Case(
            id: "tampered",
            token: parts[0] + "." + parts[1] + "." + flipped,
            jwks: good.jwks,
            issuer: good.issuer,
            audiences: good.audiences,
            leeway: good.leeway,
            maxLifetime: good.maxLifetime,
            roles: nil,
            stage: nil,
            pipeline: nil,
            now: good.now,
            expected: "bad_signature"
        )
        try Self.withVerifier(tampered) { verifier in
            let out = Self.verify(verifier, tampered)
            #expect(out.result == Self.code(STAGEPASS_BAD_SIGNATURE))
            #expect(Self.name(out.result) == "bad_signature")
        }
    }

    @Test func aBadJWKSAndNullArgumentsAreCallErrors() {
        var result: Int32 = -1
        let handle = stagepass_verifier_new("https://stagepass.test", "deploy-api", "{\"keys\":", -1, 0, &result)
        #expect(handle == nil)
        #expect(result == Self.code(STAGEPASS_ERR_BAD_JWKS))
        #expect(Self.name(result) == "bad_jwks")
        #expect(
            stagepass_verify(nil, "x", 1, nil, nil, nil, 0, nil, 0, nil, nil, 0)
                == Self.code(STAGEPASS_ERR_INVALID_ARGUMENT)
        )
        #expect(Self.name(9999) == "unknown")
        stagepass_verifier_free(nil)  // a no-op, as free(NULL)
    }

    @Test func replacingTheKeySetTakesEffect() throws {
        let c = try #require(Self.cases.first { $0.id == "es256-valid" })
        try Self.withVerifier(c) { verifier in
            #expect(stagepass_verifier_set_jwks(verifier, "{\"keys\":[]}") == Self.code(STAGEPASS_OK))
            #expect(Self.verify(verifier, c).result == Self.code(STAGEPASS_UNKNOWN_KEY))
            #expect(stagepass_verifier_set_jwks(verifier, c.jwks) == Self.code(STAGEPASS_OK))
            #expect(Self.verify(verifier, c).result == Self.code(STAGEPASS_OK))
            #expect(stagepass_verifier_set_jwks(verifier, "not json") == Self.code(STAGEPASS_ERR_BAD_JWKS))
        }
    }

    /// Durations outside the verifier bounds are refused with the code added after 104; -1 / 0 keep meaning "default".
    @Test(arguments: [
        (Int64(-2), Int64(3600)), (301, 3600), (999_999_999, 3600), (30, -1), (30, 86_401), (Int64.max, Int64.max),
    ])
    func outOfBoundsDurationsAreAConfigurationError(leeway: Int64, maxLifetime: Int64) throws {
        let c = try #require(Self.cases.first { $0.id == "es256-valid" })
        var result: Int32 = -1
        let handle = stagepass_verifier_new(c.issuer, c.audiences, c.jwks, leeway, maxLifetime, &result)
        #expect(handle == nil)
        stagepass_verifier_free(handle)
        #expect(result == Self.code(STAGEPASS_ERR_INVALID_CONFIGURATION))
        #expect(result == 105)
        #expect(Self.name(result) == "invalid_configuration")
    }

    @Test func theDefaultSentinelsAndTheBoundsThemselvesAreAccepted() throws {
        let c = try #require(Self.cases.first { $0.id == "es256-valid" })
        for (leeway, maxLifetime) in [(Int64(-1), Int64(0)), (0, 1), (300, 86_400)] {
            var result: Int32 = -1
            let handle = stagepass_verifier_new(c.issuer, c.audiences, c.jwks, leeway, maxLifetime, &result)
            #expect(handle != nil && result == Self.code(STAGEPASS_OK), "\(leeway), \(maxLifetime)")
            stagepass_verifier_free(handle)
        }
    }

    /// A token that expired ten years ago is `expired` even with the largest leeway the ABI allows.
    @Test func aTokenExpiredTenYearsAgoIsRefusedWithTheLargestLeeway() throws {
        let c = try #require(Self.cases.first { $0.id == "es256-valid" })
        let late = Case(
            id: "ten-years-late",
            token: c.token,
            jwks: c.jwks,
            issuer: c.issuer,
            audiences: c.audiences,
            leeway: 300,
            maxLifetime: c.maxLifetime,
            roles: c.roles,
            stage: c.stage,
            pipeline: c.pipeline,
            now: c.now + 10 * 365 * 86_400,
            expected: "expired"
        )
        try Self.withVerifier(late) { verifier in
            #expect(Self.verify(verifier, late).result == Self.code(STAGEPASS_EXPIRED))
        }
        var result: Int32 = -1
        let lax = stagepass_verifier_new(c.issuer, c.audiences, c.jwks, 999_999_999, 0, &result)
        #expect(lax == nil && result == Self.code(STAGEPASS_ERR_INVALID_CONFIGURATION), "no verifier that lax exists")
        stagepass_verifier_free(lax)
    }

    /// A status-list age limit out of bounds is refused; nothing is installed, yet status checking is on (fail closed).
    @Test func anOutOfBoundsStatusMaxAgeIsRefusedAndFailsClosed() throws {
        let c = try #require(Self.cases.first { $0.id == "es256-valid" })
        try Self.withVerifier(c) { verifier in
            for maxAge in [Int64(-1), 86_401] {
                #expect(
                    stagepass_verifier_set_status_list(verifier, "a.b.c", 0, maxAge)
                        == Self.code(STAGEPASS_ERR_INVALID_CONFIGURATION)
                )
            }
            #expect(Self.verify(verifier, c).result == Self.code(STAGEPASS_STATUS_UNAVAILABLE))
        }
    }
}
