public import Foundation
import StagepassJOSE

/// Everything the human-facing broker needs, wired once: store, audit log, accounts, factors, security keys and
/// sessions.
///
/// Security keys (WebAuthn) are scoped to `webAuthn` (RP ID and origins). The default,
/// ``WebAuthnConfiguration/localDevelopment``, is RP ID `localhost` with origins `http://localhost:8080` and
/// `http://127.0.0.1:8080`; a deployment passes its own, e.g.
/// `WebAuthnConfiguration(rpID: "sp.example.com", rpName: "Stagepass", origins: ["https://sp.example.com"])`.
///
/// ```swift
/// let broker = try HumanBroker.open(dataDirectory: ".stagepass")
/// if let first = try broker.bootstrapIfEmpty() { print(first.password, first.enrolment.uri) }
/// let s = try broker.sessions.requireMFA(token: bearer)
/// ```
public struct HumanBroker: Sendable {
    public let store: any BrokerStore
    public let audit: HashChainAuditLog
    public let accounts: AccountService
    public let factors: FactorService
    public let sessions: SessionService
    /// Security keys: registration, assertions, listing (WebAuthn Level 2).
    public let webauthn: WebAuthnService
    /// The one holder of the policy in force (every section); sign-in, throttles, tokens and pages read it per call.
    public let policies: PolicyHolder
    public let clock: BrokerClock

    /// The authentication sections of the policy in force (`mfa`, `sessions`, `throttle`).
    public var policy: AuthPolicy { policies.current.auth }

    public init(
        store: any BrokerStore,
        masterKey: MasterKey,
        policy: AuthPolicy = .default,
        hasher: PasswordHasher,
        clock: BrokerClock = .system,
        issuer: String = "Stagepass",
        webAuthn: WebAuthnConfiguration = .localDevelopment
    ) {
        self.init(
            store: store,
            masterKey: masterKey,
            policies: PolicyHolder(AccessPolicy(auth: policy)),
            hasher: hasher,
            clock: clock,
            issuer: issuer,
            webAuthn: webAuthn
        )
    }

    /// - Parameter policies: the holder of the whole policy; a ``TokenBroker`` built on this broker shares it.
    public init(
        store: any BrokerStore,
        masterKey: MasterKey,
        policies: PolicyHolder,
        hasher: PasswordHasher,
        clock: BrokerClock = .system,
        issuer: String = "Stagepass",
        webAuthn: WebAuthnConfiguration = .localDevelopment
    ) {
        self.store = store
        self.policies = policies
        self.clock = clock
        audit = HashChainAuditLog(store: store, clock: clock)
        accounts = AccountService(store: store, hasher: hasher, clock: clock, audit: audit)
        factors = FactorService(store: store, masterKey: masterKey, clock: clock, audit: audit, issuer: issuer)
        webauthn = WebAuthnService(store: store, configuration: webAuthn, clock: clock, audit: audit)
        sessions = SessionService(
            store: store,
            hasher: hasher,
            factors: factors,
            policies: policies,
            clock: clock,
            audit: audit,
            webauthn: webauthn
        )
    }

    /// The database file inside a data directory.
    public static func databasePath(_ dir: String) -> String {
        (dir as NSString).appendingPathComponent("broker.sqlite")
    }
    /// The master key file inside a data directory (used when `STAGEPASS_MASTER_KEY` is not set).
    public static func masterKeyPath(_ dir: String) -> String { (dir as NSString).appendingPathComponent("master.key") }

    /// Opens (creating, mode 0700; an existing one of this user is tightened to 0700) a data directory: the SQLite
    /// database (mode 0600), and the master key from `STAGEPASS_MASTER_KEY` or `DIR/master.key`, generating the file
    /// (mode 0600 from creation, ``SecretFile``) on first use; a key file others can read is refused.
    ///
    /// With `database` (a `postgres://` URL, see ``PostgresURL``) the store is ``PostgresStore`` on that database
    /// instead of the SQLite file; the master key still comes from the environment or the data directory, so brokers
    /// sharing one database must share that key.
    /// - Parameters:
    ///   - database: A PostgreSQL URL, or nil for SQLite in the data directory.
    ///   - webAuthn: RP ID and origins for security keys (default ``WebAuthnConfiguration/localDevelopment``:
    ///     RP ID `localhost`, origins `http://localhost:8080`, `http://127.0.0.1:8080`).
    /// - Throws: ``BrokerError/masterKey(_:)``, ``PostgresURL/ParseError``, or a database error.
    public static func open(
        dataDirectory dir: String,
        database: String? = nil,
        policy: AuthPolicy = .default,
        policies: PolicyHolder? = nil,
        hasherParameters: PasswordHasher.Parameters = .owasp,
        clock: BrokerClock = .system,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        webAuthn: WebAuthnConfiguration = .localDevelopment
    ) throws -> HumanBroker {
        do { try SecretFile.ensurePrivateDirectory(dir) } catch let e as SecretFileError {
            throw BrokerError.masterKey("data directory: \(e.detail)")
        }
        let keyFile = masterKeyPath(dir)
        var key = try MasterKey.load(environment: environment, keyFile: keyFile)
        if key == nil {
            let fresh = try MasterKey.generate()
            do {
                try SecretFile.write(Array((fresh.base64url + "\n").utf8), to: keyFile, replace: false)
            } catch let e as SecretFileError {
                throw BrokerError.masterKey("cannot write \(keyFile): \(e.detail)")
            }
            key = fresh
        }
        guard let key else { throw BrokerError.masterKey("no master key") }
        let store: any BrokerStore
        if let database {
            store = try openPostgresStore(database, environment: environment)
        } else {
            store = try SQLiteStore(path: databasePath(dir))
        }
        return HumanBroker(
            store: store,
            masterKey: key,
            policies: policies ?? PolicyHolder(AccessPolicy(auth: policy)),
            hasher: try PasswordHasher(parameters: hasherParameters),
            clock: clock,
            webAuthn: webAuthn
        )
    }

    /// What the first start prints, once.
    public struct Bootstrap: Sendable {
        public var userName: String
        public var password: String
        public var enrolment: TOTPEnrolment
    }

    /// On an empty database, creates the `admin` account (group `admins`) with a random password and a pending TOTP
    /// factor (activated by the first correct code at sign-in). Returns nil when any user exists.
    public func bootstrapIfEmpty(adminName: String = "admin") async throws -> Bootstrap? {
        guard try await store.allUsers().isEmpty else { return nil }
        let password = Base64URL.encode(try Crypto.randomBytes(18))
        try await accounts.add(name: adminName, password: password, groups: ["admins"], actor: "bootstrap")
        let enrolment = try await factors.enrolTOTP(userName: adminName, actor: "bootstrap")
        return Bootstrap(userName: adminName, password: password, enrolment: enrolment)
    }
}
