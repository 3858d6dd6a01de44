import Foundation
import StagepassBroker
import StagepassJOSE
import Testing

/// Kills the real `stagepass` binary (`STAGEPASS_CRASH_AT=<step>` → `_exit(137)`) at each step of a rotation and
/// of a compromise, then checks the keyring loads with exactly one active key and the next run repairs leftovers.
@Suite("Keys: crash safety")
struct KeysCrashTests {
    static let rotationSteps = [
        "key-temp-written", "key-renamed", "key-committed",
        "keyring-temp-written", "keyring-renamed", "keyring-committed",
    ]
    static let destroySteps = ["destroy-overwritten", "destroy-unlinked"]
    static let passphrase = "crash test passphrase"

    /// A store whose keys were made two days ago (so the `next` key is past the standard pre-publication window).
    func prepared() async throws -> (TempDir, RotationResult) {
        let dir = try TempDir()
        let twoDaysAgo = Int64(Date().timeIntervalSince1970) - 2 * 86_400
        let store = try makeStore(dir.keys, clock: ManualClock(twoDaysAgo), passphrase: .passphrase(Self.passphrase))
        return (dir, try await store.rotate())
    }

    func reopen(_ dir: TempDir) throws -> KeyStore {
        try KeyStore(
            configuration: KeyStoreConfiguration(directory: dir.keys, passphrase: .passphrase(Self.passphrase))
        )
    }

    /// Runs `stagepass keys VERB --data DIR/data ARGS…` in `dir`, with the store passphrase in the environment.
    func cli(_ dir: TempDir, _ args: [String], crashAt: String? = nil) throws -> (status: Int32, stderr: String) {
        let bin = stagepassBinary()
        try #require(FileManager.default.isExecutableFile(atPath: bin), "build the CLI first (swift build): \(bin)")
        var env = ["STAGEPASS_KEY_PASSPHRASE": Self.passphrase]
        if let crashAt { env["STAGEPASS_CRASH_AT"] = crashAt }
        return try run(
            bin,
            Array(args.prefix(2)) + ["--data", dir.data] + args.dropFirst(2),
            environment: env,
            in: dir.path
        )
    }

    @Test(arguments: rotationSteps)
    func rotationKilledAtStepLeavesALoadableKeyring(step: String) async throws {
        let (dir, before) = try await prepared()
        let crashed = try cli(dir, ["keys", "rotate", "--keys", dir.keys], crashAt: step)
        #expect(crashed.status == 137, "the process died at \(step): \(crashed.stderr)")

        let store = try reopen(dir)
        let infos = await store.keys()
        #expect(infos.filter { $0.state == .active }.count == 1)
        let active = try await store.signingKey().kid
        let committed = step == "keyring-renamed" || step == "keyring-committed"
        #expect(
            active == (committed ? before.nextKid : before.activeKid),
            "old state before the keyring rename, new after"
        )
        #expect(try await store.jwks().keys.contains { $0.kid == active })

        // The next run repairs leftovers (temp files, orphaned key files) and works.
        let again = try cli(dir, ["keys", "rotate", "--force", "--keys", dir.keys])
        #expect(again.status == 0, "\(again.stderr)")
        let repaired = try reopen(dir)
        #expect(await repaired.keys().filter { $0.state == .active }.count == 1)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.keys)
        #expect(!names.contains { $0.hasSuffix(".tmp") }, "no temp files left")
        let published = Set(await repaired.keys().filter { $0.state.isPublished }.map { "\($0.kid).pem" })
        #expect(Set(names.filter { $0.hasSuffix(".pem") }) == published, "no orphaned key files left")
    }

    @Test(arguments: destroySteps)
    func compromiseKilledWhileDestroyingLeavesALoadableKeyring(step: String) async throws {
        let (dir, before) = try await prepared()
        // A kid is base64url and may begin with "-": after `--` it is never read as an option.
        let crashed = try cli(dir, ["keys", "compromise", "--keys", dir.keys, "--", before.activeKid], crashAt: step)
        #expect(crashed.status == 137, "the process died at \(step): \(crashed.stderr)")

        let store = try reopen(dir)
        #expect(await store.keys().filter { $0.state == .active }.count == 1)
        #expect(try await store.signingKey().kid == before.nextKid)
        #expect(try await !store.jwks().keys.contains { $0.kid == before.activeKid }, "unpublished at once")

        let again = try cli(dir, ["keys", "rotate", "--force", "--keys", dir.keys])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "\(dir.keys)/\(before.activeKid).pem"), "destroyed on repair")
    }

    /// Configuration errors exit 2 with a message naming the fix.
    @Test func cliConfigurationErrorsExit2() async throws {
        let dir = try TempDir()
        let bin = stagepassBinary()
        try #require(FileManager.default.isExecutableFile(atPath: bin))
        // No passphrase anywhere: not in the environment, and no generated one in the data directory. The CLI runs in
        // the test's directory, so a `./.stagepass/key-passphrase` that `serve` left in the checkout does not count.
        let noPass = try run(bin, ["keys", "list", "--keys", dir.keys, "--data", dir.data], in: dir.path)
        #expect(noPass.status == 2)
        #expect(noPass.stderr.contains("STAGEPASS_KEY_PASSPHRASE"))
        let badAlg = try cli(dir, ["keys", "rotate", "--alg", "HS256", "--keys", dir.keys])
        #expect(badAlg.status == 2)
        #expect(badAlg.stderr.contains("unknown algorithm"))
    }
}
