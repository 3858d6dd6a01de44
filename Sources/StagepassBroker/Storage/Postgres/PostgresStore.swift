public import Foundation
import Logging
import PostgresNIO
import StagepassJOSE
import Synchronization

/// ``BrokerStore`` on PostgreSQL, through PostgresNIO's `PostgresClient` and its connection pool.
///
/// Every ``BrokerStore`` call is asynchronous: it leases a pooled connection and suspends the calling task on the
/// network round trips, holding no thread. The blocking calls the key store needs (its keyring, its audit records:
/// ``KeyringDatabase``, ``AuditStore/appendAuditBlocking(time:event:chain:)``) wait through ``PostgresBridge``, on the
/// key store's own executor. Every query binds its values (`PostgresQuery` interpolation sends them as parameters,
/// never as SQL text).
///
/// Guarantees, the same as ``SQLiteStore``'s (one conformance suite, `StoreConformanceTests`, runs on both):
/// - Compare-and-set writes are single statements (`UPDATE … WHERE <expected> RETURNING`, `DELETE … RETURNING`):
///   a TOTP step, a backup code, a WebAuthn counter value and a WebAuthn challenge are each accepted once.
/// - The audit chain is serialised across connections and processes: every transaction that appends a record first
///   takes the transaction-scoped advisory lock ``LockKey/auditChain``, then reads the last record (READ COMMITTED:
///   a fresh snapshot after the lock) and inserts the next. Token `seq`s (status-list indexes) are assigned under the
///   same lock, unique (primary key) and without gaps.
/// - Throttle reservations take a per-key advisory lock (keys in sorted order) for the read-check-write, so
///   concurrent reservations never exceed the limit.
/// - Unique violations become ``StoreError/conflict``, foreign-key violations ``StoreError/notFound``.
///
/// Lifetime: `PostgresClient.run()` runs in a task the store owns, started by the initialiser. ``close()`` cancels it
/// (the pool closes its connections) and waits for it; `deinit` cancels it too. The schema is migrated by the
/// initialiser (``PostgresMigrations``).
public final class PostgresStore: BrokerStore {
    /// Where the store connects (its description never shows the password).
    public let url: PostgresURL
    let client: PostgresClient
    let bridge: PostgresBridge
    let logger: Logger
    /// This store's (this process's) identity in change notifications, so a broker ignores its own announcements.
    public let instance = UUID().uuidString
    private let runTask: Task<Void, Never>

    /// Advisory lock keys (`pg_advisory_xact_lock(space, key)`), in this application's key space.
    enum LockKey: Int32 {
        /// Held while migrating.
        case migrations = 1
        /// Held while appending to the audit chain (and assigning token `seq`s).
        case auditChain = 2
        /// The throttle locks' space: the second key is `hashtext(key)`.
        case throttle = 3
        /// Held while creating status lists.
        case statusLists = 4
        /// The schedule lease (``ScheduleLease``): a session-level lock held by one broker at a time.
        case scheduleLease = 5
    }
    /// "SP" in ASCII: keeps these locks apart from other applications' advisory locks in the same database.
    static let lockSpace: Int32 = 0x5350

