import Foundation
import StagepassJOSE
import Testing

@testable import StagepassBroker

#if canImport(Glibc)
import Glibc
#endif

/// The permission bits of `path` (stat, not following a final link).
func modeOf(_ path: String) throws -> Int {
    var st = stat()
    guard lstat(path, &st) == 0 else { throw SecretFileError.ioFailure }
    return Int(st.st_mode & 0o7777)
}

@Suite("Secret files: mode 0600 from creation, refused when others can read them")
struct SecretFileTests {
    @Test func writeCreatesMode0600AndReplacesAtomically() async throws {
        let dir = try TempDir()
        let path = dir.path + "/secret"
        try SecretFile.write(Array("one\n".utf8), to: path)
        #expect(try modeOf(path) == 0o600)
        #expect(try SecretFile.read(path) == Array("one\n".utf8))
        try SecretFile.write(Array("two\n".utf8), to: path)
        #expect(try modeOf(path) == 0o600)
        #expect(try SecretFile.read(path) == Array("two\n".utf8))
        // No temp file is left beside it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["secret"])
    }

    @Test func createOnlyWriteNeverReplaces() async throws {
        let dir = try TempDir()
        let path = dir.path + "/master.key"
        try SecretFile.write(Array("first".utf8), to: path, replace: false)
        #expect(throws: SecretFileError.exists) { try SecretFile.write(Array("second".utf8), to: path, replace: false) }
        #expect(try SecretFile.read(path) == Array("first".utf8))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["master.key"])
    }

    @Test func aBareFileNameIsWrittenInTheCurrentDirectory() async throws {
        let dir = try TempDir()
        #expect(SecretFile.split("s.json") == (".", "s.json"))
        #expect(SecretFile.split(dir.path + "/s.json") == (dir.path, "s.json"))
    }

    @Test(arguments: [0o644, 0o640, 0o604, 0o660, 0o606])
    func aFileOthersCanUseIsRefused(mode: Int) throws {
        let dir = try TempDir()
        let path = dir.path + "/secret"
        try SecretFile.write(Array("x".utf8), to: path)
        #expect(chmod(path, mode_t(mode)) == 0)
        #expect(throws: SecretFileError.insecurePermissions) { try SecretFile.read(path) }
    }

    @Test func aMissingFileIsNilAndADirectoryIsRefused() async throws {
        let dir = try TempDir()
        #expect(try SecretFile.read(dir.path + "/absent") == nil)
        #expect(chmod(dir.path, 0o700) == 0)
        #expect(throws: SecretFileError.notARegularFile) { try SecretFile.read(dir.path) }
    }

    @Test func privateDirectoryIsCreated0700AndAnOpenOneIsTightened() async throws {
        let dir = try TempDir()
        let fresh = dir.path + "/a/b/data"
        try SecretFile.ensurePrivateDirectory(fresh)
        #expect(try modeOf(fresh) == 0o700)
        let open = dir.path + "/open"
        #expect(mkdir(open, 0o755) == 0)
        #expect(chmod(open, 0o755) == 0)
        try SecretFile.ensurePrivateDirectory(open)
        #expect(try modeOf(open) == 0o700)
        // A shared directory such as /tmp is refused, never tightened.
        let shared = dir.path + "/shared"
        #expect(mkdir(shared, 0o700) == 0 && chmod(shared, 0o1777) == 0)
        #expect(throws: SecretFileError.insecurePermissions) { try SecretFile.ensurePrivateDirectory(shared) }
        #expect(try modeOf(shared) == 0o1777)
    }

    @Test func privateFileIsCreated0600WithoutTouchingContent() async throws {
        let dir = try TempDir()
        let path = dir.path + "/db"
        try SecretFile.ensurePrivateFile(path)
        #expect(try modeOf(path) == 0o600)
        #expect(FileManager.default.createFile(atPath: dir.path + "/old", contents: Data("keep".utf8)))
        #expect(chmod(dir.path + "/old", 0o644) == 0)
        try SecretFile.ensurePrivateFile(dir.path + "/old")
        #expect(try modeOf(dir.path + "/old") == 0o600)
        #expect(FileManager.default.contents(atPath: dir.path + "/old") == Data("keep".utf8))
    }

    // MARK: The broker's data directory

    /// Every secret file of a fresh data directory has its mode right after creation: the directory 0700, the master
    /// key, the database and its WAL files 0600.
    @Test func aFreshDataDirectoryHoldsOnlyPrivateFiles() async throws {
        let base = try TempDir()
        let dir = base.path + "/data"
        let broker = try HumanBroker.open(dataDirectory: dir, hasherParameters: .testing, environment: [:])
        _ = try await broker.bootstrapIfEmpty()
        #expect(try modeOf(dir) == 0o700)
        #expect(try modeOf(HumanBroker.masterKeyPath(dir)) == 0o600)
        let db = HumanBroker.databasePath(dir)
        #expect(try modeOf(db) == 0o600)
        for suffix in ["-wal", "-shm"] where FileManager.default.fileExists(atPath: db + suffix) {
            #expect(try modeOf(db + suffix) == 0o600, "\(suffix)")
        }
        #expect(FileManager.default.fileExists(atPath: db + "-wal"))
    }

    /// A data directory and database left open to others by an earlier version are tightened on open.
    @Test func anOpenDataDirectoryIsTightened() async throws {
        let base = try TempDir()
        let dir = base.path + "/data"
        _ = try HumanBroker.open(dataDirectory: dir, hasherParameters: .testing, environment: [:])
        let db = HumanBroker.databasePath(dir)
        #expect(chmod(dir, 0o755) == 0 && chmod(db, 0o644) == 0)
        _ = try HumanBroker.open(dataDirectory: dir, hasherParameters: .testing, environment: [:])
        #expect(try modeOf(dir) == 0o700)
        #expect(try modeOf(db) == 0o600)
    }

    @Test func aWorldReadableMasterKeyIsRefused() async throws {
        let base = try TempDir()
        let dir = base.path + "/data"
        _ = try HumanBroker.open(dataDirectory: dir, hasherParameters: .testing, environment: [:])
        let keyFile = HumanBroker.masterKeyPath(dir)
        #expect(chmod(keyFile, 0o644) == 0)
        do {
            _ = try MasterKey.load(environment: [:], keyFile: keyFile)
            Issue.record("a world-readable master key was loaded")
        } catch let e as BrokerError {
            #expect(e == .masterKey)
            #expect(e.detail.contains("chmod 600"), "\(e.detail)")
        }
        #expect(throws: BrokerError.masterKey) {
            try HumanBroker.open(dataDirectory: dir, hasherParameters: .testing, environment: [:])
        }
        // Refused, not replaced: the key that seals the factor secrets is still there.
        #expect(FileManager.default.fileExists(atPath: keyFile))
    }

    @Test func aWorldReadablePassphraseFileIsRefused() async throws {
        let dir = try TempDir()
        let path = dir.path + "/key-passphrase"
        try SecretFile.write(Array("pass\n".utf8), to: path)
        #expect(try KeyPassphrase.resolve(passphraseFile: path, environment: [:], insecureDev: false).encrypts)
        #expect(chmod(path, 0o644) == 0)
        #expect(throws: KeyStoreError.insecurePermissions) {
            try KeyPassphrase.resolve(passphraseFile: path, environment: [:], insecureDev: false)
        }
    }
}
