import StagepassJOSE
import Testing

@testable import StagepassBroker

@Suite struct WebAuthnAssertionTests {
    /// A user with one registered key of `alg`.
    func setUp(
        _ alg: COSEAlgorithm,
        _ h: WebAuthnHarness
    ) async throws
        -> (String, SoftAuthenticator, WebAuthnCredentialInfo)
    {
        let uid = try await h.user("alice")
        let key = try SoftAuthenticator(alg)
        let info = try await h.register(key, userId: uid, name: "desk key", attestation: .packedSelf)
        return (uid, key, info)
    }

    /// §7.2, ES256 (DER signature) and EdDSA.
    @Test(arguments: COSEAlgorithm.allCases)
    func assertionVerifiesAndAdvancesTheCounter(_ alg: COSEAlgorithm) async throws {
        let h = try WebAuthnHarness()
        let (uid, key, info) = try await setUp(alg, h)
        let o = try await h.service.beginAssertion(userId: uid, purpose: .stepUp)
        #expect(o.allowCredentials == [key.credentialId])
        let j = try JSONValue.parse(o.jsonString)
        #expect(j["rpId"]?.stringValue == "localhost" && j["userVerification"]?.stringValue == "preferred")
        #expect(j["allowCredentials"]?.arrayValue?.first?["id"]?.stringValue == Base64URL.encode(key.credentialId))
        let r = try await h.service.finishAssertion(
            userId: uid,
            purpose: .stepUp,
            credentialJSON: try key.assert(challenge: o.challenge, userId: uid)
        )
        #expect(r.factorId == info.factorId && r.credentialName == "desk key" && r.userVerified)
        #expect(r.signCount == 1 && r.amr == ["hwk", "user"])
        let stored = try await #require(try h.service.listCredentials(userId: uid).first)
        #expect(stored.signCount == 1 && stored.lastUsedAt == h.manual.clock.now())
        let used = try await #require(try h.events.last)
        #expect(used.action == "factor.verify" && used.result == "success" && used.factors == ["hwk", "user"])
        // Without UV the amr is hwk alone; a missing user handle is fine.
        var k = SoftAuthenticator.Knobs()
        k.uv = false
        let o2 = try await h.service.beginAssertion(userId: uid, purpose: .stepUp)
        let r2 = try await h.service.finishAssertion(
            userId: uid,
            purpose: .stepUp,
            credentialJSON: try key.assert(challenge: o2.challenge, knobs: k)
        )
        #expect(!r2.userVerified && r2.amr == ["hwk"] && r2.signCount == 2)
    }

    @Test func authenticatorsWithoutACounterStayAtZero() async throws {
        let h = try WebAuthnHarness()
        let uid = try await h.user("alice")
        let key = try SoftAuthenticator(.eddsa)
        key.counts = false
        try await h.register(key, userId: uid)
        for _ in 0..<2 {
            let o = try await h.service.beginAssertion(userId: uid, purpose: .signIn)
            let r = try await h.service.finishAssertion(
                userId: uid,
                purpose: .signIn,
                credentialJSON: try key.assert(challenge: o.challenge)
            )
            #expect(r.signCount == 0)
        }
    }

