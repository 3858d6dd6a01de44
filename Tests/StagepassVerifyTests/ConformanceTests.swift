import Foundation
import StagepassJOSE
import Synchronization
import Testing

@testable import StagepassVerify

/// Specs/vectors/conformance.json: the project's own vectors that every port of the verifier must pass
/// (the C ABI runs the same file in Tests/interop).
@Suite("Conformance vectors")
struct ConformanceTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        let id: String
        let token: String
        let jwks: [UInt8]
        let issuer: String
        let audiences: [String]
        let leeway: Int64
        let maxLifetime: Int64
        let now: Int64
        let requirements: Requirements
        let statusLists: [String]?
        let statusListResults: [String]?
        let statusMaxAge: Int64?
        let replayCapacity: Int?
        /// The case's presentation (nil: bearer) and the presentations made before it (each accepted).
        let dpop: DPoPPresentation?
        let dpopEarlier: [DPoPPresentation]
        let expected: String
        var testDescription: String { id }
    }

    static let vectors: [Vector] = {
        guard let doc = try? vectorFile("conformance.json"), let cases = doc["cases"] as? [[String: Any]] else {
            return []
        }
        return cases.compactMap { c in
            guard let id = c["id"] as? String, let token = c["token"] as? String, let jwks = c["jwks"],
                let jwksData = try? JSONSerialization.data(withJSONObject: jwks),
                let config = c["config"] as? [String: Any],
                let now = (c["now"] as? NSNumber)?.int64Value, let expected = c["expected"] as? String
            else { return nil }
            let req = c["requirements"] as? [String: Any] ?? [:]
            func presentation(_ any: Any?) -> DPoPPresentation? {
                guard let d = any as? [String: Any], let proof = d["proof"] as? String,
                    let method = d["method"] as? String, let url = d["url"] as? String
                else { return nil }
                return DPoPPresentation(proof: proof, method: method, url: url)
            }
            return Vector(
                id: id,
                token: token,
                jwks: [UInt8](jwksData),
                issuer: config["issuer"] as? String ?? "",
                audiences: config["audiences"] as? [String] ?? [],
                leeway: (config["leeway"] as? NSNumber)?.int64Value ?? 30,
                maxLifetime: (config["max_lifetime"] as? NSNumber)?.int64Value ?? 3600,
                now: now,
                requirements: Requirements(
                    roles: req["roles"] as? [String] ?? [],
                    stage: req["stage"] as? String,
                    pipeline: req["pipeline"] as? String
                ),
                statusLists: c["status_lists"] as? [String],
                statusListResults: c["status_list_results"] as? [String],
                statusMaxAge: (c["status_max_age"] as? NSNumber)?.int64Value,
                replayCapacity: (config["dpop_replay_capacity"] as? NSNumber)?.intValue,
                dpop: presentation(c["dpop"]),
                dpopEarlier: (c["dpop_earlier"] as? [Any] ?? []).compactMap(presentation),
                expected: expected
            )
        }
    }()

    @Test func fileIsComplete() {
        #expect(ConformanceTests.vectors.count >= 200)
        let codes = Set(ConformanceTests.vectors.map(\.expected))
        for code in VerificationErrorCode.allCases {
            #expect(codes.contains(code.name), "no vector expects \(code.name)")
        }
    }

    @Test(arguments: ConformanceTests.vectors)
    func vector(_ v: Vector) throws {
        let keys = KeySet(jwks: (try? JWKS(json: v.jwks)) ?? JWKS(keys: []))
        let verifier = Verifier(
            configuration: try VerifierConfiguration(
                issuer: v.issuer,
                audiences: v.audiences,
                leeway: v.leeway,
                maxLifetime: v.maxLifetime,
                dpopReplayCapacity: v.replayCapacity ?? 65536
            ),
            keys: StaticKeySource(keys),
            clock: { v.now }
        )
        // Each list goes through the one install path (StatusListHolder); its outcome is part of the vector.
        for (i, jwt) in (v.statusLists ?? []).enumerated() {
            let outcome: String
            do {
                try verifier.installStatusList(jwt, fetchedAt: v.now, maxAge: v.statusMaxAge)
                outcome = "ok"
            } catch {
                outcome = error.code == .superseded ? "stale_status_list" : "bad_status_list"
            }
            #expect(outcome == v.statusListResults?[i], "\(v.id): list \(i) \(outcome)")
        }
        for p in v.dpopEarlier {
            _ = try verifier.verify(v.token, requirements: v.requirements, dpop: p, at: v.now)
        }
        // Twice: the second call takes the cached path and must reach the same verdict. A DPoP presentation is
        // made once (a second one would be a replay); the earlier presentations took the cached path for it.
        for _ in 0..<(v.dpop == nil ? 2 : 1) {
            do {
                _ = try verifier.verify(v.token, requirements: v.requirements, dpop: v.dpop, at: v.now)
                #expect(v.expected == "ok", "\(v.id): accepted, expected \(v.expected)")
            } catch {
                #expect(error.code.name == v.expected, "\(v.id): \(error)")
            }
        }
    }
}
