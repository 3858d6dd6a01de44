import ArgumentParser
import Foundation
import Logging
import StagepassBroker
import StagepassJOSE

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `stagepass keys …`: the signing-key store (Keys/README.md).
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Manage the signing keys: list, rotate, import, compromise, and print the public JWKS.",
        subcommands: [List.self, Rotate.self, Import.self, Compromise.self, Jwks.self]
    )
}

/// Options every `keys` subcommand shares.
struct KeyStoreOptions: ParsableArguments {
    @Option(name: .customLong("keys"), help: "The key store directory.")
    var directory: String = "Keys"

    @Option(help: "A file holding the key passphrase (mode 0600). Default: $STAGEPASS_KEY_PASSPHRASE.")
    var passphraseFile: String?

    @Flag(help: "Allow UNENCRYPTED key files when no passphrase is configured (development only).")
    var insecureDevKeys = false

    @Option(name: .customLong("data"), help: "The broker's data directory: key actions go to its audit log.")
    var data: String = "./.stagepass"

    @Option(
        help:
            "The brokers' PostgreSQL database (postgres://…): the keyring is kept there, shared by every broker on it; key actions go to its audit log. --keys is not used then."
    )
    var database: String?

    @Option(help: "Seconds to wait for each running broker of this key store to publish a change.")
    var brokerTimeout: Double = 10

    /// The broker (database) of the data directory, or of `--database`.
    func openBroker() async throws -> HumanBroker {
        let (data, database) = (self.data, self.database)
        // Opening blocks (files, migrations): on a blocking lane, off the cooperative pool.
        return try await BrokerExecutor.blocking.run { try HumanBroker.open(dataDirectory: data, database: database) }
    }

    /// Whether there is a broker database whose ledger holds issued tokens.
    var hasBrokerDatabase: Bool {
        database != nil || FileManager.default.fileExists(atPath: HumanBroker.databasePath(data))
    }

    /// Opens the store and reconciles it with the audit log (``KeyStore/reconcile()``: leftover temp files removed,
    /// key states without an audit record recorded as `key.recovered`, each repair named on stderr); configuration
    /// errors exit 2 with a message, other store errors exit 1.
    func open() async throws -> KeyStore {
        // Opening blocks (key files, the database keyring): on a blocking lane, off the cooperative pool.
        let options = self
        let store = try await BrokerExecutor.blocking.run { try options.openUnreconciled() }
        let report = try await runReportingErrors { try await store.reconcile() }
        for kid in report.recovered {
            printError("stagepass keys: WARNING: key \(kid) had no audit record of its state; recorded key.recovered")
        }
        for change in report.abandoned {
            printError(
                "stagepass keys: WARNING: an interrupted key change (\(change)) never took effect; recorded key.abandoned"
            )
        }
        for name in report.removedTempFiles {
            printError("stagepass keys: removed leftover temp file \(name)")
        }
        return store
    }

    private func openUnreconciled() throws -> KeyStore {
        try runReportingErrors {
            let env = ProcessInfo.processInfo.environment
            // Same default as `serve`: the generated dev passphrase file in the data directory, if there is one.
            let devFile = (data as NSString).appendingPathComponent("key-passphrase")
            let file =
                passphraseFile
                ?? (env["STAGEPASS_KEY_PASSPHRASE"] == nil && FileManager.default.fileExists(atPath: devFile)
                    ? devFile : nil)
            let passphrase = try KeyPassphrase.resolve(
                passphraseFile: file,
                environment: env,
                insecureDev: insecureDevKeys
            )
            if !passphrase.encrypts {
                printError(
                    "WARNING: --insecure-dev-keys: private keys in \(directory) are stored UNENCRYPTED. "
                        + "Never use this outside development."
                )
            }
            let user = ProcessInfo.processInfo.environment["USER"] ?? "unknown"
            // Every admin key action is an audit record: in the broker's hash-chained log when the data directory
            // holds a broker database, else in the process log.
            let audit: any AuditSink
            var keyring: PostgresStore?
            if let database {
                let store: PostgresStore
                do { store = try PostgresStore(url: database) } catch let e as PostgresURL.ParseError {
                    throw ValidationError("--database: \(e.description)")
                }
                keyring = store
                audit = HashChainAuditLog(store: store, clock: .system)
            } else if FileManager.default.fileExists(atPath: HumanBroker.databasePath(data)) {
                audit = try HumanBroker.open(dataDirectory: data).audit
            } else {
                audit = LogAuditSink()
            }
            return try KeyStore(
                configuration: KeyStoreConfiguration(
                    directory: directory,
                    passphrase: passphrase,
                    audit: audit,
                    actor: "cli:\(user)",
                    database: keyring
                )
            )
        }
    }
}

