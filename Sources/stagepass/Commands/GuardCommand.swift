import ArgumentParser
import Foundation
import Hummingbird
import Logging
import StagepassHummingbird
import StagepassVerify
import StagepassVerifyFetch

/// `stagepass guard`: the verifier as a forward-auth service for nginx `auth_request`, Traefik `forwardAuth` and
/// Caddy `forward_auth` (Specs/guard.md). Verification runs in process against the JWKS and status list, which are
/// refreshed in the background; a subrequest never waits on the network.
struct GuardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guard",
        abstract: "Answer nginx auth_request / Traefik and Caddy forward-auth subrequests with token verdicts."
    )

    @Option(help: "Address to listen on, HOST:PORT (loopback unless --allow-remote).") var listen: String =
        "127.0.0.1:9180"
    @Flag(
        name: .customLong("allow-remote"),
        help: "Allow a non-loopback --listen address (the trusted proxy headers are then trusted from that network)."
    )
    var allowRemote = false
    @Option(
        name: .customLong("trust-forwarded"),
        help: """
            The proxy headers that name the original request: nginx (X-Original-Method/-URI, X-Forwarded-Proto/-Host) \
            or forwarded (Traefik/Caddy: X-Forwarded-Method/-Proto/-Host/-Uri).
            """
    )
    var trustForwarded: String
    @Option(
        name: .customLong("public-origin"),
        help: "scheme://host[:port] clients use; replaces the forwarded proto and host in the DPoP htu check."
    )
    var publicOrigin: String?
    @Option(help: "JWKS file path or http(s) URL (refreshed in the background).") var jwks: String
    @Option(help: "The only accepted issuer.") var issuer: String
    @Option(help: "An accepted audience (repeatable).") var audience: [String] = []
    @Option(help: "Required role (repeatable: any of).") var role: [String] = []
    @Option(help: "Required stage.") var stage: String?
    @Option(help: "Pattern the token's client_id must match ('*' = any run of characters).") var pipeline: String?
    @Option(
        name: .customLong("status-list"),
        help: "Status list token file path or http(s) URL (refreshed in the background; tokens fail closed without it)."
    )
    var statusList: String?
    @Option(
        name: .customLong("status-max-age"),
        help: "Fail closed when the status list is older than this (seconds, 1...86400)."
    )
    var statusMaxAge: Int64?
    @Option(help: "Clock skew tolerated, seconds (0...300).") var leeway: Int64 = 30
    @Option(name: .customLong("max-lifetime"), help: "Longest accepted exp - iat, seconds (1...86400).")
    var maxLifetime: Int64 = 3600
    @Flag(name: .customLong("no-token-cache"), help: "Verify every token in full (no verified-token cache).")
    var noTokenCache = false
    @Option(
        name: .customLong("token-cache-size"),
        help: "Verified tokens kept (the cache skips parsing and signature)."
    )
    var tokenCacheSize: Int = 16384
    @Option(help: "The realm of the WWW-Authenticate challenges.") var realm: String = "stagepass"
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.") var logLevel: String =
        "info"

    func validate() throws {
        guard !audience.isEmpty else { throw ValidationError("--audience is required") }
        guard ForwardedHeaderSet(rawValue: trustForwarded) != nil else {
            throw ValidationError("--trust-forwarded must be nginx or forwarded")
        }
        guard let (host, _) = Self.hostPort(listen) else { throw ValidationError("--listen must be HOST:PORT") }
        if !allowRemote && !Self.isLoopback(host) {
            throw ValidationError(
                "--listen \(listen) is not a loopback address: the guard trusts its proxy's headers, so it listens "
                    + "where only the proxy reaches it; pass --allow-remote to listen on \(host) anyway"
            )
        }
        if let publicOrigin {
            guard let u = URL(string: publicOrigin), u.scheme == "https" || u.scheme == "http", u.host != nil,
                u.path.isEmpty || u.path == "/", u.query == nil
            else { throw ValidationError("--public-origin must be scheme://host[:port]") }
        }
        guard tokenCacheSize >= 0 else { throw ValidationError("--token-cache-size must be >= 0") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level: unknown level") }
        // The bounds of VerifierLimits, as `stagepass verify` checks them.
        do {
            try VerifierLimits.check(leeway: leeway, maxLifetime: maxLifetime, statusMaxAge: statusMaxAge)
        } catch {
            throw ValidationError(error.detail)
        }
    }

    static func hostPort(_ s: String) -> (String, Int)? {
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port)
        else { return nil }
        var host = String(s[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        return (host, port)
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    func run() async throws {
        let logger = {
            var l = Logger(label: "stagepass.guard")
            l.logLevel = Logger.Level(rawValue: logLevel) ?? .info
            return l
        }()
        let configuration: VerifierConfiguration
        let keys: any KeySource
        let lists: (any StatusListSource)?
        do {
            configuration = try VerifierConfiguration(
                issuer: issuer,
                audiences: audience,
                leeway: leeway,
                maxLifetime: maxLifetime,
                statusMaxAge: statusMaxAge,
                cacheCapacity: noTokenCache ? 0 : tokenCacheSize
            )
            keys = try Self.keySource(jwks)
            lists = try statusList.map(Self.statusSource)
        } catch {
            FileHandle.standardError.write(Data("stagepass guard: \(error)\n".utf8))
            throw ExitCode(2)
        }
        guard let (host, port) = Self.hostPort(listen), let trusted = ForwardedHeaderSet(rawValue: trustForwarded)
        else { throw ExitCode(2) }
        let verification = StagepassVerifierService(configuration: configuration, keys: keys, statusLists: lists)
        let gate = TokenGate(
            verifier: verification.verifier,
            requirements: Requirements(roles: role, stage: stage, pipeline: pipeline),
            realm: realm
        )
        let responder = ForwardAuthGuard(
            gate: gate,
            trusted: trusted,
            publicOrigin: publicOrigin,
            ready: { verification.isReady }
        )
        let app = Application(
            responder: responder,
            configuration: .init(address: .hostname(host, port: port), serverName: "stagepass-guard", backlog: 1024),
            services: [verification],
            onServerRunning: { _ in
                logger.notice(
                    "guard listening",
                    metadata: [
                        "address": .string(listen),
                        "trust_forwarded": .string(trustForwarded),
                        "token_cache": .string(noTokenCache ? "off" : String(tokenCacheSize)),
                    ]
                )
            },
            logger: logger
        )
        try await app.runService()
    }

    /// A URL source (fetched by the service's loop) or a file source (re-read when it changes).
    static func keySource(_ location: String) throws -> any KeySource {
        if isURL(location) {
            guard let url = URL(string: location) else { throw ValidationError("bad URL \(location)") }
            return URLKeySource(url: url)
        }
        return try FileKeySource(path: location)
    }

    static func statusSource(_ location: String) throws -> any StatusListSource {
        if isURL(location) {
            guard let url = URL(string: location) else { throw ValidationError("bad URL \(location)") }
            return URLStatusListSource(url: url)
        }
        return try FileStatusListSource(path: location)
    }
}
