import StagepassJOSE
import Testing

@testable import StagepassBroker

@Suite struct WebAuthnRegistrationTests {
    static let cases: [(COSEAlgorithm, Bool)] = [(.es256, false), (.es256, true), (.eddsa, false), (.eddsa, true)]

    /// §7.1 with `none` (§8.7) and `packed` self-attestation (§8.2), for ES256 and EdDSA.
    @Test(arguments: cases)
    func registersAKey(_ c: (COSEAlgorithm, Bool)) async throws {
        let h = try WebAuthnHarness()
        let uid = try await h.user("alice")
        let key = try SoftAuthenticator(c.0)
        let options = try await h.service.beginRegistration(userId: uid, userName: "alice")
        #expect(options.challenge.count == 32)
        #expect(options.userHandle == Array(uid.utf8))
        let info = try await h.service.finishRegistration(
            userId: uid,
            name: "  YubiKey 5C  ",
            credentialJSON: try key.register(challenge: options.challenge, attestation: c.1 ? .packedSelf : .none)
        )
        #expect(info.name == "YubiKey 5C")
        #expect(info.algorithm == c.0.name)
        #expect(info.attestation == (c.1 ? "self" : "none"))
        #expect(info.userVerifiedAtRegistration)
        #expect(info.credentialId == Base64URL.encode(key.credentialId))
        #expect(info.aaguid == "00000000-0000-0000-0000-000000000000")
        await #expect(try h.service.listCredentials(userId: uid) == [info])
        let factor = try await #require(try h.human.store.factor(id: info.factorId))
        #expect(factor.kind == .webauthn && factor.state == .active && factor.secretBox == nil)
        let enrol = try await #require(try h.events.last { $0.action == "factor.enrol" })
        #expect(enrol.result == "success" && enrol.factors == ["hwk", "user"])
        #expect(enrol.details["attestation"] == info.attestation && enrol.details["alg"] == c.0.name)
        // The same key is not registered twice, and the next options exclude it.
        let again = try await h.service.beginRegistration(userId: uid, userName: "alice")
        #expect(again.excludeCredentials == [key.credentialId])
        await #expect(
            webAuthnError {
                try await h.service.finishRegistration(
                    userId: uid,
                    name: "dup",
                    credentialJSON: try key.register(challenge: again.challenge)
                )
            }
                == .credentialExists
        )
    }

    @Test func creationOptionsJSONIsWhatTheBrowserNeeds() async throws {
        let h = try WebAuthnHarness()
        let uid = try await h.user("alice")
        try await h.register(try SoftAuthenticator(.es256), userId: uid)
        let o = try await h.service.beginRegistration(userId: uid, userName: "alice")
        let j = try JSONValue.parse(o.jsonString)
        #expect(j["rp"]?["id"]?.stringValue == "localhost")
        #expect(j["user"]?["id"]?.stringValue == Base64URL.encode(Array(uid.utf8)))
        #expect(j["user"]?["name"]?.stringValue == "alice")
        #expect(j["challenge"]?.stringValue == Base64URL.encode(o.challenge))
        #expect(j["pubKeyCredParams"]?.arrayValue?.compactMap { $0["alg"]?.intValue } == [-7, -8])
        #expect(j["excludeCredentials"]?.arrayValue?.count == 1)
        #expect(j["authenticatorSelection"]?["userVerification"]?.stringValue == "preferred")
        #expect(j["attestation"]?.stringValue == "none")
        #expect(j["timeout"]?.intValue == 300_000)
    }

    /// One refused registration per failed check of §7.1, each with its own reason.
    @Test func refusals() async throws {
        let h = try WebAuthnHarness()
        let uid = try await h.user("alice")
        func refused(
            _ alg: COSEAlgorithm = .es256,
            attestation: SoftAuthenticator.Attestation = .none,
            knobs: SoftAuthenticator.Knobs = .init(),
            object: (([UInt8], [UInt8]) throws -> [UInt8])? = nil
        ) async throws -> WebAuthnError? {
            let key = try SoftAuthenticator(alg)
            let o = try await h.service.beginRegistration(userId: uid, userName: "alice")
            let json = try key.register(
                challenge: o.challenge,
                attestation: attestation,
                knobs: knobs,
                attestationObject: object
            )
            return await webAuthnError {
                try await h.service.finishRegistration(userId: uid, name: "k", credentialJSON: json)
            }
        }
        var k = SoftAuthenticator.Knobs()
        k.origin = "https://evil.example"
        await #expect(try refused(knobs: k) == .originMismatch)
        k = .init()
        k.type = "webauthn.get"
        await #expect(try refused(knobs: k) == .wrongType)
        k = .init()
        k.rpID = "evil.example"
        await #expect(try refused(knobs: k) == .rpIdMismatch)
        k = .init()
        k.up = false
        await #expect(try refused(knobs: k) == .userNotPresent)
        k = .init()
        k.crossOrigin = true
        await #expect(try refused(knobs: k) == .crossOrigin)
        k = .init()
        k.tokenBinding = "present"
        await #expect(try refused(knobs: k) == .tokenBinding)
        // Attestation statements.
        await #expect(
            try refused(attestation: .packed(alg: -8, corruptSignature: false, x5c: false)) == .invalidAttestation
        )
        await #expect(
            try refused(attestation: .packed(alg: nil, corruptSignature: true, x5c: false)) == .invalidAttestation
        )
        let badSig = SoftAuthenticator.Attestation.packed(alg: nil, corruptSignature: true, x5c: false)
        await #expect(try refused(.eddsa, attestation: badSig) == .invalidAttestation)
        let x5c = SoftAuthenticator.Attestation.packed(alg: nil, corruptSignature: false, x5c: true)
        await #expect(try refused(attestation: x5c) == .unsupportedAttestation)
        await #expect(try refused(attestation: .format("fido-u2f")) == .unsupportedAttestation)
        await #expect(try refused(attestation: .format("tpm")) == .unsupportedAttestation)
        // Keys: RSA (kty 3, alg -257), P-384, a point not on P-256, a key carrying d, no alg.
        k = .init()
        k.coseKey = TestCBOR.encode(
            TestCBOR.map([
                (.integer(1), .integer(3)), (.integer(3), .integer(-257)), (.integer(-1), .bytes([1, 0, 1])),
                (.integer(-2), .bytes([1, 0, 1])),
            ])
        )
        await #expect(try refused(knobs: k) == .unsupportedKey)
        func ec2(crv: Int64 = 1, x: [UInt8], y: [UInt8], extra: [(CBOR, CBOR)] = [], alg: Int64? = -7) -> [UInt8] {
            var pairs: [(CBOR, CBOR)] = [(.integer(1), .integer(2))]
            if let alg { pairs.append((.integer(3), .integer(alg))) }
            pairs += [(.integer(-1), .integer(crv)), (.integer(-2), .bytes(x)), (.integer(-3), .bytes(y))] + extra
            return TestCBOR.encode(TestCBOR.map(pairs))
        }
        let x = [UInt8](repeating: 1, count: 32)
        k.coseKey = ec2(crv: 2, x: x, y: x)
        await #expect(try refused(knobs: k) == .unsupportedKey)
        k.coseKey = ec2(x: x, y: x)  // (1…1, 1…1) is not on P-256
        await #expect(try refused(knobs: k) == .unsupportedKey)
        k.coseKey = ec2(x: x, y: x, alg: nil)
        await #expect(try refused(knobs: k) == .unsupportedKey)
        k.coseKey = ec2(x: x, y: x, extra: [(.integer(-4), .bytes(x))])
        await #expect(try refused(knobs: k) == .unsupportedKey)
        // Malformed CBOR in the attestation object, several shapes.
        let shapes: [(String, ([UInt8], [UInt8]) -> [UInt8])] = [
            ("truncated", { ad, _ in Array(self.noneObject(ad).dropLast(3)) }),
            ("trailing byte", { ad, _ in self.noneObject(ad) + [0x00] }),
            ("indefinite map", { ad, _ in [0xBF] + Array(self.noneObject(ad).dropFirst()) + [0xFF] }),
            (
                "duplicate fmt",
                { ad, _ in
                    TestCBOR.head(5, 4) + TestCBOR.encode(.text("fmt")) + TestCBOR.encode(.text("none"))
                        + TestCBOR.encode(.text("fmt")) + TestCBOR.encode(.text("none"))
                        + TestCBOR.encode(.text("attStmt")) + TestCBOR.encode(.map([]))
                        + TestCBOR.encode(.text("authData")) + TestCBOR.encode(.bytes(ad))
                }
            ),
            ("array instead of map", { ad, _ in TestCBOR.encode(.array([.text("none"), .map([]), .bytes(ad)])) }),
            (
                "authData as text",
                { _, _ in
                    TestCBOR.encode(
                        TestCBOR.map([
                            (.text("fmt"), .text("none")), (.text("attStmt"), .map([])),
                            (.text("authData"), .text("x")),
                        ])
                    )
                }
            ),
            (
                "tag on authData",
                { ad, _ in
                    TestCBOR.head(5, 3) + TestCBOR.encode(.text("fmt")) + TestCBOR.encode(.text("none"))
                        + TestCBOR.encode(.text("attStmt")) + TestCBOR.encode(.map([]))
                        + TestCBOR.encode(.text("authData")) + [0xD8, 0x18] + TestCBOR.encode(.bytes(ad))
                }
            ),
        ]
        for (what, shape) in shapes {
            await #expect(try refused(object: shape) == .malformedCBOR, "\(what)")
        }
        // A COSE key that is not well-formed CBOR inside authData.
        k = .init()
        k.coseKey = [0xA5, 0x01, 0x02]
        await #expect(try refused(knobs: k) == .malformedCBOR)
        // Extension flag with a non-map, and bytes no flag announces.
        k = .init()
        k.extensions = [0x01]
        await #expect(try refused(knobs: k) == .invalidAuthenticatorData)
        // Refusals are audited with their reason.
        let failures = try await h.events.filter { $0.action == "factor.enrol" && $0.result == "failure" }
        #expect(failures.contains { $0.reason == "origin_mismatch" })
        #expect(failures.contains { $0.reason == "malformed_cbor" })
        await #expect(try h.service.listCredentials(userId: uid).isEmpty)
    }

    func noneObject(_ ad: [UInt8]) -> [UInt8] {
        TestCBOR.encode(
            TestCBOR.map([(.text("fmt"), .text("none")), (.text("attStmt"), .map([])), (.text("authData"), .bytes(ad))])
        )
    }

    @Test func challengesAreSingleUseExpireAndBelongToOneUser() async throws {
        let h = try WebAuthnHarness()
        let alice = try await h.user("alice")
        let bob = try await h.user("bob")
        let key = try SoftAuthenticator(.es256)
        // A challenge never issued.
        await #expect(
            webAuthnError {
                try await h.service.finishRegistration(
                    userId: alice,
                    name: "k",
                    credentialJSON: try await key.register(challenge: try Crypto.randomBytes(32))
                )
            }
                == .unknownChallenge
        )
        // Issued to bob, used by alice.
        let forBob = try await h.service.beginRegistration(userId: bob, userName: "bob")
        await #expect(
            webAuthnError {
                try await h.service.finishRegistration(
                    userId: alice,
                    name: "k",
                    credentialJSON: try key.register(challenge: forBob.challenge)
                )
            }
                == .challengeMismatch
        )
        // That attempt consumed it.
        await #expect(
            webAuthnError {
                try await h.service.finishRegistration(
                    userId: bob,
                    name: "k",
                    credentialJSON: try key.register(challenge: forBob.challenge)
                )
            }
                == .unknownChallenge
        )
        // Expired after five minutes.
        let o = try await h.service.beginRegistration(userId: alice, userName: "alice")
        h.manual.advance(300)
        await #expect(
            webAuthnError {
                try await h.service.finishRegistration(
                    userId: alice,
                    name: "k",
                    credentialJSON: try key.register(challenge: o.challenge)
                )
            }
                == .challengeExpired
        )
        // An assertion challenge is not a registration challenge.
        try await h.register(try SoftAuthenticator(.eddsa), userId: alice)
        let a = try await h.service.beginAssertion(userId: alice, purpose: .signIn)
        await #expect(
            webAuthnError {
                try await h.service.finishRegistration(
                    userId: alice,
                    name: "k",
                    credentialJSON: try key.register(challenge: a.challenge)
                )
            }
                == .challengeMismatch
        )
    }

    @Test func badCredentialJSONIsAnInvalidRequest() async throws {
        let h = try WebAuthnHarness()
        let uid = try await h.user("alice")
        for json in [
            "", "[]", "{\"type\":\"public-key\"}",
            "{\"id\":\"AA\",\"rawId\":\"AB\",\"type\":\"public-key\",\"response\":{}}",
            "{\"id\":\"AA\",\"rawId\":\"AA\",\"type\":\"other\",\"response\":{}}",
            "{\"id\":\"AA\",\"rawId\":\"AA\",\"type\":\"public-key\",\"type\":\"public-key\",\"response\":{}}",
            "{\"id\":\"A+\",\"rawId\":\"A+\",\"type\":\"public-key\",\"response\":{}}",
        ] {
            let e = await webAuthnError {
                try await h.service.finishRegistration(userId: uid, name: "k", credentialJSON: json)
            }
            #expect(e == .invalidRequest, "\(json)")
        }
        let key = try SoftAuthenticator(.es256)
        let o = try await h.service.beginRegistration(userId: uid, userName: "alice")
        await #expect(
            webAuthnError {
                try await h.service.finishRegistration(
                    userId: uid,
                    name: "\u{7}bell",
                    credentialJSON: try key.register(challenge: o.challenge)
                )
            }
                == .invalidRequest
        )
        var k = SoftAuthenticator.Knobs()
        k.clientDataJSON = Array("{\"type\":\"webauthn.create\",\"type\":\"x\"}".utf8)
        let o2 = try await h.service.beginRegistration(userId: uid, userName: "alice")
        await #expect(
            webAuthnError {
                try await h.service.finishRegistration(
                    userId: uid,
                    name: "k",
                    credentialJSON: try key.register(challenge: o2.challenge, knobs: k)
                )
            }
                == .invalidClientData
        )
    }

    @Test func renameAndRemove() async throws {
        let h = try WebAuthnHarness()
        let alice = try await h.user("alice")
        let bob = try await h.user("bob")
        let info = try await h.register(try SoftAuthenticator(.es256), userId: alice, name: "old")
        try await h.service.rename(userId: alice, factorId: info.factorId, name: "new")
        await #expect(try h.service.listCredentials(userId: alice).map(\.name) == ["new"])
        await #expect(
            webAuthnError { try await h.service.rename(userId: bob, factorId: info.factorId, name: "x") } == .notFound
        )
        await #expect(webAuthnError { try await h.service.remove(userId: bob, factorId: info.factorId) } == .notFound)
        try await h.service.remove(userId: alice, factorId: info.factorId)
        await #expect(try h.service.listCredentials(userId: alice).isEmpty)
        await #expect(try h.human.store.factor(id: info.factorId) == nil)
        await #expect(try h.events.last?.action == "factor.remove")
        // Removing the factor through FactorService cascades to the credential too.
        let other = try await h.register(try SoftAuthenticator(.eddsa), userId: alice)
        try await h.human.factors.remove(userId: alice, factorId: other.factorId, actor: "root")
        await #expect(try h.human.store.webAuthnCredential(factorId: other.factorId) == nil)
    }
}
