import ArgumentParser
import Foundation
import Hummingbird
import Logging
import StagepassBroker
import StagepassHTTP
import StagepassJOSE

/// `stagepass serve`: the broker over HTTP. On an empty data directory it first creates the master key and an
/// `admin` account, and prints the admin's password and TOTP enrolment once.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the broker's HTTP API.")
    @OptionGroup var options: DataOptions
    @Option(help: "Address to listen on.") var host: String = "127.0.0.1"
    @Option(help: "Port to listen on.") var port: Int = 8080
    @Option(help: "Public base URL of the broker.") var issuer: String?
    @Option(
        help:
            "Policy YAML file (Specs/policy.md; check it with `stagepass policy check`). Default: the shipped example."
    )
    var policy: String?
    @Option(help: "Signing key store directory.") var keys: String = "Keys"
    @Option(
        name: .customLong("passphrase-file"),
        help: "File holding the key store passphrase (else STAGEPASS_KEY_PASSPHRASE)."
    )
    var passphraseFile: String?
    @Option(
        name: .customLong("rp-id"),
        help:
            "WebAuthn RP ID: the host name security keys are bound to (default: the issuer's host; 'localhost' for a loopback IP)."
    )
    var rpID: String?
    @Option(
        name: .customLong("origin"),
        help:
            "An origin pages are served from, for WebAuthn (repeatable; default: the issuer's origin, plus its localhost twin on loopback)."
    )
    var origins: [String] = []
    @Flag(name: .customLong("insecure-dev-keys"), help: "Store signing keys unencrypted (development only).")
    var insecureDevKeys = false
    @Option(
        name: .customLong("header-timeout"),
        help: ArgumentHelp(
            "Seconds (more than 0, at most 600) a client has to send a complete request head: on a new connection from accept, later from the request's first byte. Then 408 and close.",
            valueName: "seconds"
        )
    )
    var headerTimeout: Double = 10
    @Option(
        name: .customLong("body-timeout"),
        help: ArgumentHelp(
            "Seconds (more than 0, at most 3600) a client has to send a request body once its head arrived. Then 408 and close.",
            valueName: "seconds"
        )
    )
    var bodyTimeout: Double = 30
    @Option(
        name: .customLong("idle-timeout"),
        help: ArgumentHelp(
            "Seconds (more than 0, at most 3600) a kept-alive connection may stay silent between requests before it is closed.",
            valueName: "seconds"
        )
    )
    var idleTimeout: Double = 60
    @Option(
        name: .customLong("max-connections"),
        help: ArgumentHelp(
            "Connections held at once, all clients together; never more than the open-file limit less \(ConnectionLimits.openFileHeadroom). Extra connections are closed right after accept, unanswered.",
            valueName: "n"
        )
    )
    var maxConnections: Int = 4096
    @Option(
        name: .customLong("max-connections-per-address"),
        help: ArgumentHelp(
            "Connections held at once from one client IP address. Extra connections are closed right after accept, unanswered.",
            valueName: "n"
        )
    )
    var maxConnectionsPerAddress: Int = 256
    @Option(
        name: .customLong("drain-timeout"),
        help: ArgumentHelp(
            "On SIGTERM/SIGINT: seconds (0 to 600) requests in flight may still finish before the remaining connections are closed and the broker exits.",
            valueName: "seconds"
        )
    )
    var drainTimeout: Double = 10

    func validate() throws { _ = try connectionLimits() }

    /// The connection flags as limits; a value out of range is a usage error naming the flag and its range.
    func connectionLimits() throws -> ConnectionLimits {
        func seconds(_ value: Double, _ flag: String, _ range: ClosedRange<Double>) throws -> Duration {
            guard range.contains(value) else {
                let lower = range.lowerBound == 0 ? "at least 0" : "more than 0"
                throw ValidationError(
                    "--\(flag) must be \(lower) and at most \(Int(range.upperBound)) seconds, got \(value)"
                )
            }
            return .milliseconds(Int64((value * 1000).rounded()))
        }
        func count(_ value: Int, _ flag: String) throws -> Int {
            let range = ConnectionLimits.connectionsRange
            guard range.contains(value) else {
                throw ValidationError(
                    "--\(flag) must be between \(range.lowerBound) and \(range.upperBound), got \(value)"
                )
            }
            return value
        }
        return ConnectionLimits(
            timeouts: ConnectionTimeouts(
                header: try seconds(headerTimeout, "header-timeout", ConnectionLimits.headerTimeoutRange),
                body: try seconds(bodyTimeout, "body-timeout", ConnectionLimits.bodyTimeoutRange),
                idle: try seconds(idleTimeout, "idle-timeout", ConnectionLimits.idleTimeoutRange)
            ),
            maxConnections: try count(maxConnections, "max-connections"),
            maxConnectionsPerAddress: try count(maxConnectionsPerAddress, "max-connections-per-address"),
            drainTimeout: try seconds(drainTimeout, "drain-timeout", ConnectionLimits.drainTimeoutRange)
        )
    }

    func run() async throws {
        var logger = Logger(label: "stagepass")
        logger.logLevel = .info
        // Validated in full before anything starts: an error prints FILE:LINE: message and exits 1.
        let accessPolicy: AccessPolicy
        if let file = self.policy {
            accessPolicy = try loadPolicyReporting(file: file)
            logger.info("policy \(file): \(policySummary(accessPolicy))")
        } else {
            accessPolicy = try AccessPolicy.example()
            logger.notice("no --policy given: using the shipped example policy (see `stagepass policy example`)")
        }
        let issuerURL = issuer ?? "http://\(host):\(port)"
        let webAuthn = try webAuthnConfiguration(issuer: issuerURL)
        logger.info("security keys: RP ID \(webAuthn.rpID), origins \(webAuthn.origins.joined(separator: " "))")
        let (passphraseFile, insecureDevKeys, data, log) = (
            self.passphraseFile, self.insecureDevKeys, options.data, logger
        )
        var configuration = StagepassServerConfiguration(
            host: host,
            port: port,
            issuer: issuer,
            dataDirectory: options.data,
            policy: accessPolicy,
            policyFile: self.policy,
            keysDirectory: keys,
            passphrase: {
                try Self.keyPassphrase(
                    passphraseFile: passphraseFile,
                    insecureDevKeys: insecureDevKeys,
                    data: data,
                    logger: log
                )
            },
            webAuthn: webAuthn,
            database: options.database,
            logger: logger
        )
        configuration.connections = try connectionLimits()
        try await StagepassServer(configuration: configuration).run()
    }

    /// WebAuthn scope (W3C WebAuthn Level 2 §5.1.3, §13.4.9): the RP ID is a registrable host name (never an IP
    /// address), and the origins are matched exactly. Defaults follow the issuer URL; on a loopback IP the RP ID is
    /// `localhost` and `http://localhost:PORT` is accepted beside the IP origin.
    func webAuthnConfiguration(issuer: String) throws -> WebAuthnConfiguration {
        guard let url = URL(string: issuer), let scheme = url.scheme, let host = url.host else {
            throw ValidationError("--issuer must be an absolute URL, e.g. https://stagepass.example")
        }
        let portPart = url.port.map { ":\($0)" } ?? ""
        let loopbackIP = host == "127.0.0.1" || host == "::1" || host == "[::1]"
        var origins = self.origins
        if origins.isEmpty {
            origins = ["\(scheme)://\(host.contains(":") ? "[\(host)]" : host)\(portPart)"]
            if loopbackIP { origins.append("\(scheme)://localhost\(portPart)") }
        }
        return WebAuthnConfiguration(
            rpID: rpID ?? (loopbackIP ? "localhost" : host),
            rpName: "Stagepass",
            origins: origins
        )
    }

    /// The signing key store's passphrase, resolved when the server opens the store. With no passphrase configured,
    /// the embedded default (first start from a fresh clone) generates one into `<data>/key-passphrase` (mode 0600)
    /// and says so; `--insecure-dev-keys` stores keys unencrypted instead.
    static func keyPassphrase(
        passphraseFile: String?,
        insecureDevKeys: Bool,
        data: String,
        logger: Logger
    ) throws
        -> KeyPassphrase
    {
        var file = passphraseFile
        let env = ProcessInfo.processInfo.environment
        if file == nil, env["STAGEPASS_KEY_PASSPHRASE"] == nil, !insecureDevKeys {
            let path = (data as NSString).appendingPathComponent("key-passphrase")
            if !FileManager.default.fileExists(atPath: path) {
                let secret = Base64URL.encode(try Crypto.randomBytes(32))
                do {
                    // Mode 0600 from the first byte; never replaces a passphrase another process just wrote.
                    try SecretFile.write(Array(secret.utf8), to: path, replace: false)
                } catch let e as SecretFileError {
                    throw ValidationError("cannot create \(path): \(e.detail)")
                }
                logger.warning(
                    "no key passphrase configured: generated one in \(path) (mode 0600); set STAGEPASS_KEY_PASSPHRASE or --passphrase-file in production"
                )
            }
            file = path
        }
        return try KeyPassphrase.resolve(passphraseFile: file, environment: env, insecureDev: insecureDevKeys)
    }
}
