import Foundation
import StagepassBroker
import StagepassJOSE
import Testing

@Suite("Keys: interop with the openssl command line")
struct KeysInteropTests {
    /// `openssl pkey` reads our encrypted PKCS#8 files with the passphrase (and not without it).
    @Test func opensslReadsOurEncryptedKeys() async throws {
        let dir = try TempDir()
        let store = try makeStore(dir.keys, clock: ManualClock(1_700_000_000))
        let r = try await store.rotate()
        let path = "\(dir.keys)/\(r.activeKid).pem"
        let ok = try run(opensslPath, ["pkey", "-in", path, "-passin", "pass:correct horse", "-noout"])
        #expect(ok.status == 0, "openssl pkey: \(ok.stderr)")
        let bad = try run(opensslPath, ["pkey", "-in", path, "-passin", "pass:wrong", "-noout"])
        #expect(bad.status != 0)
        // openssl derives the same public key: its SPKI matches ours.
        let pub = dir.path + "/pub.pem"
        #expect(
            try run(opensslPath, ["pkey", "-in", path, "-passin", "pass:correct horse", "-pubout", "-out", pub]).status
                == 0
        )
        let theirs = try PublicKey(spkiPEM: String(contentsOfFile: pub, encoding: .utf8))
        let jwk = try JWK(publicKey: theirs, alg: .ES256)
        #expect(try jwk.thumbprint() == r.activeKid)
    }

    /// Keys made by `openssl genpkey` (unencrypted, or encrypted with the store passphrase) import, are re-written
    /// encrypted, become active on the next rotation, sign tokens, and those verify against the JWKS.
    @Test(arguments: [
        (["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], "ES256", false),
        (["-algorithm", "ED25519"], "EdDSA", false),
        (["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"], "RS256", false),
        (["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"], "PS256", true),
        (["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], "ES256", true),
    ])
    func genpkeyKeysImportSignAndVerify(args: [String], alg: String, encrypted: Bool) async throws {
        let dir = try TempDir()
        let clock = ManualClock(1_700_000_000)
        let store = try makeStore(dir.keys, clock: clock)
        try await store.rotate()
        let file = dir.path + "/external.pem"
        var gen = ["genpkey"] + args + ["-out", file]
        if encrypted { gen += ["-aes-256-cbc", "-pass", "pass:correct horse"] }
        let made = try run(opensslPath, gen)
        try #require(made.status == 0, "openssl genpkey: \(made.stderr)")
        let pem = try String(contentsOfFile: file, encoding: .utf8)
        #expect(pem.contains("ENCRYPTED") == encrypted)

        let algorithm = try JWSAlgorithm(name: alg)
        let kid = try await store.importKey(pem: pem, alg: algorithm.keyType == .rsa ? algorithm : nil)
        let stored = try String(contentsOfFile: "\(dir.keys)/\(kid).pem", encoding: .utf8)
        #expect(stored.hasPrefix("-----BEGIN ENCRYPTED PRIVATE KEY-----"), "re-written encrypted")
        #expect(try await store.jwks().keys.contains { $0.kid == kid && $0.alg == alg }, "published as next")

        clock.advance(KeySchedule.standard.prePublication)
        let r = try await store.rotate()
        #expect(r.activeKid == kid)
        let token = try await signToken(store, now: clock.clock.now(), lifetime: 300)
        #expect(verifies(token, against: try await store.jwks()))
        // A fresh process (new store) loads the imported key too.
        let reopened = try makeStore(dir.keys, clock: clock)
        #expect(try await reopened.signingKey().kid == kid)
    }

    @Test func importRefusals() async throws {
        let dir = try TempDir()
        let store = try makeStore(dir.keys, clock: ManualClock(1_700_000_000))
        try await store.rotate()
        let before = try snapshot(dir.keys)
        let other = try PrivateKey.generate(for: .ES256).pkcs8PEM(passphrase: "another passphrase")
        await #expect(throws: KeyStoreError.wrongPassphrase) { try await store.importKey(pem: other) }
        let plain = try PrivateKey.generate(for: .ES256).pkcs8PEM(passphrase: nil)
        await #expect(throws: KeyStoreError.corruptKeyFile) {
            try await store.importKey(pem: String(plain.prefix(plain.count / 2)))
        }
        await #expect(throws: KeyStoreError.unsupportedKey) { try await store.importKey(pem: plain, alg: .EdDSA) }
        #expect(try snapshot(dir.keys) == before)
        let kid = try await store.importKey(pem: plain)
        await #expect(throws: KeyStoreError.duplicateKey) { try await store.importKey(pem: plain) }
        #expect(await store.keys().first { $0.kid == kid }?.state == .next)
    }

    /// Importing into an empty store makes the key active (and generates a next key).
    @Test func importIntoAnEmptyStoreActivates() async throws {
        let dir = try TempDir()
        let store = try makeStore(dir.keys, clock: ManualClock(1_700_000_000))
        let pem = try PrivateKey.generate(for: .EdDSA).pkcs8PEM(passphrase: nil)
        let kid = try await store.importKey(pem: pem)
        #expect(try await store.signingKey().kid == kid)
        #expect(await store.keys().map(\.state) == [.active, .next])
    }
}
