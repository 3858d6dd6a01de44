import Foundation
import StagepassJOSE
import Testing

@testable import StagepassBroker

/// Recorded registration and assertion data (`vectors/webauthn-vectors.json`, written by `vectors/make_vectors.py`
/// with pyca/cryptography and its own CBOR encoder, so neither the Swift signer nor the Swift test encoder is
/// involved). The cases run in order on one store: refused registrations, two good ones (ES256 packed
/// self-attestation, EdDSA none), then assertions, good and refused, each naming the expected outcome.
@Suite struct WebAuthnRecordedVectorTests {
    @Test func recordedRegistrationsAndAssertions() async throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("vectors/webauthn-vectors.json")
        let doc = try JSONValue.parse(Array(try Data(contentsOf: url)))
        let userId = try #require(doc["user_id"]?.stringValue)
        let time = try #require(doc["time"]?.intValue)
        let manual = ManualClock(time)
        let human = HumanBroker(
            store: try SQLiteStore(),
            masterKey: try MasterKey.generate(),
            hasher: try PasswordHasher(parameters: .testing, pool: WorkPool(label: "test", workers: 2)),
            clock: manual.clock,
            webAuthn: WebAuthnConfiguration(
                rpID: try #require(doc["rp_id"]?.stringValue),
                rpName: "vectors",
                origins: [try #require(doc["origin"]?.stringValue)]
            )
        )
        try await human.store.insertUser(
            UserRecord(id: userId, name: "vector", passwordHash: "unused", createdAt: time),
            groups: []
        )
        let cases = try #require(doc["cases"]?.arrayValue)
        #expect(cases.count >= 15)
        var outcomes: [String: Int] = [:]
        for c in cases {
            let name = c["name"]?.stringValue ?? "?"
            let expect = try #require(c["expect"]?.stringValue)
            let purpose = try #require(c["purpose"]?.stringValue)
            let challenge = try Base64URL.decode(try #require(c["challenge"]?.stringValue))
            // The broker issued this challenge (the script derives it the way WebAuthnService does).
            try await human.store.insertWebAuthnChallenge(
                WebAuthnChallengeRecord(
                    challengeHash: try Crypto.sha256(challenge),
                    userId: userId,
                    purpose: purpose,
                    binding: c["binding"]?.stringValue,
                    createdAt: time,
                    expiresAt: time + 300
                )
            )
            let json = try #require(c["credential"]).serialized()
            var got = "ok"
            do {
                if c["ceremony"]?.stringValue == "registration" {
                    let info = try await human.webauthn.finishRegistration(
                        userId: userId,
                        name: "key",
                        credentialJSON: json
                    )
                    #expect(info.algorithm == c["alg"]?.stringValue, "\(name)")
                    #expect(info.attestation == c["attestation"]?.stringValue, "\(name)")
                } else {
                    let finishPurpose: WebAuthnPurpose
                    switch purpose {
                    case "signin": finishPurpose = .signIn
                    case "stepup": finishPurpose = .stepUp
                    default:
                        finishPurpose = .approval(
                            binding: c["finish_binding"]?.stringValue ?? c["binding"]?.stringValue ?? ""
                        )
                    }
                    let r = try await human.webauthn.finishAssertion(
                        userId: userId,
                        purpose: finishPurpose,
                        credentialJSON: json
                    )
                    #expect(r.signCount == c["sign_count"]?.intValue, "\(name)")
                    #expect(r.userVerified == c["user_verified"]?.boolValue, "\(name)")
                }
            } catch let e as WebAuthnError {
                got = e.code
                #expect(!e.detail.isEmpty, "\(name)")
            }
            #expect(got == expect, "\(name): expected \(expect), got \(got)")
            outcomes[got, default: 0] += 1
        }
        // The list: bad signature, wrong origin, wrong RP ID hash, counter backwards, malformed CBOR.
        for code in ["invalid_signature", "origin_mismatch", "rp_id_mismatch", "possible_clone", "malformed_cbor"] {
            #expect(outcomes[code, default: 0] > 0, "\(code)")
        }
        await #expect(Set(try human.webauthn.listCredentials(userId: userId).map(\.algorithm)) == ["ES256", "EdDSA"])
    }
}