    /// Connects (the pool opens connections on demand) and migrates the schema.
    /// - Parameters:
    ///   - url: A `postgres://` URL (see ``PostgresURL``).
    ///   - maximumConnections: The pool's size.
    /// - Throws: ``PostgresURL/ParseError``; ``StoreError/backend(_:)`` when the server cannot be reached or the
    ///   migrations fail.
    ///   - openTimeout: How long opening (connecting and migrating) may take before it fails.
    public convenience init(
        url: String,
        maximumConnections: Int = 10,
        openTimeout: Duration = .seconds(30),
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws {
        try self.init(
            url: try PostgresURL(url, environment: environment),
            maximumConnections: maximumConnections,
            openTimeout: openTimeout
        )
    }

    public convenience init(url: PostgresURL, maximumConnections: Int = 10, openTimeout: Duration = .seconds(30)) throws
    {
        self.init(unopened: url, maximumConnections: maximumConnections)
        // Blocking: the caller is on a thread of its own (a blocking lane, the key store's executor), never the pool.
        try bridge.wait { try await self.migrate(openTimeout: openTimeout) }
    }

    /// ``init(url:maximumConnections:openTimeout:)`` without blocking: connects and migrates while the calling task
    /// suspends.
    public static func open(
        url: PostgresURL,
        maximumConnections: Int = 10,
        openTimeout: Duration = .seconds(30)
    ) async throws -> PostgresStore {
        let store = PostgresStore(unopened: url, maximumConnections: maximumConnections)
        try await store.migrate(openTimeout: openTimeout)
        return store
    }

    /// ``open(url:maximumConnections:openTimeout:)`` from a URL string.
    public static func open(
        url: String,
        maximumConnections: Int = 10,
        openTimeout: Duration = .seconds(30),
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws -> PostgresStore {
        try await open(
            url: try PostgresURL(url, environment: environment),
            maximumConnections: maximumConnections,
            openTimeout: openTimeout
        )
    }

    /// The pool, started, with the schema not yet checked.
    private init(unopened url: PostgresURL, maximumConnections: Int) {
        self.url = url
        var quiet = Logger(label: "stagepass.postgres")
        quiet.logLevel = .warning
        let log = quiet
        logger = log
        var config: PostgresClient.Configuration
        switch url.endpoint {
        case .tcp(let host, let port):
            let tls: PostgresClient.Configuration.TLS
            switch url.tls {
            case .disable: tls = .disable
            case .prefer: tls = .prefer(.makeClientConfiguration())
            case .require: tls = .require(.makeClientConfiguration())
            }
            config = .init(
                host: host,
                port: port,
                username: url.user,
                password: url.password,
                database: url.database,
                tls: tls
            )
        case .socket(let path):
            config = .init(unixSocketPath: path, username: url.user, password: url.password, database: url.database)
        }
        config.options.maximumConnections = max(1, maximumConnections)
        config.options.connectTimeout = .seconds(10)
        config.options.additionalStartupParameters = [("application_name", "stagepass")]
        let client = PostgresClient(configuration: config, backgroundLogger: log)
        self.client = client
        let bridge = PostgresBridge(
            label: "stagepass.postgres",
            lanes: max(2, ProcessInfo.processInfo.activeProcessorCount),
            logger: log
        )
        self.bridge = bridge
        runTask = Task(executorPreference: bridge.executor) { await client.run() }
    }

    /// Migrates the schema (``PostgresMigrations``); the pool retries a failing connection with backoff, and opening
    /// gives up after `openTimeout`. On failure the pool is stopped.
    private func migrate(openTimeout: Duration) async throws {
        let (client, log, url) = (self.client, self.logger, self.url)
        do {
            let applied = try await withThrowingTaskGroup(of: [String]?.self) { group in
                group.addTask { try await PostgresMigrations.migrate(client, logger: log) }
                group.addTask {
                    try await Task.sleep(for: openTimeout)
                    return nil
                }
                let first = try await group.next()
                group.cancelAll()
                guard let applied = first ?? nil else {
                    throw StoreError.backend("no answer within \(openTimeout)")
                }
                return applied
            }
            if !applied.isEmpty { log.notice("migrated \(url.redacted): \(applied.joined(separator: ", "))") }
        } catch {
            runTask.cancel()
            let mapped = Self.storeError(error, "cannot open \(url.redacted)")
            if let fault = mapped as? StorageFault { throw StoreError.backend("cannot open \(url.redacted): \(fault)") }
            throw mapped
        }
    }

    deinit { runTask.cancel() }

    /// Stops the pool: cancels the client's `run()` task (its connections close) and waits until it has returned.
    /// Calls after this fail with ``StoreError/backend(_:)``.
    public func close() async {
        runTask.cancel()
        await runTask.value
    }

    // MARK: plumbing

    /// Runs `body` in a transaction (READ COMMITTED, PostgreSQL's default) on a pooled connection; the calling task
    /// suspends meanwhile (no thread waits). A serialisation failure or a deadlock (SQLSTATE 40001, 40P01) is
    /// retried a few times; other errors go through ``storeError(_:_:)``. The call runs in a task of its own, so it
    /// is not cancelled with the caller's: once asked for, a transaction runs to its commit or rollback.
    func transaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T
    {
        let (client, logger) = (self.client, self.logger)
        return try await Task {
            var attempt = 0
            while true {
                attempt += 1
                do {
                    return try await Self.leased(client) { conn in
                        try await conn.withTransaction(logger: logger) { c in try await body(c) }
                    }
                } catch {
                    if attempt < 5, Self.isRetryable(error) { continue }
                    throw Self.storeError(error, "PostgreSQL transaction failed")
                }
            }
        }.value
    }

    /// Runs one statement outside an explicit transaction and returns its rows (the calling task suspends).
    func rows(_ query: PostgresQuery) async throws -> [PostgresRow] {
        let (client, logger) = (self.client, self.logger)
        return try await Task {
            do {
                return try await Self.leased(client) { conn in try await Self.collect(conn.query(query, logger: logger))
                }
            } catch {
                throw Self.storeError(error, "PostgreSQL query failed")
            }
        }.value
    }

    /// ``transaction(_:)`` blocking the calling thread (``PostgresBridge``): for the key store's keyring and audit
    /// records, which run on an executor of their own, never on the cooperative pool.
    func transactionBlocking<T: Sendable>(
        _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) throws
        -> T
    {
        try bridge.wait { try await self.transaction(body) }
    }

    /// ``rows(_:)`` blocking the calling thread (same callers as ``transactionBlocking(_:)``).
    func rowsBlocking(_ query: PostgresQuery) throws -> [PostgresRow] {
        try bridge.wait { try await self.rows(query) }
    }

    /// How long a call waits for a pooled connection before it fails as ``StorageFault/Cause/unreachable``: the
    /// pool keeps retrying a server that went away (and only gives up after its circuit breaker trips, a minute
    /// later), and a request must not hang meanwhile.
    static let leaseTimeout: Duration = .seconds(5)

    /// Runs `body` on a pooled connection, or fails as ``StorageFault/Cause/unreachable`` when no connection was
    /// leased within ``leaseTimeout``. The deadline only ever stops a call that has not started: `body` and the
    /// deadline race on one atomic state, so a call that got its connection runs to its end (a commit is never cut
    /// off), and a call that timed out never runs.
    static func leased<T: Sendable>(
        _ client: PostgresClient,
        _ body: @escaping (PostgresConnection) async throws -> T
    ) async throws -> T {
        // `body` runs at most once, in the one child task below, while this call waits for it: never concurrently.
        nonisolated(unsafe) let body = body
        let state = LeaseRace()
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                try await client.withConnection { conn in
                    guard state.claim(.started) else { throw CancellationError() }
                    return try await body(conn)
                }
            }
            group.addTask {
                try? await Task.sleep(for: leaseTimeout)
                if state.claim(.timedOut) {
                    throw StorageFault(.unreachable, sqlState: "no connection within \(leaseTimeout)")
                }
                return nil
            }
            while let next = try await group.next() {
                if let value = next {
                    group.cancelAll()
                    return value
                }
            }
            throw StoreError.backend("PostgreSQL call ended without a result")
        }
    }

