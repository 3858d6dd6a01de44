import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import StagepassBroker
import UnixSignals

/// What `stagepass serve` runs: where to listen, which data, policy, keys and WebAuthn scope.
public struct StagepassServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// The public base URL as configured (`--issuer`); nil means `http://HOST:PORT`.
    public var issuer: String?
    /// The data directory (master key, SQLite database).
    public var dataDirectory: String
    /// A PostgreSQL URL (``PostgresURL``) to store the broker's data in instead of the data directory's SQLite file.
    public var database: String?
    /// The validated access policy, and the file it came from (nil: the shipped example).
    public var policy: AccessPolicy
    public var policyFile: String?
    /// The signing key store directory.
    public var keysDirectory: String
    /// Resolves the key store passphrase when the key store is opened, after the first-start bootstrap.
    public var passphrase: @Sendable () throws -> KeyPassphrase
    public var webAuthn: WebAuthnConfiguration
    /// How often the key schedule checks whether a key is due to move on.
    public var keyScheduleInterval: Duration = .seconds(60)
    /// Connection deadlines and caps, and the shutdown drain time.
    public var connections = ConnectionLimits()
    /// With PostgreSQL: how often the schedule lease is tried (or, by its holder, checked).
    public var leaseInterval: Duration = .seconds(2)
    /// With PostgreSQL: how often the keyring version is compared, should a change announcement be lost.
    public var replicaCheckInterval: Duration = .seconds(2)
    public var logger: Logger

    public init(
        host: String,
        port: Int,
        issuer: String?,
        dataDirectory: String,
        policy: AccessPolicy,
        policyFile: String?,
        keysDirectory: String,
        passphrase: @escaping @Sendable () throws -> KeyPassphrase,
        webAuthn: WebAuthnConfiguration,
        database: String? = nil,
        logger: Logger
    ) {
        self.database = database
        self.host = host
        self.port = port
        self.issuer = issuer
        self.dataDirectory = dataDirectory
        self.policy = policy
        self.policyFile = policyFile
        self.keysDirectory = keysDirectory
        self.passphrase = passphrase
        self.webAuthn = webAuthn
        self.logger = logger
    }

    /// The issuer URL tokens and documents name.
    public var issuerURL: String { issuer ?? "http://\(host):\(port)" }
}

/// The broker as a server: opens the broker and its key store, builds the application, and runs it beside the key
/// schedule and the status-list refresh in one `ServiceGroup`. SIGTERM and SIGINT shut it down gracefully: the HTTP
/// server stops accepting and drains its requests first (for at most the drain time, then it closes what is left),
/// then the background services stop.
///
/// ```swift
/// try await StagepassServer(configuration: configuration).run()
/// ```
public struct StagepassServer: Sendable {
    public let configuration: StagepassServerConfiguration

    public init(configuration: StagepassServerConfiguration) {
        self.configuration = configuration
    }

