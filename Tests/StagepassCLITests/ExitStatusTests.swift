import Foundation
import Testing

/// A scratch directory the CLI runs in (working directory and HOME), removed when the value is deinitialized.
final class Scratch {
    let path: String

    init() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("stagepass-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        path = url.path
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// The built `stagepass` binary: `$STAGEPASS_BIN`, else `<package root>/.build/debug/stagepass`.
func stagepassBinary() -> String {
    if let bin = ProcessInfo.processInfo.environment["STAGEPASS_BIN"] { return bin }
    // #filePath = <root>/Tests/StagepassCLITests/ExitStatusTests.swift
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    return root.appendingPathComponent(".build/debug/stagepass").path
}

/// Runs the binary in `scratch` (working directory and HOME) with none of the caller's variables the CLI reads.
func runCLI(_ arguments: [String], in scratch: Scratch) throws -> (status: Int32, stdout: String, stderr: String) {
    let bin = stagepassBinary()
    try #require(FileManager.default.isExecutableFile(atPath: bin), "build the CLI first (swift build): \(bin)")
    let p = Process()
    p.executableURL = URL(fileURLWithPath: bin)
    p.arguments = arguments
    p.currentDirectoryURL = URL(fileURLWithPath: scratch.path)
    var env = ProcessInfo.processInfo.environment.filter { key, _ in
        !key.hasPrefix("STAGEPASS_")
            && !["XDG_CONFIG_HOME", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILD_USER_ID"].contains(key)
    }
    env["HOME"] = scratch.path
    p.environment = env
    // Output goes to files, so a chatty child can never block on a full pipe.
    let outPath = scratch.path + "/.stdout-\(UUID().uuidString)"
    let errPath = scratch.path + "/.stderr-\(UUID().uuidString)"
    FileManager.default.createFile(atPath: outPath, contents: nil)
    FileManager.default.createFile(atPath: errPath, contents: nil)
    let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    try out.close()
    try err.close()
    let stdout = try String(contentsOfFile: outPath, encoding: .utf8)
    let stderr = try String(contentsOfFile: errPath, encoding: .utf8)
    return (p.terminationStatus, stdout, stderr)
}

/// The exit statuses of the binary (`Stagepass.main`): usage errors are 2, not swift-argument-parser's 64.
@Suite("CLI: exit status")
struct ExitStatusTests {
    @Test func helpExitsZero() throws {
        let scratch = try Scratch()
        let r = try runCLI(["--help"], in: scratch)
        #expect(r.status == 0)
        #expect(r.stdout.contains("USAGE: stagepass <subcommand>"))
    }

    @Test func aValidationErrorExitsTwo() throws {
        let scratch = try Scratch()
        let r = try runCLI(["revoke", "--jti", "j1", "--kid", "k1"], in: scratch)
        #expect(r.status == 2)
        #expect(r.stderr.contains("name exactly one of --jti, --session, --user, --kid"))
        let v = try runCLI(
            ["verify", "--jwks", "j.json", "--issuer", "i", "--audience", "a", "--leeway=-1", "tok"],
            in: scratch
        )
        #expect(v.status == 2)
        #expect(v.stderr.contains("--leeway must be >= 0"))
    }

    /// Absurd verifier durations are usage errors (exit 2) before any file is read: a ten-year leeway would accept a
    /// token that expired ten years ago, a negative status age would switch the fail-closed limit off.
    @Test(arguments: [["--leeway", "999999999"], ["--status-max-age=-1"], ["--max-lifetime", "315360000"]])
    func absurdVerifierDurationsExitTwo(option: [String]) throws {
        let scratch = try Scratch()
        let r = try runCLI(
            ["verify", "--jwks", "j.json", "--issuer", "i", "--audience", "a"] + option + ["tok"],
            in: scratch
        )
        #expect(r.status == 2)
        #expect(r.stderr.contains(option[0].split(separator: "=")[0]), "\(r.stderr)")
    }

    @Test func anUnknownCommandExitsTwo() throws {
        let scratch = try Scratch()
        let r = try runCLI(["deploy"], in: scratch)
        #expect(r.status == 2)
        #expect(r.stderr.contains("deploy"))
    }

    /// The saved session's default place follows HOME: here the scratch directory, never the caller's.
    @Test func theDefaultSessionFileIsUnderHome() throws {
        let scratch = try Scratch()
        let r = try runCLI(["logout"], in: scratch)
        #expect(r.status == 2)
        #expect(r.stderr.contains(scratch.path + "/.config/stagepass/session.json"), "\(r.stderr)")
    }
}