    /// Who won the race between a leased call and its deadline (``leased(_:_:)``): the first to claim it.
    final class LeaseRace: Sendable {
        enum Outcome: Int {
            case started = 1
            case timedOut = 2
        }
        private let state = Atomic<Int>(0)
        func claim(_ outcome: Outcome) -> Bool {
            state.compareExchange(expected: 0, desired: outcome.rawValue, ordering: .acquiringAndReleasing).exchanged
        }
    }

    /// Runs one statement and counts the rows it returned (`… RETURNING 1` counts the rows changed).
    func count(_ query: PostgresQuery) async throws -> Int { try await rows(query).count }

    static func collect(_ sequence: PostgresRowSequence) async throws -> [PostgresRow] {
        var out: [PostgresRow] = []
        for try await row in sequence { out.append(row) }
        return out
    }

    static func drain(_ sequence: PostgresRowSequence) async throws {
        for try await _ in sequence {}
    }

    /// Takes a transaction-scoped advisory lock (released at commit or rollback).
    static func lock(_ conn: PostgresConnection, _ key: LockKey, logger: Logger) async throws {
        try await drain(conn.query("SELECT pg_advisory_xact_lock(\(lockSpace + key.rawValue), 0)", logger: logger))
    }

    /// The per-key throttle lock.
    static func lockThrottle(_ conn: PostgresConnection, key: String, logger: Logger) async throws {
        let space = lockSpace + LockKey.throttle.rawValue
        try await drain(conn.query("SELECT pg_advisory_xact_lock(\(space), hashtext(\(key)))", logger: logger))
    }