    /// Runs until a shutdown signal. On an empty data directory it first creates the master key and an `admin`
    /// account and prints the admin's password and TOTP enrolment once, on standard output.
    public func run() async throws {
        let c = configuration
        let logger = c.logger
        let policies = PolicyHolder(c.policy, file: c.policyFile)
        if let database = c.database {
            // The URL as logged never carries its password.
            logger.info("storage: PostgreSQL \((try? PostgresURL(database).redacted) ?? "(invalid URL)")")
        }
        // Opening the store (files, migrations, the key store) blocks: on a blocking lane, off the cooperative pool.
        let broker = try await BrokerExecutor.blocking.run {
            try HumanBroker.open(
                dataDirectory: c.dataDirectory,
                database: c.database,
                policies: policies,
                webAuthn: c.webAuthn
            )
        }
        let first = try await broker.bootstrapIfEmpty()
        if let first { announceFirstStart(first) }
        // The policy in force is itself an audited decision.
        try await broker.audit.record(
            AuditEvent(
                action: "policy.load",
                actor: "broker",
                subject: c.policyFile ?? "<example policy>",
                details: [
                    "roles": String(c.policy.roles.count), "stages": String(c.policy.stages.count),
                    "audiences": String(c.policy.audiences.count), "pipelines": String(c.policy.pipelines.count),
                ]
            )
        )
        // The retiring window covers the longest token any stage can issue and the status lists (Specs/policy.md).
        let schedule = try KeySchedule.standard(covering: c.policy.longestSignedLifetime)
        let keyStore = try KeyStore(
            configuration: KeyStoreConfiguration(
                directory: c.keysDirectory,
                passphrase: try c.passphrase(),
                schedule: schedule,
                audit: broker.audit,
                actor: "broker",
                // Brokers sharing a PostgreSQL database share its keyring: one active key, one JWKS.
                database: broker.store as? PostgresStore
            )
        )
        try await keyStore.reconcile()  // audit gaps and leftovers of an interrupted key change (README, Operations)
        logger.info("key schedule: a demoted key stays published \(schedule.retiringPeriod) s")
        let tokens = await TokenBroker(
            human: broker,
            keys: keyStore,
            issuer: c.issuerURL,
            ciKeys: CIKeyDirectory(fetcher: CIIssuerRefreshService.discoveryFetcher)
        )
        let registry = connectionRegistry()
        let app = buildApplication(
            broker: broker,
            tokens: tokens,
            // A deep accept queue (the kernel caps it at net.core.somaxconn): under a connection flood new clients wait
            // in it for their turn instead of being dropped or reset; the caps and deadlines bound what is accepted.
            configuration: .init(address: .hostname(c.host, port: c.port), serverName: "stagepass", backlog: 4096),
            server: .guardedHTTP1(timeouts: c.connections.timeouts, registry: registry),
            options: HTTPOptions(issuer: c.issuerURL),
            logger: logger
        )
        // `stagepass keys …` finds this broker through a note in the key store and waits until it publishes a change.
        var note: String?
        do {
            note = try RunningBrokers.announce(
                directory: c.keysDirectory,
                url: RunningBrokers.loopbackURL(host: c.host, port: c.port)
            )
        } catch {
            // Not fatal: the broker still re-reads a changed keyring before each request; only the CLI cannot wait.
            logger.warning(
                "cannot announce this broker in \(c.keysDirectory); key commands will not wait for it: \(error)"
            )
        }
        defer { if let note { RunningBrokers.withdraw(note) } }
        // Brokers sharing a PostgreSQL database: one of them (the schedule lease holder) runs the scheduled work, and
        // each applies the changes the others announce.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        var lease: ScheduleLease?
        if let postgres = broker.store as? PostgresStore {
            let held = ScheduleLease()
            lease = held
            services.append(
                .init(
                    service: ReplicaService(
                        store: postgres,
                        keys: keyStore,
                        policy: policies,
                        audit: broker.audit,
                        lease: held,
                        leaseInterval: c.leaseInterval,
                        checkInterval: c.replicaCheckInterval,
                        logger: logger
                    )
                )
            )
        }
        services += [
            .init(service: KeyScheduleService(keys: keyStore, interval: c.keyScheduleInterval, lease: lease)),
            .init(service: StatusListRefreshService(tokens: tokens, logger: logger, lease: lease)),
            .init(service: CIIssuerRefreshService(tokens: tokens)),
            .init(
                service: DrainingHTTPService(
                    app: app,
                    registry: registry,
                    drainTimeout: c.connections.drainTimeout,
                    logger: logger
                )
            ),
        ]
        // Graceful shutdown runs in reverse order: the HTTP server (last) drains first, bounded by the drain time.
        var groupConfiguration = ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        )
        // A backstop only: the drain closes every connection at its deadline, and the other services stop at once.
        groupConfiguration.maximumGracefulShutdownDuration = c.connections.drainTimeout + .seconds(10)
        groupConfiguration.maximumCancellationDuration = .seconds(5)
        try await ServiceGroup(configuration: groupConfiguration).run()
        // After the drain: a PostgreSQL store's connection pool is closed (SQLite closes with the process).
        if let postgres = broker.store as? PostgresStore {
            await postgres.close()
        }
        logger.notice("stopped")
    }

    /// Raises the open-file limit as far as the hard limit allows, and derives the total connection cap from it.
    func connectionRegistry() -> ConnectionRegistry {
        let c = configuration
        let logger = c.logger
        var openFiles: UInt64 = 1024
        if let (before, after) = OpenFileLimit.raiseSoftToHard() {
            openFiles = after.soft
            logger.info(
                "open files: soft limit \(after.soft) (was \(before.soft)), hard limit \(after.hard)"
            )
        } else {
            logger.warning("cannot read the open-file limit; assuming \(openFiles)")
        }
        let total = c.connections.effectiveMaxConnections(openFiles: openFiles)
        if total < c.connections.maxConnections {
            logger.notice(
                "connections: the open-file limit \(openFiles) lowers the total cap from \(c.connections.maxConnections) to \(total) (\(ConnectionLimits.openFileHeadroom) descriptors kept for the rest)"
            )
        }
        let t = c.connections.timeouts
        logger.info(
            "connections: at most \(total) in total, \(c.connections.maxConnectionsPerAddress) per client address; timeouts: header \(t.header), body \(t.body), idle \(t.idle); drain \(c.connections.drainTimeout)"
        )
        return ConnectionRegistry(
            maxConnections: total,
            maxPerAddress: c.connections.maxConnectionsPerAddress,
            logger: logger
        )
    }

    /// The one-time first-start output. Unbuffered: the secrets must reach a redirected log before the server starts.
    func announceFirstStart(_ first: HumanBroker.Bootstrap) {
        let c = configuration
        func emit(_ s: String) { FileHandle.standardOutput.write(Data((s + "\n").utf8)) }
        emit(
            """
            First start: created the account '\(first.userName)' (group admins). This is shown ONCE.
              password:    \(first.password)
              TOTP secret: \(first.enrolment.secret)
              TOTP URI:    \(first.enrolment.uri)
            """
        )
        emit(first.enrolment.qr.terminal())
        emit("Sign in with: stagepass login --broker http://\(c.host):\(c.port) --user \(first.userName)")
        emit(
            "or in a browser: \(c.issuer ?? "http://\(c.host == "127.0.0.1" ? "localhost" : c.host):\(c.port)")/signin"
        )
    }
}