    /// Each failed check of §7.2 refused with its own reason.
    @Test(arguments: COSEAlgorithm.allCases)
    func refusals(_ alg: COSEAlgorithm) async throws {
        let h = try WebAuthnHarness()
        let (uid, key, _) = try await setUp(alg, h)
        func attempt(
            purpose: WebAuthnPurpose = .stepUp,
            finishAs: WebAuthnPurpose? = nil,
            userId: String? = nil,
            knobs: SoftAuthenticator.Knobs = .init(),
            authenticatorData: [UInt8]? = nil,
            corrupt: Bool = false,
            challenge: [UInt8]? = nil
        ) async throws -> WebAuthnError? {
            let o = try await h.service.beginAssertion(userId: uid, purpose: purpose)
            let json = try key.assert(
                challenge: challenge ?? o.challenge,
                userId: uid,
                knobs: knobs,
                authenticatorData: authenticatorData,
                corruptSignature: corrupt
            )
            return await webAuthnError {
                _ = try await h.service.finishAssertion(
                    userId: userId ?? uid,
                    purpose: finishAs ?? purpose,
                    credentialJSON: json
                )
            }
        }
        await #expect(try attempt(corrupt: true) == .invalidSignature)
        var k = SoftAuthenticator.Knobs()
        k.origin = "https://evil.example"
        await #expect(try attempt(knobs: k) == .originMismatch)
        k = .init()
        k.origin = "http://localhost:8081"
        await #expect(try attempt(knobs: k) == .originMismatch)
        k = .init()
        k.rpID = "evil.example"
        await #expect(try attempt(knobs: k) == .rpIdMismatch)
        k = .init()
        k.up = false
        await #expect(try attempt(knobs: k) == .userNotPresent)
        k = .init()
        k.type = "webauthn.create"
        await #expect(try attempt(knobs: k) == .wrongType)
        await #expect(try attempt(challenge: try Crypto.randomBytes(32)) == .unknownChallenge)
        await #expect(try attempt(purpose: .signIn, finishAs: .stepUp) == .challengeMismatch)
        // Authenticator data: too short, extension flag with garbage CBOR, attested data in an assertion.
        let short = try Crypto.sha256(Array("localhost".utf8)) + [0x05]
        await #expect(try attempt(authenticatorData: short) == .invalidAuthenticatorData)
        let base = try Crypto.sha256(Array("localhost".utf8)) + [0x85, 0, 0, 0, 50]
        await #expect(try attempt(authenticatorData: base + [0xBF, 0x01, 0x02, 0xFF]) == .malformedCBOR)
        await #expect(try attempt(authenticatorData: base + [0xA1, 0x61, 0x61]) == .malformedCBOR)
        await #expect(try attempt(authenticatorData: base + [0xA0, 0x00]) == .invalidAuthenticatorData)
        let attested = try key.authData(attested: true, k: .init())
        await #expect(try attempt(authenticatorData: attested) == .invalidAuthenticatorData)
        // Someone else's key; a user handle of another account.
        let bob = try await h.user("bob")
        let bobKey = try SoftAuthenticator(alg)
        try await h.register(bobKey, userId: bob)
        let ob = try await h.service.beginAssertion(userId: uid, purpose: .stepUp)
        await #expect(
            webAuthnError {
                _ = try await h.service.finishAssertion(
                    userId: uid,
                    purpose: .stepUp,
                    credentialJSON: try bobKey.assert(challenge: ob.challenge)
                )
            }
                == .unknownCredential
        )
        k = .init()
        k.userHandle = .some(Array(bob.utf8))
        await #expect(try attempt(knobs: k) == .unknownCredential)
        // Every refusal was audited with its reason.
        let failures = try await h.events.filter { $0.action == "factor.verify" && $0.result == "failure" }
        for reason in ["invalid_signature", "origin_mismatch", "rp_id_mismatch", "user_not_present", "malformed_cbor"] {
            #expect(failures.contains { $0.reason == reason }, "\(reason)")
        }
    }

    @Test func aCounterThatGoesBackwardsIsAPossibleClone() async throws {
        let h = try WebAuthnHarness()
        let uid = try await h.user("alice")
        let key = try SoftAuthenticator(.es256, signCount: 10)
        try await h.register(key, userId: uid)
        let o = try await h.service.beginAssertion(userId: uid, purpose: .signIn)
        _ = try await h.service.finishAssertion(
            userId: uid,
            purpose: .signIn,
            credentialJSON: try key.assert(challenge: o.challenge)
        )  // 11
        for stale: UInt32 in [5, 11, 0] {
            var k = SoftAuthenticator.Knobs()
            k.counter = stale
            let o2 = try await h.service.beginAssertion(userId: uid, purpose: .signIn)
            let e = await webAuthnError {
                _ = try await h.service.finishAssertion(
                    userId: uid,
                    purpose: .signIn,
                    credentialJSON: try key.assert(challenge: o2.challenge, knobs: k)
                )
            }
            #expect(e == .possibleClone && e?.isPossibleClone == true, "counter \(stale)")
        }
        let clone = try await #require(try h.events.last)
        #expect(clone.action == "factor.verify" && clone.result == "denied" && clone.reason == "possible_clone")
        #expect(clone.details["stored_sign_count"] == "11" && clone.details["sign_count"] == "0")
        await #expect(try h.service.listCredentials(userId: uid).first?.signCount == 11)
        // The genuine key, moving on, still works.
        let o3 = try await h.service.beginAssertion(userId: uid, purpose: .signIn)
        await #expect(
            try h.service.finishAssertion(
                userId: uid,
                purpose: .signIn,
                credentialJSON: try key.assert(challenge: o3.challenge)
            ).signCount == 12
        )
        await #expect(
            try h.human.store.advanceWebAuthnSignCount(
                factorId: try h.service.listCredentials(userId: uid)[0].factorId,
                to: 12,
                usedAt: 0
            ) == false
        )
    }

    @Test func challengesAreSingleUseAndExpire() async throws {
        let h = try WebAuthnHarness()
        let (uid, key, _) = try await setUp(.eddsa, h)
        let o = try await h.service.beginAssertion(userId: uid, purpose: .signIn)
        let json = try key.assert(challenge: o.challenge)
        _ = try await h.service.finishAssertion(userId: uid, purpose: .signIn, credentialJSON: json)
        // The very same response again: the challenge is gone.
        await #expect(
            webAuthnError {
                _ = try await h.service.finishAssertion(userId: uid, purpose: .signIn, credentialJSON: json)
            }
                == .unknownChallenge
        )
        let late = try await h.service.beginAssertion(userId: uid, purpose: .signIn)
        h.manual.advance(301)
        await #expect(
            webAuthnError {
                _ = try await h.service.finishAssertion(
                    userId: uid,
                    purpose: .signIn,
                    credentialJSON: try key.assert(challenge: late.challenge)
                )
            }
                == .challengeExpired
        )
        // A failed attempt uses the challenge up too.
        let o2 = try await h.service.beginAssertion(userId: uid, purpose: .signIn)
        await #expect(
            webAuthnError {
                _ = try await h.service.finishAssertion(
                    userId: uid,
                    purpose: .signIn,
                    credentialJSON: try key.assert(challenge: o2.challenge, corruptSignature: true)
                )
            }
                == .invalidSignature
        )
        await #expect(
            webAuthnError {
                _ = try await h.service.finishAssertion(
                    userId: uid,
                    purpose: .signIn,
                    credentialJSON: try key.assert(challenge: o2.challenge)
                )
            }
                == .unknownChallenge
        )
    }

    /// "An assertion made for one approval request, replayed against another, is refused."
    @Test func anAssertionForApprovalAIsRefusedForApprovalB() async throws {
        let h = try WebAuthnHarness()
        let (uid, key, _) = try await setUp(.es256, h)
        let a = try await h.service.beginAssertion(userId: uid, purpose: .approval(binding: "binding-of-request-A"))
        let b = try await h.service.beginAssertion(userId: uid, purpose: .approval(binding: "binding-of-request-B"))
        // The challenges commit to their binding: the last 16 bytes differ, the stored rows carry it.
        #expect(a.challenge.suffix(16) != b.challenge.suffix(16))
        let forA = try key.assert(challenge: a.challenge)
        let e = await webAuthnError {
            _ = try await h.service.finishAssertion(
                userId: uid,
                purpose: .approval(binding: "binding-of-request-B"),
                credentialJSON: forA
            )
        }
        #expect(e == .challengeMismatch)
        #expect(e?.detail.contains("different approval request") == true)
        // Nor is it good for a plain step-up, and the attempt used A's challenge up.
        await #expect(
            webAuthnError {
                _ = try await h.service.finishAssertion(userId: uid, purpose: .stepUp, credentialJSON: forA)
            }
                == .unknownChallenge
        )
        // B's own assertion works for B.
        let r = try await h.service.finishAssertion(
            userId: uid,
            purpose: .approval(binding: "binding-of-request-B"),
            credentialJSON: try key.assert(challenge: b.challenge)
        )
        #expect(r.userVerified)
        await #expect(try h.events.last?.details["binding"] == "binding-of-request-B")
    }

    @Test func userVerificationRequiredRefusesATouchOnly() async throws {
        let h = try WebAuthnHarness(
            configuration: WebAuthnConfiguration(
                rpID: "localhost",
                rpName: "t",
                origins: ["http://localhost:8080"],
                userVerification: .required
            )
        )
        let uid = try await h.user("alice")
        let key = try SoftAuthenticator(.es256)
        try await h.register(key, userId: uid)
        var k = SoftAuthenticator.Knobs()
        k.uv = false
        let o = try await h.service.beginAssertion(userId: uid, purpose: .signIn)
        await #expect(
            webAuthnError {
                _ = try await h.service.finishAssertion(
                    userId: uid,
                    purpose: .signIn,
                    credentialJSON: try key.assert(challenge: o.challenge, knobs: k)
                )
            }
                == .userNotVerified
        )
        let r = try await h.service.beginRegistration(userId: uid, userName: "alice")
        await #expect(
            webAuthnError {
                try await h.service.finishRegistration(
                    userId: uid,
                    name: "k",
                    credentialJSON: try SoftAuthenticator(.eddsa).register(challenge: r.challenge, knobs: k)
                )
            }
                == .userNotVerified
        )
    }

    @Test func noKeyNoAssertion() async throws {
        let h = try WebAuthnHarness()
        let uid = try await h.user("alice")
        await #expect(
            webAuthnError { _ = try await h.service.beginAssertion(userId: uid, purpose: .signIn) } == .noCredentials
        )
    }
}
