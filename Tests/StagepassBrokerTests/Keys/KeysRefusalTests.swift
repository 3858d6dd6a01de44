import Foundation
import StagepassBroker
import StagepassJOSE
import Testing

@Suite("Keys: refused inputs")
struct KeysRefusalTests {
    /// A store with an active and a next key; returns the directory and the keys' kids.
    func prepared() async throws -> (TempDir, active: String, next: String) {
        let dir = try TempDir()
        let store = try makeStore(dir.keys, clock: ManualClock(1_700_000_000))
        let r = try await store.rotate()
        return (dir, r.activeKid, r.nextKid)
    }

    /// Opening fails with `expected`, and neither opening nor a change through an already-open store writes.
    func expectRefusal(
        _ dir: TempDir,
        _ expected: KeyStoreError,
        passphrase: KeyPassphrase = .passphrase("correct horse"),
        openStore: KeyStore? = nil
    ) async throws {
        let before = try snapshot(dir.keys)
        #expect(throws: expected) {
            try makeStore(dir.keys, clock: ManualClock(1_800_000_000), passphrase: passphrase)
        }
        if let openStore {
            await #expect(throws: expected) { try await openStore.rotate(force: true) }
            await #expect(throws: expected) { try await openStore.tick(now: 1_800_000_000) }
        }
        #expect(try snapshot(dir.keys) == before, "nothing overwritten")
    }

    @Test func wrongPassphrase() async throws {
        let (dir, _, _) = try await prepared()
        try await expectRefusal(dir, .wrongPassphrase, passphrase: .passphrase("Tr0ub4dor&3"))
        try await expectRefusal(dir, .wrongPassphrase, passphrase: .insecureUnencrypted)
    }

    @Test func truncatedPEM() async throws {
        let (dir, active, _) = try await prepared()
        let open = try makeStore(dir.keys, clock: ManualClock(1_700_000_000))
        let path = "\(dir.keys)/\(active).pem"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: path))
        #expect(chmod(path, 0o600) == 0)
        try await expectRefusal(dir, .corruptKeyFile, openStore: open)
        let error = #expect(throws: KeyStoreError.self) { try makeStore(dir.keys, clock: ManualClock(0)) }
        #expect(error?.code == "corrupt_key_file")
        #expect(error?.detail.contains(active) == true, "the message names the file")
    }

    @Test func keyringNamingAMissingFile() async throws {
        let (dir, _, next) = try await prepared()
        let open = try makeStore(dir.keys, clock: ManualClock(1_700_000_000))
        try FileManager.default.removeItem(atPath: "\(dir.keys)/\(next).pem")
        try await expectRefusal(dir, .missingKeyFile, openStore: open)
    }

    @Test func worldReadableKeyFile() async throws {
        let (dir, active, _) = try await prepared()
        let open = try makeStore(dir.keys, clock: ManualClock(1_700_000_000))
        #expect(chmod("\(dir.keys)/\(active).pem", 0o644) == 0)
        try await expectRefusal(dir, .insecurePermissions, openStore: open)
    }

    @Test func corruptKeyring() async throws {
        let (dir, _, _) = try await prepared()
        try Data("{\"format\":\"stagepass-keyring/1\",\"keys\":[".utf8)
            .write(to: URL(fileURLWithPath: "\(dir.keys)/keyring.json"))
        try await expectRefusal(dir, .corruptKeyring)
    }

    @Test func keyFilesAreEncryptedWithMode0600() async throws {
        let (dir, active, next) = try await prepared()
        for kid in [active, next] {
            let path = "\(dir.keys)/\(kid).pem"
            let text = try String(contentsOfFile: path, encoding: .utf8)
            #expect(text.hasPrefix("-----BEGIN ENCRYPTED PRIVATE KEY-----"))
            let mode = try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
            #expect(mode == 0o600)
        }
    }

    @Test func passphraseRules() async throws {
        #expect(throws: KeyStoreError.missingPassphrase) {
            try KeyPassphrase.resolve(passphraseFile: nil, environment: [:], insecureDev: false)
        }
        #expect(throws: KeyStoreError.missingPassphrase) {
            try KeyPassphrase.resolve(
                passphraseFile: nil,
                environment: ["STAGEPASS_KEY_PASSPHRASE": ""],
                insecureDev: false
            )
        }
        #expect(
            try KeyPassphrase.resolve(
                passphraseFile: nil,
                environment: ["STAGEPASS_KEY_PASSPHRASE": "x"],
                insecureDev: false
            ).encrypts
        )
        #expect(try !KeyPassphrase.resolve(passphraseFile: nil, environment: [:], insecureDev: true).encrypts)
        let dir = try TempDir()
        let file = dir.path + "/pass"
        try Data("correct horse\n".utf8).write(to: URL(fileURLWithPath: file))
        #expect(chmod(file, 0o644) == 0)
        #expect(throws: KeyStoreError.insecurePermissions) {
            try KeyPassphrase.resolve(passphraseFile: file, environment: [:], insecureDev: false)
        }
        #expect(chmod(file, 0o600) == 0)
        let p = try KeyPassphrase.resolve(
            passphraseFile: file,
            environment: ["STAGEPASS_KEY_PASSPHRASE": "other"],
            insecureDev: false
        )
        #expect(!"\(p)".contains("correct"), "the passphrase never prints")
        #expect(throws: KeyStoreError.unreadablePassphraseFile) {
            try KeyPassphrase.resolve(passphraseFile: dir.path + "/missing", environment: [:], insecureDev: false)
        }
    }

    @Test func passphraseFileNewlineIsStripped() async throws {
        let (dir, _, _) = try await prepared()
        let file = dir.path + "/pass"
        try Data("correct horse\n".utf8).write(to: URL(fileURLWithPath: file))
        #expect(chmod(file, 0o600) == 0)
        let p = try KeyPassphrase.resolve(passphraseFile: file, environment: [:], insecureDev: false)
        _ = try makeStore(dir.keys, clock: ManualClock(1_700_000_000), passphrase: p)
    }

    @Test func insecureDevKeysAreStoredUnencrypted() async throws {
        let dir = try TempDir()
        let store = try makeStore(dir.keys, clock: ManualClock(1_700_000_000), passphrase: .insecureUnencrypted)
        let r = try await store.rotate()
        let text = try String(contentsOfFile: "\(dir.keys)/\(r.activeKid).pem", encoding: .utf8)
        #expect(text.hasPrefix("-----BEGIN PRIVATE KEY-----"))
    }
}
