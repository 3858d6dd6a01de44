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
    @Option(help: "Policy YAML file (Specs/policy.md; check it with `stagepass policy check`). Default: the shipped example.")
    var policy: String?
    @Option(help: "Signing key store directory.") var keys: String = "Keys"
    @Option(name: .customLong("passphrase-file"), help: "File holding the key store passphrase (else STAGEPASS_KEY_PASSPHRASE).")
    var passphraseFile: String?
    @Option(name: .customLong("rp-id"), help: "WebAuthn RP ID: the host name security keys are bound to (default: the issuer's host; 'localhost' for a loopback IP).")
    var rpID: String?
    @Option(name: .customLong("origin"), help: "An origin pages are served from, for WebAuthn (repeatable; default: the issuer's origin, plus its localhost twin on loopback).")
    var origins: [String] = []
    @Flag(name: .customLong("insecure-dev-keys"), help: "Store signing keys unencrypted (development only).") var insecureDevKeys = false

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
        let policies = PolicyHolder(accessPolicy, file: self.policy)
        let broker = try HumanBroker.open(dataDirectory: options.data, policies: policies, webAuthn: webAuthn)
        if let first = try broker.bootstrapIfEmpty() {
            // Unbuffered: the one-time secrets must reach a redirected log before the server starts.
            func emit(_ s: String) { FileHandle.standardOutput.write(Data((s + "\n").utf8)) }
            emit(
                """
                First start: created the account '\(first.userName)' (group admins). This is shown ONCE.
                  password:    \(first.password)
                  TOTP secret: \(first.enrolment.secret)
                  TOTP URI:    \(first.enrolment.uri)
                """)
            emit(first.enrolment.qr.terminal())
            emit("Sign in with: stagepass login --broker http://\(host):\(port) --user \(first.userName)")
            emit("or in a browser: \(issuer ?? "http://\(host == "127.0.0.1" ? "localhost" : host):\(port)")/signin")
        }
        // The policy in force is itself an audited decision.
        try broker.audit.record(
            AuditEvent(
                action: "policy.load", actor: "broker", subject: self.policy ?? "<example policy>",
                details: [
                    "roles": String(accessPolicy.roles.count), "stages": String(accessPolicy.stages.count),
                    "audiences": String(accessPolicy.audiences.count), "pipelines": String(accessPolicy.pipelines.count),
                ]))
        // The retiring window covers the longest token any stage can issue and the status lists (Specs/policy.md).
        let schedule = try KeySchedule.standard(covering: accessPolicy.longestSignedLifetime)
        let keyStore = try openKeyStore(audit: broker.audit, logger: logger, schedule: schedule)
        logger.info("key schedule: a demoted key stays published \(schedule.retiringPeriod) s")
        let tokens = TokenBroker(human: broker, keys: keyStore, issuer: issuerURL)
        let app = buildApplication(
            broker: broker, tokens: tokens, configuration: .init(address: .hostname(host, port: port), serverName: "stagepass"),
            options: HTTPOptions(issuer: issuerURL), logger: logger)
        // `stagepass keys …` finds this broker through a note in the key store and waits until it publishes a change.
        var note: String?
        do {
            note = try RunningBrokers.announce(directory: keys, url: RunningBrokers.loopbackURL(host: host, port: port))
        } catch {
            // Not fatal: the broker still re-reads a changed keyring before each request; only the CLI cannot wait.
            logger.warning("cannot announce this broker in \(keys); key commands will not wait for it: \(error)")
        }
        defer { if let note { RunningBrokers.withdraw(note) } }
        // The rotation schedule runs inside the broker beside the HTTP service.
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await keyStore.runSchedule(every: .seconds(60)) }
            group.addTask { try await app.runService() }
            try await group.next()
            group.cancelAll()
        }
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
        return WebAuthnConfiguration(rpID: rpID ?? (loopbackIP ? "localhost" : host), rpName: "Stagepass", origins: origins)
    }

    /// Opens the signing key store, creating its first keys on an empty store. With no passphrase configured, the
    /// embedded default (first start from a fresh clone) generates one into `<data>/key-passphrase` (mode 0600) and
    /// says so; `--insecure-dev-keys` stores keys unencrypted instead.
    func openKeyStore(audit: any AuditSink, logger: Logger, schedule: KeySchedule) throws -> KeyStore {
        var file = passphraseFile
        let env = ProcessInfo.processInfo.environment
        if file == nil, env["STAGEPASS_KEY_PASSPHRASE"] == nil, !insecureDevKeys {
            let path = (options.data as NSString).appendingPathComponent("key-passphrase")
            if !FileManager.default.fileExists(atPath: path) {
                let secret = Base64URL.encode(try Crypto.randomBytes(32))
                do {
                    // Mode 0600 from the first byte; never replaces a passphrase another process just wrote.
                    try SecretFile.write(Array(secret.utf8), to: path, replace: false)
                } catch let e as SecretFileError {
                    throw ValidationError("cannot create \(path): \(e.detail)")
                }
                logger.warning("no key passphrase configured: generated one in \(path) (mode 0600); set STAGEPASS_KEY_PASSPHRASE or --passphrase-file in production")
            }
            file = path
        }
        let passphrase = try KeyPassphrase.resolve(passphraseFile: file, environment: env, insecureDev: insecureDevKeys)
        let store = try KeyStore(configuration: KeyStoreConfiguration(directory: keys, passphrase: passphrase, schedule: schedule, audit: audit, actor: "broker"))
        return store
    }
}