    private static func sqlState(_ error: any Error) -> String? {
        if let e = error as? PostgresTransactionError {
            return (e.closureError ?? e.beginError ?? e.commitError).flatMap(sqlState)
        }
        return (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    static func isRetryable(_ error: any Error) -> Bool {
        let state = sqlState(error)
        return state == "40001" || state == "40P01"
    }

    /// Maps PostgresNIO's errors to ``StoreError`` (a ``StoreError`` or ``StoreTransferError`` thrown inside a
    /// transaction passes through).
    /// Messages name the SQLSTATE and the server's primary message, never the statement's values.
    static func storeError(_ error: any Error, _ context: String) -> any Error {
        if let e = error as? StoreError { return e }
        if let fault = PostgresFault.classify(error) { return fault }
        if let e = error as? StoreTransferError { return e }
        if let e = error as? PostgresTransactionError {
            if let inner = e.closureError ?? e.beginError ?? e.commitError { return storeError(inner, context) }
            return StoreError.backend("\(context): transaction error")
        }
        if let e = error as? PSQLError {
            let message = e.serverInfo?[.message] ?? "\(e.code)"
            switch e.serverInfo?[.sqlState] {
            case "23505": return StoreError.conflict(message)
            case "23503": return StoreError.notFound(message)
            case let state?: return StoreError.backend("\(context): \(state) \(message)")
            case nil: return StoreError.backend("\(context): \(e.code)")
            }
        }
        if error is CancellationError { return StoreError.backend("\(context): the store is closed") }
        return StoreError.backend("\(context): \(error)")
    }

    /// A row's columns by name.
    struct Cells {
        let row: PostgresRandomAccessRow
        init(_ row: PostgresRow) { self.row = row.makeRandomAccess() }
        func callAsFunction<T: PostgresDecodable>(_ name: String) throws -> T { try row[name].decode(T.self) }
        func bytes(_ name: String) throws -> [UInt8] { [UInt8](try row[name].decode(Data.self)) }
        func optionalBytes(_ name: String) throws -> [UInt8]? { try row[name].decode(Data?.self).map { [UInt8]($0) } }
    }

    static func json(_ list: [String]) throws -> String {
        String(decoding: try JSONEncoder().encode(list), as: UTF8.self)
    }

    static func strings(_ json: String) -> [String] {
        (try? JSONDecoder().decode([String].self, from: Data(json.utf8))) ?? []
    }

    static func proofsJSON(_ proofs: [String: FactorStamp]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(proofs), as: UTF8.self)
    }

    // MARK: users and groups

    public func insertUser(_ user: UserRecord, groups: [String]) async throws {
        let logger = self.logger
        do {
            try await transaction { conn in
                try await Self.drain(
                    conn.query(
                        """
                        INSERT INTO users (id, name, password_hash, disabled, locked, created_at)
                        VALUES (\(user.id), \(user.name), \(user.passwordHash), \(user.disabled), \(user.locked),
                                \(user.createdAt))
                        """,
                        logger: logger
                    )
                )
                try await Self.writeGroups(conn, userId: user.id, groups, logger: logger)
            }
        } catch let e as StoreError where e == .conflict {
            throw StoreError.conflict("user \(user.name) exists")
        }
    }

    private static func writeGroups(
        _ conn: PostgresConnection,
        userId: String,
        _ groups: [String],
        logger: Logger
    ) async throws {
        try await drain(conn.query("DELETE FROM memberships WHERE user_id = \(userId)", logger: logger))
        for g in Set(groups).sorted() {
            try await drain(
                conn.query("INSERT INTO groups (name) VALUES (\(g)) ON CONFLICT DO NOTHING", logger: logger)
            )
            try await drain(
                conn.query("INSERT INTO memberships (user_id, group_name) VALUES (\(userId), \(g))", logger: logger)
            )
        }
    }

    static func user(_ row: PostgresRow) throws -> UserRecord {
        let c = Cells(row)
        return UserRecord(
            id: try c("id"),
            name: try c("name"),
            passwordHash: try c("password_hash"),
            disabled: try c("disabled"),
            locked: try c("locked"),
            createdAt: try c("created_at")
        )
    }

    public func user(named name: String) async throws -> UserRecord? {
        try await rows("SELECT * FROM users WHERE name = \(name)").first.map(Self.user)
    }

    public func user(id: String) async throws -> UserRecord? {
        try await rows("SELECT * FROM users WHERE id = \(id)").first.map(Self.user)
    }

    public func allUsers() async throws -> [UserRecord] {
        try await rows("SELECT * FROM users ORDER BY name COLLATE \"C\"").map(Self.user)
    }

    public func setDisabled(userId: String, _ disabled: Bool) async throws {
        let n = try await count("UPDATE users SET disabled = \(disabled) WHERE id = \(userId) RETURNING 1")
        if n == 0 { throw StoreError.notFound("no such user") }
    }

    public func setLocked(userId: String, _ locked: Bool) async throws {
        let n = try await count("UPDATE users SET locked = \(locked) WHERE id = \(userId) RETURNING 1")
        if n == 0 { throw StoreError.notFound("no such user") }
    }

    public func setPasswordHash(userId: String, _ hash: String) async throws {
        let n = try await count("UPDATE users SET password_hash = \(hash) WHERE id = \(userId) RETURNING 1")
        if n == 0 { throw StoreError.notFound("no such user") }
    }

    public func groups(ofUser userId: String) async throws -> [String] {
        try await rows("SELECT group_name FROM memberships WHERE user_id = \(userId) ORDER BY group_name COLLATE \"C\"")
            .map { try $0.decode(String.self) }
    }

    public func setGroups(userId: String, _ groups: [String]) async throws {
        let logger = self.logger
        try await transaction { conn in
            let found = try await Self.collect(
                conn.query("SELECT 1 FROM users WHERE id = \(userId) FOR UPDATE", logger: logger)
            )
            guard !found.isEmpty else { throw StoreError.notFound("no such user") }
            try await Self.writeGroups(conn, userId: userId, groups, logger: logger)
        }
    }

    public func allGroups() async throws -> [String] {
        try await rows("SELECT name FROM groups ORDER BY name COLLATE \"C\"").map { try $0.decode(String.self) }
    }

    // MARK: factors

    static func factor(_ row: PostgresRow) throws -> FactorRecord? {
        let c = Cells(row)
        guard let kind = FactorKind(rawValue: try c("kind")), let state = FactorState(rawValue: try c("state")) else {
            return nil
        }
        return FactorRecord(
            id: try c("id"),
            userId: try c("user_id"),
            kind: kind,
            state: state,
            secretBox: try c.optionalBytes("secret_box"),
            lastUsedStep: try c("last_used_step"),
            createdAt: try c("created_at"),
            lastUsedAt: try c("last_used_at")
        )
    }

    public func insertFactor(_ f: FactorRecord) async throws {
        _ = try await rows(
            """
            INSERT INTO factors (id, user_id, kind, state, secret_box, last_used_step, created_at)
            VALUES (\(f.id), \(f.userId), \(f.kind.rawValue), \(f.state.rawValue), \(f.secretBox.map { Data($0) }),
                    \(f.lastUsedStep), \(f.createdAt))
            """
        )
    }

    public func factor(id: String) async throws -> FactorRecord? {
        try await rows("SELECT * FROM factors WHERE id = \(id)").first.flatMap(Self.factor)
    }

    public func factors(ofUser userId: String) async throws -> [FactorRecord] {
        try await rows("SELECT * FROM factors WHERE user_id = \(userId) ORDER BY created_at, id COLLATE \"C\"")
            .compactMap(Self.factor)
    }

    public func factors(kind: FactorKind) async throws -> [FactorRecord] {
        try await rows("SELECT * FROM factors WHERE kind = \(kind.rawValue) ORDER BY id COLLATE \"C\"").compactMap(
            Self.factor
        )
    }

    public func setFactorState(id: String, _ state: FactorState) async throws {
        let n = try await count("UPDATE factors SET state = \(state.rawValue) WHERE id = \(id) RETURNING 1")
        if n == 0 { throw StoreError.notFound("no such factor") }
    }

    public func deleteFactor(id: String) async throws {
        _ = try await rows("DELETE FROM factors WHERE id = \(id)")
    }

    public func deletePendingFactors(userId: String, kind: FactorKind) async throws {
        _ = try await rows(
            "DELETE FROM factors WHERE user_id = \(userId) AND kind = \(kind.rawValue) AND state = 'pending'"
        )
    }

    public func replaceSecretBoxes(_ boxes: [String: [UInt8]]) async throws {
        let logger = self.logger
        try await transaction { conn in
            for (id, box) in boxes.sorted(by: { $0.key < $1.key }) {
                let changed = try await Self.collect(
                    conn.query(
                        "UPDATE factors SET secret_box = \(Data(box)) WHERE id = \(id) RETURNING 1",
                        logger: logger
                    )
                )
                if changed.isEmpty { throw StoreError.notFound("no such factor \(id)") }
            }
        }
    }

    public func claimTOTPStep(factorId: String, step: Int64) async throws -> Bool {
        try await count(
            """
            UPDATE factors SET last_used_step = \(step)
            WHERE id = \(factorId) AND (last_used_step IS NULL OR last_used_step < \(step))
            RETURNING 1
            """
        ) == 1
    }

    public func touchFactor(id: String, at: Int64) async throws {
        _ = try await rows("UPDATE factors SET last_used_at = \(at) WHERE id = \(id)")
    }

    // MARK: backup codes

    public func replaceBackupCodes(userId: String, hashes: [[UInt8]]) async throws {
        let logger = self.logger
        try await transaction { conn in
            try await Self.drain(conn.query("DELETE FROM backup_codes WHERE user_id = \(userId)", logger: logger))
            for h in hashes {
                try await Self.drain(
                    conn.query(
                        "INSERT INTO backup_codes (user_id, code_hash) VALUES (\(userId), \(Data(h)))",
                        logger: logger
                    )
                )
            }
        }
    }

    public func unusedBackupCodes(userId: String) async throws -> [BackupCodeRecord] {
        try await rows("SELECT * FROM backup_codes WHERE user_id = \(userId) AND used_at IS NULL ORDER BY id").map {
            row in
            let c = Cells(row)
            return BackupCodeRecord(
                id: try c("id"),
                userId: try c("user_id"),
                codeHash: try c.bytes("code_hash"),
                usedAt: try c("used_at")
            )
        }
    }

    public func consumeBackupCode(id: Int64, at: Int64) async throws -> Bool {
        try await count("UPDATE backup_codes SET used_at = \(at) WHERE id = \(id) AND used_at IS NULL RETURNING 1") == 1
    }

    // MARK: sessions

    static func session(_ row: PostgresRow) throws -> SessionRecord? {
        let c = Cells(row)
        guard let state = SessionState(rawValue: try c("state")) else { return nil }
        let proofsJSON: String = try c("proofs")
        // An unreadable proofs column proves nothing (fail closed), as in SQLiteStore.
        let proofs = (try? JSONDecoder().decode([String: FactorStamp].self, from: Data(proofsJSON.utf8))) ?? [:]
        return SessionRecord(
            id: try c("id"),
            tokenHash: try c.bytes("token_hash"),
            userId: try c("user_id"),
            state: state,
            amr: strings(try c("amr")),
            authTime: try c("auth_time"),
            createdAt: try c("created_at"),
            idleExpiresAt: try c("idle_expires_at"),
            absoluteExpiresAt: try c("absolute_expires_at"),
            proofs: proofs
        )
    }

    public func insertSession(_ s: SessionRecord) async throws {
        let (amr, proofs) = (try Self.json(s.amr), try Self.proofsJSON(s.proofs))
        _ = try await rows(
            """
            INSERT INTO sessions (id, token_hash, user_id, state, amr, auth_time, created_at, idle_expires_at,
                                  absolute_expires_at, proofs)
            VALUES (\(s.id), \(Data(s.tokenHash)), \(s.userId), \(s.state.rawValue), \(amr), \(s.authTime),
                    \(s.createdAt), \(s.idleExpiresAt), \(s.absoluteExpiresAt), \(proofs))
            """
        )
    }

    public func session(tokenHash: [UInt8]) async throws -> SessionRecord? {
        try await rows("SELECT * FROM sessions WHERE token_hash = \(Data(tokenHash))").first.flatMap(Self.session)
    }

    public func sessionHolder(tokenHash: [UInt8]) async throws -> SessionHolder? {
        // One statement, one round trip: the session row, its user's columns (prefixed) and the sorted groups.
        let found = try await rows(
            """
            SELECT s.*, u.name AS u_name, u.password_hash AS u_password_hash, u.disabled AS u_disabled,
                   u.locked AS u_locked, u.created_at AS u_created_at,
                   ARRAY(SELECT m.group_name FROM memberships m WHERE m.user_id = s.user_id
                         ORDER BY m.group_name COLLATE "C") AS u_groups
            FROM sessions s JOIN users u ON u.id = s.user_id
            WHERE s.token_hash = \(Data(tokenHash))
            """
        )
        guard let row = found.first, let session = try Self.session(row) else { return nil }
        let c = Cells(row)
        let user = UserRecord(
            id: session.userId,
            name: try c("u_name"),
            passwordHash: try c("u_password_hash"),
            disabled: try c("u_disabled"),
            locked: try c("u_locked"),
            createdAt: try c("u_created_at")
        )
        return SessionHolder(session: session, user: user, groups: try c("u_groups"))
    }

    public func session(id: String) async throws -> SessionRecord? {
        try await rows("SELECT * FROM sessions WHERE id = \(id)").first.flatMap(Self.session)
    }

    public func updateSession(_ s: SessionRecord) async throws {
        let (amr, proofs) = (try Self.json(s.amr), try Self.proofsJSON(s.proofs))
        let n = try await count(
            """
            UPDATE sessions SET token_hash = \(Data(s.tokenHash)), state = \(s.state.rawValue), amr = \(amr),
                auth_time = \(s.authTime), idle_expires_at = \(s.idleExpiresAt),
                absolute_expires_at = \(s.absoluteExpiresAt), proofs = \(proofs)
            WHERE id = \(s.id)
            RETURNING 1
            """
        )
        if n == 0 { throw StoreError.notFound("no such session") }
    }

    public func deleteSession(id: String) async throws {
        _ = try await rows("DELETE FROM sessions WHERE id = \(id)")
    }

    public func deleteSessions(userId: String) async throws {
        _ = try await rows("DELETE FROM sessions WHERE user_id = \(userId)")
    }

    public func sessions(userId: String) async throws -> [SessionRecord] {
        try await rows("SELECT * FROM sessions WHERE user_id = \(userId) ORDER BY created_at, id COLLATE \"C\"")
            .compactMap(Self.session)
    }

    public func deleteExpiredSessions(now: Int64) async throws -> Int {
        try await count(
            "DELETE FROM sessions WHERE idle_expires_at <= \(now) OR absolute_expires_at <= \(now) RETURNING 1"
        )
    }

    // MARK: DPoP proofs

    public func recordDPoPProof(key: String, expiresAt: Int64, now: Int64) async throws -> Bool {
        let hash = Data(try Crypto.sha256(Array(key.utf8)))
        let logger = self.logger
        return try await transaction { conn in
            try await Self.drain(conn.query("DELETE FROM dpop_proofs WHERE expires_at <= \(now)", logger: logger))
            let inserted = try await Self.collect(
                conn.query(
                    """
                    INSERT INTO dpop_proofs (key_hash, expires_at) VALUES (\(hash), \(expiresAt))
                    ON CONFLICT (key_hash) DO NOTHING RETURNING 1
                    """,
                    logger: logger
                )
            )
            return inserted.count == 1
        }
    }

    // MARK: throttling

    public func throttle(key: String) async throws -> ThrottleRecord? {
        try await rows("SELECT failures, last_failure_at FROM throttles WHERE key = \(key)").first.map { row in
            let (failures, last) = try row.decode((Int, Int64).self)
            return ThrottleRecord(key: key, failures: failures, lastFailureAt: last)
        }
    }

    public func putThrottle(_ r: ThrottleRecord) async throws {
        let logger = self.logger
        try await transaction { conn in
            try await Self.lockThrottle(conn, key: r.key, logger: logger)
            try await Self.drain(
                conn.query(
                    """
                    INSERT INTO throttles (key, failures, last_failure_at) VALUES (\(r.key), \(r.failures), \(r.lastFailureAt))
                    ON CONFLICT (key) DO UPDATE SET failures = excluded.failures,
                                                    last_failure_at = excluded.last_failure_at
                    """,
                    logger: logger
                )
            )
        }
    }

    public func clearThrottle(key: String) async throws {
        let logger = self.logger
        try await transaction { conn in
            try await Self.lockThrottle(conn, key: key, logger: logger)
            try await Self.drain(conn.query("DELETE FROM throttles WHERE key = \(key)", logger: logger))
        }
    }

    public func reserveAttempt(
        keys: [String],
        now: Int64,
        window: Int64,
        delay: @escaping @Sendable (Int) -> Int64
    ) async throws
        -> ThrottleReservation
    {
        let logger = self.logger
        // Every key's lock first, in sorted order (no two reservations wait for each other in a cycle); then the
        // same read-check-write as SQLiteStore's, which no other reservation or refund of these keys can interleave.
        return try await withoutActuallyEscaping(delay) { delay in
            try await transaction { conn in
                for key in Set(keys).sorted() { try await Self.lockThrottle(conn, key: key, logger: logger) }
                var current: [Int] = []
                var previous: [Int64?] = []
                var wait: Int64 = 0
                for key in keys {
                    let found = try await Self.collect(
                        conn.query("SELECT failures, last_failure_at FROM throttles WHERE key = \(key)", logger: logger)
                    )
                    guard let row = found.first else {
                        current.append(0)
                        previous.append(nil)
                        continue
                    }
                    let (failures, last) = try row.decode((Int, Int64).self)
                    guard now - last < window else {
                        current.append(0)
                        previous.append(nil)
                        continue
                    }
                    current.append(failures)
                    previous.append(last)
                    let until = last + delay(failures)
                    if until > now { wait = max(wait, until - now) }
                }
                if wait > 0 { return ThrottleReservation.throttled(retryAfter: wait) }
                for (key, n) in zip(keys, current) {
                    try await Self.drain(
                        conn.query(
                            """
                            INSERT INTO throttles (key, failures, last_failure_at) VALUES (\(key), \(n + 1), \(now))
                            ON CONFLICT (key) DO UPDATE SET failures = excluded.failures,
                                                            last_failure_at = excluded.last_failure_at
                            """,
                            logger: logger
                        )
                    )
                }
                return ThrottleReservation.reserved(counts: current.map { $0 + 1 }, previous: previous)
            }
        }
    }

    public func refundAttempt(key: String, reservedAt: Int64, previous: Int64?) async throws {
        let logger = self.logger
        let restore = previous ?? 0
        try await transaction { conn in
            try await Self.lockThrottle(conn, key: key, logger: logger)
            try await Self.drain(
                conn.query(
                    """
                    UPDATE throttles SET failures = GREATEST(failures - 1, 0),
                        last_failure_at = CASE WHEN last_failure_at = \(reservedAt) THEN \(restore)
                                               ELSE last_failure_at END
                    WHERE key = \(key)
                    """,
                    logger: logger
                )
            )
            try await Self.drain(
                conn.query("DELETE FROM throttles WHERE key = \(key) AND failures = 0", logger: logger)
            )
        }
    }

    // MARK: audit

    static func auditRow(_ row: PostgresRow) throws -> AuditRow {
        let (seq, time, prev, event, hash) = try row.decode((Int64, Int64, String, String, String).self)
        return AuditRow(seq: seq, time: time, prevHash: prev, event: event, hash: hash)
    }

    public func appendAudit(
        time: Int64,
        event: String,
        chain: @escaping @Sendable (AuditRow?) throws -> AuditRow
    ) async throws -> AuditRow {
        let logger = self.logger
        return try await transaction { conn in try await Self.appendAudit(conn, chain, logger: logger) }
    }

    public func appendAuditBlocking(
        time: Int64,
        event: String,
        chain: (AuditRow?) throws -> AuditRow
    ) throws -> AuditRow {
        let logger = self.logger
        return try withoutActuallyEscaping(chain) { chain in
            // `chain` runs once inside this blocked call, never concurrently with the caller.
            nonisolated(unsafe) let chain = chain
            return try transactionBlocking { conn in try await Self.appendAudit(conn, chain, logger: logger) }
        }
    }

    public func auditEventsBlocking(withActionPrefix prefix: String) throws -> [String] {
        let pattern = "{\"action\":\"\(prefix.replacingOccurrences(of: "_", with: "\\_"))%"
        return try rowsBlocking("SELECT event FROM audit_log WHERE event LIKE \(pattern) ESCAPE '\\' ORDER BY seq")
            .map { try $0.decode(String.self) }
    }

    /// Appends one chained audit record inside the caller's transaction, under the chain lock (taken here if the
    /// caller has not taken it yet; a transaction may take it more than once).
    static func appendAudit(
        _ conn: PostgresConnection,
        _ chain: (AuditRow?) throws -> AuditRow,
        logger: Logger
    ) async throws -> AuditRow {
        try await lock(conn, .auditChain, logger: logger)
        let last = try await collect(
            conn.query(
                "SELECT seq, time, prev_hash, event, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
                logger: logger
            )
        ).first.map(auditRow)
        let row = try chain(last)
        try await drain(
            conn.query(
                """
                INSERT INTO audit_log (seq, time, prev_hash, event, hash)
                VALUES (\(row.seq), \(row.time), \(row.prevHash), \(row.event), \(row.hash))
                """,
                logger: logger
            )
        )
        return row
    }

    public func auditRows(after seq: Int64, limit: Int) async throws -> [AuditRow] {
        try await rows(
            "SELECT seq, time, prev_hash, event, hash FROM audit_log WHERE seq > \(seq) ORDER BY seq LIMIT \(Int64(limit))"
        ).map(Self.auditRow)
    }

    public func ping() async throws {
        _ = try await rows("SELECT 1")
    }

    /// Test hook: runs raw constant SQL (tamper tests use it to try to bypass the append-only triggers).
    package func unsafeExecute(_ sql: String) async throws {
        _ = try await rows(PostgresQuery(unsafeSQL: sql))
    }
}
