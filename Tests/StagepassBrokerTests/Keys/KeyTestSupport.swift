import Foundation
import StagepassBroker
import StagepassJOSE
import Testing

/// A fresh temporary directory, removed when the value is deinitialized.
final class TempDir {
    let path: String

    init() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("stagepass-keys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        path = base.path
    }

    /// The key store directory inside (created by the store itself).
    var keys: String { path + "/Keys" }

    /// A broker data directory inside (none exists until something creates it).
    var data: String { path + "/data" }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Every file in `dir` (except the lock file) and its bytes, to show that nothing was overwritten.
func snapshot(_ dir: String) throws -> [String: Data] {
    var out: [String: Data] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: dir) where name != ".lock" {
        out[name] = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))
    }
    return out
}

/// A store over `dir` with a manual clock and an in-memory audit sink.
func makeStore(
    _ dir: String,
    clock: ManualClock,
    passphrase: KeyPassphrase = .passphrase("correct horse"),
    schedule: KeySchedule = .standard,
    audit: MemoryAuditSink = MemoryAuditSink()
) throws -> KeyStore {
    try KeyStore(
        configuration: KeyStoreConfiguration(
            directory: dir,
            passphrase: passphrase,
            schedule: schedule,
            clock: clock.clock,
            audit: audit,
            actor: "test",
            rsaBits: 2048
        )
    )
}

/// Verifies a compact JWS the way an offline verifier would with a cached JWKS: the `kid` must be in `jwks`, the
/// header `alg` must equal the JWK's `alg`, and the signature must verify with that key.
func verifies(_ token: String, against jwks: JWKS) -> Bool {
    let parts = token.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
    guard parts.count == 3,
        let headerBytes = try? Base64URL.decode(parts[0]),
        let header = try? JSONValue.parse(String(decoding: headerBytes, as: UTF8.self)),
        let kid = header["kid"]?.stringValue, let algName = header["alg"]?.stringValue,
        let jwk = jwks.keys.first(where: { $0.kid == kid }), jwk.alg == algName, let alg = jwk.algorithm,
        let key = try? jwk.publicKey(), let sig = try? Base64URL.decode(parts[2])
    else { return false }
    return key.verify(alg, signingInput: Array((parts[0] + "." + parts[1]).utf8), signature: sig)
}

/// Signs a token with the store's active key, `kid` in the header (RFC 7515 §4.1.4).
func signToken(_ store: KeyStore, now: Int64, lifetime: Int64) async throws -> String {
    let key = try await store.signingKey()
    return try JWS.sign(
        claims: .object(["iat": .int(now), "exp": .int(now + lifetime), "sub": .string("test")]),
        header: ["kid": .string(key.kid), "typ": .string("at+jwt")],
        key: key.privateKey,
        alg: key.alg
    )
}

/// Runs a program; returns its exit status and standard error.
///
/// The program sees none of the caller's variables `stagepass` reads (every `STAGEPASS_*` setting, and where the
/// saved session lives), only `environment`. With `directory`, it runs there with HOME there too, so defaults such as
/// `./.stagepass` and `Keys` resolve inside the test's own directory, never in the checkout.
@discardableResult
func run(
    _ executable: String,
    _ arguments: [String],
    environment: [String: String] = [:],
    in directory: String? = nil
)
    throws -> (status: Int32, stderr: String)
{
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    var env = ProcessInfo.processInfo.environment.filter { key, _ in
        !key.hasPrefix("STAGEPASS_") && key != "XDG_CONFIG_HOME"
    }
    if let directory {
        p.currentDirectoryURL = URL(fileURLWithPath: directory)
        env["HOME"] = directory
    }
    for (k, v) in environment { env[k] = v }
    p.environment = env
    let err = Pipe()
    p.standardError = err
    p.standardOutput = FileHandle.nullDevice
    try p.run()
    let data = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// The path of `openssl`.
let opensslPath =
    ["/usr/bin/openssl", "/usr/local/bin/openssl"].first { FileManager.default.isExecutableFile(atPath: $0) }
    ?? "/usr/bin/openssl"

/// The built `stagepass` binary: `$STAGEPASS_BIN`, else `<package root>/.build/debug/stagepass`.
func stagepassBinary() -> String {
    if let bin = ProcessInfo.processInfo.environment["STAGEPASS_BIN"] { return bin }
    // #filePath = <root>/Tests/StagepassBrokerTests/Keys/KeyTestSupport.swift
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    return root.appendingPathComponent(".build/debug/stagepass").path
}
