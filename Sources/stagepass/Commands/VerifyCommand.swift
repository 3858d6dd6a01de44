import ArgumentParser
import Foundation
import StagepassJOSE
import StagepassVerify
import StagepassVerifyFetch

/// `stagepass verify`: the offline check deploy scripts depend on (Specs/token-profile.md, "CLI").
/// Exit 0: claims JSON on stdout. Exit 1: `{"error":…,"detail":…}` on stderr. Exit 2: usage/configuration error.
struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verify a Stagepass token offline against a JWKS (and optionally a status list)."
    )

    @Option(help: "JWKS file path or http(s) URL.") var jwks: String
    @Option(help: "The only accepted issuer.") var issuer: String
    @Option(help: "An accepted audience (repeatable).") var audience: [String]
    @Option(help: "Required role (repeatable: any of).") var role: [String] = []
    @Option(help: "Required stage.") var stage: String?
    @Option(help: "Pattern the token's client_id must match ('*' = any run of characters).") var pipeline: String?
    @Option(name: .customLong("status-list"), help: "Status list token file path or http(s) URL.") var statusList:
        String?
    @Option(
        name: .customLong("status-max-age"),
        help: "Fail closed when the status list is older than this (seconds, 1...86400)."
    )
    var statusMaxAge: Int64?
    @Option(help: "Clock skew tolerated, seconds (0...300).") var leeway: Int64 = 30
    @Option(name: .customLong("max-lifetime"), help: "Longest accepted exp - iat, seconds (1...86400).")
    var maxLifetime: Int64 = 3600
    @Option(help: "Verify as of this unix time (testing).") var now: Int64?
    @Option(
        name: .customLong("dpop-proof"),
        help:
            "The request's DPoP header: the token was presented with the DPoP scheme (RFC 9449; needs --method, --url)."
    )
    var dpopProof: String?
    @Option(help: "The request's HTTP method (with --dpop-proof).") var method: String?
    @Option(help: "The request's URL (with --dpop-proof; query and fragment are ignored).") var url: String?
    @Option(
        name: .customLong("dpop-replay-file"),
        help: """
            The replay record shared by every invocation on this host (created 0600; required with --dpop-proof): \
            a proof accepted once is dpop_replayed afterwards.
            """
    )
    var dpopReplayFile: String?
    @Argument(help: "The token; read from standard input when absent.") var token: String?

    func validate() throws {
        // The bounds of VerifierLimits (Specs/token-profile.md, "Verifier bounds"): a huge leeway or lifetime would
        // accept tokens long expired; a non-positive status age would switch the fail-closed limit off.
        guard leeway >= 0 else { throw ValidationError("--leeway must be >= 0") }
        guard leeway <= VerifierLimits.maxLeeway else {
            throw ValidationError("--leeway must be <= \(VerifierLimits.maxLeeway) (5 minutes)")
        }
        guard maxLifetime > 0 else { throw ValidationError("--max-lifetime must be > 0") }
        guard maxLifetime <= VerifierLimits.maxLifetime else {
            throw ValidationError("--max-lifetime must be <= \(VerifierLimits.maxLifetime) (24 hours)")
        }
        if let statusMaxAge {
            guard statusMaxAge > 0 else { throw ValidationError("--status-max-age must be > 0") }
            guard statusMaxAge <= VerifierLimits.maxStatusMaxAge else {
                throw ValidationError("--status-max-age must be <= \(VerifierLimits.maxStatusMaxAge) (24 hours)")
            }
        }
        guard !audience.isEmpty else { throw ValidationError("--audience is required") }
        if dpopProof != nil {
            guard method != nil, url != nil else { throw ValidationError("--dpop-proof needs --method and --url") }
            // RFC 9449 §11.1: one process per token remembers nothing, so the proof's jti is checked against a
            // record every invocation shares; without one a replayed proof would pass.
            guard dpopReplayFile != nil else {
                throw ValidationError("--dpop-proof needs --dpop-replay-file (the record of proofs already accepted)")
            }
        } else if method != nil || url != nil || dpopReplayFile != nil {
            throw ValidationError(
                "--method, --url and --dpop-replay-file go with a --dpop-proof; pass the proof too"
            )
        }
    }

    func run() async throws {
        let keys: any KeySource
        let lists: (any StatusListSource)?
        do {
            keys = try await makeKeySource(jwks)
            if let statusList { lists = try await makeStatusSource(statusList) } else { lists = nil }
        } catch {
            FileHandle.standardError.write(Data("stagepass verify: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let text: String
        if let token {
            text = token
        } else {
            let data = FileHandle.standardInput.readDataToEndOfFile()
            text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let configuration: VerifierConfiguration
        do {
            configuration = try VerifierConfiguration(
                issuer: issuer,
                audiences: audience,
                leeway: leeway,
                maxLifetime: maxLifetime,
                statusMaxAge: statusMaxAge,
                cacheCapacity: 0
            )
        } catch {
            FileHandle.standardError.write(Data("stagepass verify: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let verifier = Verifier(configuration: configuration, keys: keys, statusLists: lists)
        let at = now ?? Int64(Date().timeIntervalSince1970)
        // Without --dpop-proof the token was presented as a bearer token: a DPoP-bound one is refused dpop_required.
        var presentation: DPoPPresentation?
        var replayFile: DPoPReplayFile?
        if let dpopProof, let method, let url {
            presentation = DPoPPresentation(proof: dpopProof, method: method, url: url)
            if let dpopReplayFile {
                do {
                    // Locked until this process exits: a concurrent invocation waits, then sees this proof.
                    let file = try DPoPReplayFile(path: dpopReplayFile)
                    try file.load(into: verifier.replayCache, now: at)
                    replayFile = file
                } catch {
                    FileHandle.standardError.write(Data("stagepass verify: \(error)\n".utf8))
                    throw ExitCode(2)
                }
            }
        }
        let t: VerifiedToken
        do {
            t = try verifier.verify(
                text,
                requirements: Requirements(roles: role, stage: stage, pipeline: pipeline),
                dpop: presentation,
                at: at
            )
        } catch {
            let line = JSONValue.object(["error": .string(error.code.name), "detail": .string(error.detail)])
                .serialized()
            FileHandle.standardError.write(Data((line + "\n").utf8))
            throw ExitCode(1)
        }
        if let replayFile {
            // The proof is on disk before the verdict: an `ok` is never forgotten by the next invocation.
            do {
                try replayFile.save(from: verifier.replayCache, now: at)
            } catch {
                FileHandle.standardError.write(Data("stagepass verify: \(error)\n".utf8))
                throw ExitCode(2)
            }
        }
        FileHandle.standardOutput.write(Data(t.payload + [0x0A]))
    }
}

func isURL(_ s: String) -> Bool { s.hasPrefix("https://") || s.hasPrefix("http://") }

/// A file source, or a URL source fetched once now (configuration time: `verify()` itself never fetches).
func makeKeySource(_ location: String) async throws -> any KeySource {
    if isURL(location) {
        guard let url = URL(string: location) else { throw ValidationError("bad URL \(location)") }
        let source = URLKeySource(url: url)
        try await source.refresh()
        return source
    }
    return try FileKeySource(path: location)
}

/// A file source, or a URL source fetched once now; either way the verifier installs the list through its
/// StatusListHolder (verified, newest per sub).
func makeStatusSource(_ location: String) async throws -> any StatusListSource {
    if isURL(location) {
        guard let url = URL(string: location) else { throw ValidationError("bad URL \(location)") }
        let source = URLStatusListSource(url: url)
        try await source.refresh()
        return source
    }
    return try FileStatusListSource(path: location)
}