/// Waits until every running broker of the key store (``RunningBrokers``) publishes a change: its JWKS lists every
/// kid of `published` and none of `unpublished`. A broker re-reads a changed keyring before each signing and JWKS
/// request, so its JWKS showing the change means it also signs accordingly.
///
/// Prints one line per broker; a broker that does not confirm within the timeout is reported on stderr and the command
/// exits 1 (the change itself is committed on disk).
func confirmWithRunningBrokers(
    _ options: KeyStoreOptions,
    published: Set<String>,
    unpublished: Set<String>
)
    async throws
{
    if options.database != nil {
        // Brokers on the database compare the keyring version before each signing and JWKS request, and re-read it
        // at once when the change is announced.
        print("brokers:     every broker on the database uses the change from its next request")
        return
    }
    let brokers = RunningBrokers.list(directory: options.directory)
    guard !brokers.isEmpty else {
        print("broker:      no running broker uses \(options.directory)")
        return
    }
    var unconfirmed = 0
    for b in brokers {
        let deadline = Date().addingTimeInterval(max(0.1, options.brokerTimeout))
        var lastProblem = "no answer"
        var confirmed = false
        while !confirmed {
            do {
                let client = BrokerClient(base: b.url)
                var req = URLRequest(url: try client.url("/.well-known/jwks.json"))
                req.cachePolicy = .reloadIgnoringLocalCacheData
                req.timeoutInterval = max(0.5, min(2, deadline.timeIntervalSinceNow))
                let (status, data) = try await client.perform(req)
                if status == 200, let doc = try? JSONValue.parse(Array(data)), let keys = doc["keys"]?.arrayValue {
                    let kids = Set(keys.compactMap { $0["kid"]?.stringValue })
                    if published.isSubset(of: kids) && unpublished.isDisjoint(with: kids) {
                        confirmed = true
                        break
                    }
                    lastProblem = "its JWKS does not show the change yet (does it serve --keys \(options.directory)?)"
                } else {
                    lastProblem = "its JWKS answered HTTP \(status)"
                }
            } catch {
                lastProblem = "unreachable (\(error.localizedDescription))"
            }
            if Date() >= deadline { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        if confirmed {
            print("broker:      pid \(b.pid) at \(b.url) confirmed: it publishes and signs with the new keyring")
        } else {
            unconfirmed += 1
            printError(
                "stagepass keys: WARNING: the running broker pid \(b.pid) at \(b.url) did not confirm the change "
                    + "within \(options.brokerTimeout) s: \(lastProblem). The change is committed on disk; the broker "
                    + "re-reads the keyring before its next signing or JWKS request."
            )
        }
    }
    if unconfirmed > 0 { throw ExitCode(1) }
}

/// Runs `body`, turning a ``KeyStoreError`` into a message on stderr and exit status 2 (configuration) or 1.
func runReportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as KeyStoreError {
        printError("stagepass keys: error: \(error)")
        throw ExitCode(error.isConfigurationError ? 2 : 1)
    }
}

/// Async variant of ``runReportingErrors(_:)``.
func runReportingErrors<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as KeyStoreError {
        printError("stagepass keys: error: \(error)")
        throw ExitCode(error.isConfigurationError ? 2 : 1)
    }
}

/// Parses an algorithm name, exiting 2 on an unknown one.
func parseAlgorithm(_ name: String) throws -> JWSAlgorithm {
    guard let alg = JWSAlgorithm(rawValue: name) else {
        printError(
            "stagepass keys: error: unknown algorithm \(name); use one of "
                + JWSAlgorithm.allCases.map(\.rawValue).joined(separator: ", ")
        )
        throw ExitCode(2)
    }
    return alg
}

extension KeysCommand {
    /// `stagepass keys list`: one row per key.
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List keys: kid, alg, state, created, activates, retires."
        )
        @OptionGroup var options: KeyStoreOptions

        func run() async throws {
            let store = try await options.open()
            let rows = await store.keys()
            guard !rows.isEmpty else {
                print("no keys in \(options.directory) (run `stagepass keys rotate` to create the first ones)")
                return
            }
            let header = ["KID", "ALG", "STATE", "CREATED", "ACTIVATES", "RETIRES"]
            let body = rows.map { r in
                [
                    r.kid, r.alg, r.state.rawValue, formatTime(r.created), r.activates.map(formatTime) ?? "-",
                    r.retires.map(formatTime) ?? "-",
                ]
            }
            let widths = header.indices.map { c in ([header] + body).map { $0[c].count }.max() ?? 0 }
            for row in [header] + body {
                let cells = row.enumerated().map { c, cell in
                    cell.padding(toLength: widths[c], withPad: " ", startingAt: 0)
                }
                print(cells.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
            }
        }
    }

    /// `stagepass keys rotate [--alg ALG] [--force]`.
    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Promote next to active, demote active to retiring, generate a new next (creates the first keys)."
        )
        @OptionGroup var options: KeyStoreOptions
        @Option(help: "Algorithm of the new next key: ES256 (default), EdDSA, RS256, PS256.")
        var alg: String?
        @Flag(help: "Promote a next key published for less than the pre-publication window.")
        var force = false

        func run() async throws {
            let algorithm = try alg.map(parseAlgorithm)
            let store = try await options.open()
            let r = try await runReportingErrors { try await store.rotate(alg: algorithm, force: force) }
            print("active:   \(r.activeKid)")
            if let retiring = r.retiringKid { print("retiring: \(retiring)") }
            print("next:     \(r.nextKid)")
            try await confirmWithRunningBrokers(options, published: [r.activeKid, r.nextKid], unpublished: [])
        }
    }

    /// `stagepass keys import FILE [--alg ALG]`.
    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import a private key PEM (e.g. from `openssl genpkey`) as the next key, stored encrypted."
        )
        @OptionGroup var options: KeyStoreOptions
        @Argument(help: "The PEM file (unencrypted, or encrypted with the store passphrase).")
        var file: String
        @Option(help: "For RSA keys: RS256 (default) or PS256.")
        var alg: String?

        func run() async throws {
            let algorithm = try alg.map(parseAlgorithm)
            guard let data = FileManager.default.contents(atPath: file) else {
                printError("stagepass keys: error: cannot read \(file)")
                throw ExitCode(2)
            }
            let store = try await options.open()
            let kid = try await runReportingErrors {
                try await store.importKey(pem: String(decoding: data, as: UTF8.self), alg: algorithm)
            }
            print("imported: \(kid)")
            try await confirmWithRunningBrokers(options, published: [kid], unpublished: [])
        }
    }

    /// `stagepass keys compromise KID`.
    struct Compromise: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Unpublish a key at once and destroy it; promotes next if it was active."
        )
        @OptionGroup var options: KeyStoreOptions
        @Argument(help: "The kid of the compromised key.")
        var kid: String

        func run() async throws {
            let store = try await options.open()
            let r = try await runReportingErrors { try await store.compromise(kid: kid) }
            print("compromised: \(r.kid) (was \(r.previousState.rawValue))")
            print("active:      \(r.activeKid)")
            // Every token the key signed is revoked in the ledger too (when this data directory has a broker
            // database; none is created here); a running broker serves the new status list at once (it re-signs when
            // the revocation epoch moves).
            if options.hasBrokerDatabase {
                let jtis = try await options.openBroker().revokeTokens(
                    .kid(kid),
                    describedAs: "kid:" + kid,
                    actor: cliActor(),
                    factors: [],
                    reason: "key compromised"
                )
                print("revoked:     \(jtis.count) token(s) signed by \(kid)")
            } else {
                print("no broker database in \(options.data): no issued tokens to revoke there")
            }
            // Returns only once every running broker of this store has stopped publishing and signing with the key.
            try await confirmWithRunningBrokers(
                options,
                published: Set([r.activeKid] + (r.nextKid.map { [$0] } ?? [])),
                unpublished: [r.kid]
            )
        }
    }

    /// `stagepass keys jwks`: the public JWKS document.
    struct Jwks: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the public JWKS (next, active and retiring keys)."
        )
        @OptionGroup var options: KeyStoreOptions

        func run() async throws {
            let store = try await options.open()
            let doc = try await runReportingErrors { try await store.jwks().serialized() }
            print(doc)
        }
    }
}
