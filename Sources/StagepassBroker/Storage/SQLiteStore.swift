import Foundation
public import GRDB
import StagepassJOSE

/// The embedded default ``BrokerStore``: SQLite through GRDB.
///
/// Files use a `DatabasePool` (WAL journal, concurrent readers); tests use an in-memory `DatabaseQueue`.
/// Foreign keys are on (GRDB's default) and every table is created by ``SQLiteStore/migrator``.
/// Related SQLite documentation: <https://www.sqlite.org/wal.html>, <https://www.sqlite.org/foreignkeys.html>
public final class SQLiteStore: BrokerStore {
    let db: SQLiteAccess
    /// The outcome of the latest write, kept by every write and by ``ping()``.
    public let health: StorageHealth
    /// ``ping()`` reports ``StorageFault/Cause/diskFull`` while the database's file system has fewer bytes free.
    let minimumFreeBytes: Int64

    /// A `-wal` file larger than this after a commit is checkpointed and truncated.
    public static let defaultWALTruncateBytes: Int64 = 1 << 20
    /// `/readyz` is not ready below this many free bytes on the database's file system.
    public static let defaultMinimumFreeBytes: Int64 = 1 << 20

    /// Opens (creating if needed) `path` in WAL mode and runs the migrations.
    ///
    /// The database holds password hashes, sealed factor secrets and session hashes: the file is created mode 0600
    /// before SQLite opens it (SQLite gives its `-wal` and `-shm` files the database file's mode), and an existing
    /// file, `-wal` or `-shm` that group or others can use is tightened to 0600 (``SecretFile``). A write waits up
    /// to `busyTimeout` seconds for another writer (another process on the same file) before it fails as
    /// ``StorageFault/Cause/locked``.
    /// - Throws: ``StorageFault`` when SQLite cannot open or migrate the file (full, read-only, locked, corrupt,
    ///   I/O error), else a GRDB `DatabaseError`; ``SecretFileError`` when the file's mode cannot be made 0600.
    public init(
        path: String,
        walTruncateBytes: Int64 = SQLiteStore.defaultWALTruncateBytes,
        minimumFreeBytes: Int64 = SQLiteStore.defaultMinimumFreeBytes,
        busyTimeout: Double = 5
    ) throws {
        try SecretFile.ensurePrivateFile(path)
        try SecretFile.tightenIfPresent(path + "-wal")
        try SecretFile.tightenIfPresent(path + "-shm")
        var config = Configuration()
        config.foreignKeysEnabled = true
        config.busyMode = .timeout(busyTimeout)
        config.prepareDatabase { db in
            // A committed transaction survives power loss, not only a crash of this process: every issued token's
            // ledger row and audit record are on disk before the token is returned (https://www.sqlite.org/pragma.html#pragma_synchronous).
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // A log reset after a checkpoint keeps at most this much on disk (https://www.sqlite.org/pragma.html#pragma_journal_size_limit).
            try db.execute(sql: "PRAGMA journal_size_limit = \(walTruncateBytes)")
        }
        let health = StorageHealth()
        self.health = health
        self.minimumFreeBytes = minimumFreeBytes
        do {
            let pool = try DatabasePool(path: path, configuration: config)
            db = SQLiteAccess(writer: pool, health: health, path: path, walTruncateBytes: walTruncateBytes)
            try Self.migrator.migrate(pool)
        } catch {
            let ro = SQLiteAccess.readOnlyFileSystem(path)
            guard let fault = StorageFault.classify(error, readOnlyFileSystem: ro) else { throw error }
            throw fault
        }
    }

    /// An in-memory database with the real migrations (tests).
    public init() throws {
        var config = Configuration()
        config.foreignKeysEnabled = true
        let queue = try DatabaseQueue(configuration: config)
        let health = StorageHealth()
        self.health = health
        minimumFreeBytes = 0
        db = SQLiteAccess(writer: queue, health: health, path: nil, walTruncateBytes: .max)
        try Self.migrator.migrate(queue)
    }

    /// The schema. Migrations are never changed once shipped; add new ones at the end.
    public static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1-accounts-factors-sessions-audit") { db in
            try db.execute(
                sql: """
                    CREATE TABLE users (
                        id TEXT PRIMARY KEY NOT NULL,
                        name TEXT NOT NULL UNIQUE,
                        password_hash TEXT NOT NULL,
                        disabled INTEGER NOT NULL DEFAULT 0,
                        locked INTEGER NOT NULL DEFAULT 0,
                        created_at INTEGER NOT NULL
                    );
                    CREATE TABLE groups (
                        name TEXT PRIMARY KEY NOT NULL
                    );
                    CREATE TABLE memberships (
                        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                        group_name TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
                        PRIMARY KEY (user_id, group_name)
                    );
                    CREATE TABLE factors (
                        id TEXT PRIMARY KEY NOT NULL,
                        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                        kind TEXT NOT NULL CHECK (kind IN ('totp','backup','webauthn')),
                        state TEXT NOT NULL CHECK (state IN ('pending','active')),
                        secret_box BLOB,
                        last_used_step INTEGER,
                        created_at INTEGER NOT NULL
                    );
                    CREATE INDEX factors_user ON factors(user_id);
                    CREATE TABLE backup_codes (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                        code_hash BLOB NOT NULL,
                        used_at INTEGER
                    );
                    CREATE INDEX backup_codes_user ON backup_codes(user_id);
                    CREATE TABLE sessions (
                        id TEXT PRIMARY KEY NOT NULL,
                        token_hash BLOB NOT NULL UNIQUE,
                        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                        state TEXT NOT NULL CHECK (state IN ('pending','mfa')),
                        amr TEXT NOT NULL,
                        auth_time INTEGER NOT NULL,
                        created_at INTEGER NOT NULL,
                        idle_expires_at INTEGER NOT NULL,
                        absolute_expires_at INTEGER NOT NULL
                    );
                    CREATE INDEX sessions_user ON sessions(user_id);
                    CREATE TABLE throttles (
                        key TEXT PRIMARY KEY NOT NULL,
                        failures INTEGER NOT NULL,
                        last_failure_at INTEGER NOT NULL
                    );
                    CREATE TABLE audit_log (
                        seq INTEGER PRIMARY KEY NOT NULL,
                        time INTEGER NOT NULL,
                        prev_hash TEXT NOT NULL,
                        event TEXT NOT NULL,
                        hash TEXT NOT NULL
                    );
                    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
                        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
                    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
                        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
                    """
            )
        }
        m.registerMigration("v2-clients-tokens-approvals") { db in try Self.migrateTokens(db) }
        m.registerMigration("v3-webauthn") { db in try Self.migrateWebAuthn(db) }
        m.registerMigration("v4-factor-proofs") { db in
            try db.execute(
                sql: """
                    ALTER TABLE sessions ADD COLUMN proofs TEXT NOT NULL DEFAULT '{}';
                    ALTER TABLE factors ADD COLUMN last_used_at INTEGER;
                    ALTER TABLE delegations ADD COLUMN revoked_reason TEXT;
                    CREATE INDEX delegations_user ON delegations(user_id);
                    CREATE INDEX delegations_session ON delegations(session_id);
                    """
            )
        }
        m.registerMigration("v5-status-lists") { db in try Self.migrateStatusLists(db) }
        m.registerMigration("v6-storage-probe") { db in
            // One row that the readiness probe rewrites: a real commit, so a full disk or read-only file shows.
            try db.execute(sql: "CREATE TABLE storage_probe (id INTEGER PRIMARY KEY NOT NULL, at INTEGER NOT NULL)")
        }
        m.registerMigration("v7-ci-federation") { db in
            // Requests of pipelines authenticated by a CI token keep the token's issuer and mapped claims; each CI
            // token is accepted once (the replay cache, pruned once its tokens expired).
            try db.execute(
                sql: """
                    ALTER TABLE approval_requests ADD COLUMN ci_issuer TEXT;
                    ALTER TABLE approval_requests ADD COLUMN ci_claims TEXT;
                    CREATE TABLE ci_token_uses (
                        issuer TEXT NOT NULL,
                        token_key TEXT NOT NULL,
                        expires_at INTEGER NOT NULL,
                        used_at INTEGER NOT NULL,
                        PRIMARY KEY (issuer, token_key)
                    );
                    CREATE INDEX ci_token_uses_expiry ON ci_token_uses(expires_at);
                    """
            )
        }
        m.registerMigration("v8-dpop-proofs") { db in
            // RFC 9449 §11.1: DPoP proofs the token endpoint accepted, by SHA-256 of thumbprint and jti, until they
            // are too old to pass the iat check anyway.
            try db.execute(
                sql: """
                    CREATE TABLE dpop_proofs (
                        key_hash BLOB PRIMARY KEY NOT NULL CHECK (length(key_hash) = 32),
                        expires_at INTEGER NOT NULL
                    );
                    CREATE INDEX dpop_proofs_expiry ON dpop_proofs(expires_at);
                    """
            )
        }
        return m
    }

    // MARK: users and groups

    public func insertUser(_ user: UserRecord, groups: [String]) async throws {
        try await db.write { db in
            if try Row.fetchOne(db, sql: "SELECT 1 FROM users WHERE name = ?", arguments: [user.name]) != nil {
                throw StoreError.conflict("user \(user.name) exists")
            }
            try db.execute(
                sql: """
                    INSERT INTO users (id, name, password_hash, disabled, locked, created_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [user.id, user.name, user.passwordHash, user.disabled, user.locked, user.createdAt]
            )
            try Self.writeGroups(db, userId: user.id, groups)
        }
    }

    private static func writeGroups(_ db: Database, userId: String, _ groups: [String]) throws {
        try db.execute(sql: "DELETE FROM memberships WHERE user_id = ?", arguments: [userId])
        for g in Set(groups) {
            try db.execute(sql: "INSERT OR IGNORE INTO groups (name) VALUES (?)", arguments: [g])
            try db.execute(sql: "INSERT INTO memberships (user_id, group_name) VALUES (?, ?)", arguments: [userId, g])
        }
    }

    static func user(_ row: Row) -> UserRecord {
        UserRecord(
            id: row["id"],
            name: row["name"],
            passwordHash: row["password_hash"],
            disabled: row["disabled"],
            locked: row["locked"],
            createdAt: row["created_at"]
        )
    }

    public func user(named name: String) async throws -> UserRecord? {
        try await db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM users WHERE name = ?", arguments: [name]).map(Self.user)
        }
    }

    public func user(id: String) async throws -> UserRecord? {
        try await db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM users WHERE id = ?", arguments: [id]).map(Self.user)
        }
    }

    public func allUsers() async throws -> [UserRecord] {
        try await db.read { db in try Row.fetchAll(db, sql: "SELECT * FROM users ORDER BY name").map(Self.user) }
    }

    private func updateUser(_ sql: String, _ args: StatementArguments) async throws {
        try await db.write { db in
            try db.execute(sql: sql, arguments: args)
            if db.changesCount == 0 { throw StoreError.notFound("no such user") }
        }
    }

    public func setDisabled(userId: String, _ disabled: Bool) async throws {
        try await updateUser("UPDATE users SET disabled = ? WHERE id = ?", [disabled, userId])
    }

    public func setLocked(userId: String, _ locked: Bool) async throws {
        try await updateUser("UPDATE users SET locked = ? WHERE id = ?", [locked, userId])
    }

    public func setPasswordHash(userId: String, _ hash: String) async throws {
        try await updateUser("UPDATE users SET password_hash = ? WHERE id = ?", [hash, userId])
    }

    public func groups(ofUser userId: String) async throws -> [String] {
        try await db.read { db in
            try String.fetchAll(
                db,
                sql: "SELECT group_name FROM memberships WHERE user_id = ? ORDER BY group_name",
                arguments: [userId]
            )
        }
    }

    public func setGroups(userId: String, _ groups: [String]) async throws {
        try await db.write { db in
            guard try Row.fetchOne(db, sql: "SELECT 1 FROM users WHERE id = ?", arguments: [userId]) != nil else {
                throw StoreError.notFound("no such user")
            }
            try Self.writeGroups(db, userId: userId, groups)
        }
    }

    public func allGroups() async throws -> [String] {
        try await db.read { db in try String.fetchAll(db, sql: "SELECT name FROM groups ORDER BY name") }
    }

    // MARK: factors

    static func factor(_ row: Row) -> FactorRecord? {
        guard let kind = FactorKind(rawValue: row["kind"]), let state = FactorState(rawValue: row["state"]) else {
            return nil
        }
        let box: Data? = row["secret_box"]
        return FactorRecord(
            id: row["id"],
            userId: row["user_id"],
            kind: kind,
            state: state,
            secretBox: box.map { [UInt8]($0) },
            lastUsedStep: row["last_used_step"],
            createdAt: row["created_at"],
            lastUsedAt: row["last_used_at"]
        )
    }

    public func insertFactor(_ f: FactorRecord) async throws {
        try await db.write { db in
            try db.execute(
                sql: """
                    INSERT INTO factors (id, user_id, kind, state, secret_box, last_used_step, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    f.id, f.userId, f.kind.rawValue, f.state.rawValue, f.secretBox.map { Data($0) },
                    f.lastUsedStep, f.createdAt,
                ]
            )
        }
    }

    public func factor(id: String) async throws -> FactorRecord? {
        try await db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM factors WHERE id = ?", arguments: [id]).flatMap(Self.factor)
        }
    }

    public func factors(ofUser userId: String) async throws -> [FactorRecord] {
        try await db.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT * FROM factors WHERE user_id = ? ORDER BY created_at, id",
                arguments: [userId]
            ).compactMap(Self.factor)
        }
    }

    public func factors(kind: FactorKind) async throws -> [FactorRecord] {
        try await db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM factors WHERE kind = ? ORDER BY id", arguments: [kind.rawValue])
                .compactMap(Self.factor)
        }
    }

    public func setFactorState(id: String, _ state: FactorState) async throws {
        try await db.write { db in
            try db.execute(sql: "UPDATE factors SET state = ? WHERE id = ?", arguments: [state.rawValue, id])
            if db.changesCount == 0 { throw StoreError.notFound("no such factor") }
        }
    }

    public func deleteFactor(id: String) async throws {
        try await db.write { db in try db.execute(sql: "DELETE FROM factors WHERE id = ?", arguments: [id]) }
    }

    public func deletePendingFactors(userId: String, kind: FactorKind) async throws {
        try await db.write { db in
            try db.execute(
                sql: "DELETE FROM factors WHERE user_id = ? AND kind = ? AND state = 'pending'",
                arguments: [userId, kind.rawValue]
            )
        }
    }

    public func replaceSecretBoxes(_ boxes: [String: [UInt8]]) async throws {
        try await db.write { db in
            for (id, box) in boxes {
                try db.execute(sql: "UPDATE factors SET secret_box = ? WHERE id = ?", arguments: [Data(box), id])
                if db.changesCount == 0 { throw StoreError.notFound("no such factor \(id)") }
            }
        }
    }

    public func claimTOTPStep(factorId: String, step: Int64) async throws -> Bool {
        try await db.write { db in
            try db.execute(
                sql: """
                    UPDATE factors SET last_used_step = ?
                    WHERE id = ? AND (last_used_step IS NULL OR last_used_step < ?)
                    """,
                arguments: [step, factorId, step]
            )
            return db.changesCount == 1
        }
    }

    public func touchFactor(id: String, at: Int64) async throws {
        try await db.write { db in
            try db.execute(sql: "UPDATE factors SET last_used_at = ? WHERE id = ?", arguments: [at, id])
        }
    }

    // MARK: backup codes

    public func replaceBackupCodes(userId: String, hashes: [[UInt8]]) async throws {
        try await db.write { db in
            try db.execute(sql: "DELETE FROM backup_codes WHERE user_id = ?", arguments: [userId])
            for h in hashes {
                try db.execute(
                    sql: "INSERT INTO backup_codes (user_id, code_hash) VALUES (?, ?)",
                    arguments: [userId, Data(h)]
                )
            }
        }
    }

    public func unusedBackupCodes(userId: String) async throws -> [BackupCodeRecord] {
        try await db.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT * FROM backup_codes WHERE user_id = ? AND used_at IS NULL ORDER BY id",
                arguments: [userId]
            ).map { row in
                let h: Data = row["code_hash"]
                return BackupCodeRecord(
                    id: row["id"],
                    userId: row["user_id"],
                    codeHash: [UInt8](h),
                    usedAt: row["used_at"]
                )
            }
        }
    }

    public func consumeBackupCode(id: Int64, at: Int64) async throws -> Bool {
        try await db.write { db in
            try db.execute(
                sql: "UPDATE backup_codes SET used_at = ? WHERE id = ? AND used_at IS NULL",
                arguments: [at, id]
            )
            return db.changesCount == 1
        }
    }

    // MARK: sessions

    static func session(_ row: Row) -> SessionRecord? {
        guard let state = SessionState(rawValue: row["state"]) else { return nil }
        let amrJSON: String = row["amr"]
        let amr = (try? JSONDecoder().decode([String].self, from: Data(amrJSON.utf8))) ?? []
        let th: Data = row["token_hash"]
        let proofsJSON: String = row["proofs"]
        // An unreadable proofs column proves nothing (fail closed): the session keeps working, but no freshness
        // rule is satisfied until a new proof.
        let proofs = (try? JSONDecoder().decode([String: FactorStamp].self, from: Data(proofsJSON.utf8))) ?? [:]
        return SessionRecord(
            id: row["id"],
            tokenHash: [UInt8](th),
            userId: row["user_id"],
            state: state,
            amr: amr,
            authTime: row["auth_time"],
            createdAt: row["created_at"],
            idleExpiresAt: row["idle_expires_at"],
            absoluteExpiresAt: row["absolute_expires_at"],
            proofs: proofs
        )
    }

    private static func amrJSON(_ amr: [String]) throws -> String {
        String(decoding: try JSONEncoder().encode(amr), as: UTF8.self)
    }

    private static func proofsJSON(_ proofs: [String: FactorStamp]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(proofs), as: UTF8.self)
    }

    public func insertSession(_ s: SessionRecord) async throws {
        try await db.write { db in
            try db.execute(
                sql: """
                    INSERT INTO sessions (id, token_hash, user_id, state, amr, auth_time, created_at,
                                          idle_expires_at, absolute_expires_at, proofs)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    s.id, Data(s.tokenHash), s.userId, s.state.rawValue, try Self.amrJSON(s.amr), s.authTime,
                    s.createdAt, s.idleExpiresAt, s.absoluteExpiresAt, try Self.proofsJSON(s.proofs),
                ]
            )
        }
    }

    public func session(tokenHash: [UInt8]) async throws -> SessionRecord? {
        try await db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM sessions WHERE token_hash = ?", arguments: [Data(tokenHash)])
                .flatMap(Self.session)
        }
    }

    public func sessionHolder(tokenHash: [UInt8]) async throws -> SessionHolder? {
        try await db.read { db in
            guard
                let session = try Row.fetchOne(
                    db,
                    sql: "SELECT * FROM sessions WHERE token_hash = ?",
                    arguments: [Data(tokenHash)]
                ).flatMap(Self.session),
                let user = try Row.fetchOne(db, sql: "SELECT * FROM users WHERE id = ?", arguments: [session.userId])
                    .map(Self.user)
            else { return nil }
            let groups = try String.fetchAll(
                db,
                sql: "SELECT group_name FROM memberships WHERE user_id = ? ORDER BY group_name",
                arguments: [user.id]
            )
            return SessionHolder(session: session, user: user, groups: groups)
        }
    }

    public func session(id: String) async throws -> SessionRecord? {
        try await db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM sessions WHERE id = ?", arguments: [id]).flatMap(Self.session)
        }
    }

    public func updateSession(_ s: SessionRecord) async throws {
        try await db.write { db in
            try db.execute(
                sql: """
                    UPDATE sessions SET token_hash = ?, state = ?, amr = ?, auth_time = ?, idle_expires_at = ?,
                                        absolute_expires_at = ?, proofs = ?
                    WHERE id = ?
                    """,
                arguments: [
                    Data(s.tokenHash), s.state.rawValue, try Self.amrJSON(s.amr), s.authTime, s.idleExpiresAt,
                    s.absoluteExpiresAt, try Self.proofsJSON(s.proofs), s.id,
                ]
            )
            if db.changesCount == 0 { throw StoreError.notFound("no such session") }
        }
    }

    public func deleteSession(id: String) async throws {
        try await db.write { db in try db.execute(sql: "DELETE FROM sessions WHERE id = ?", arguments: [id]) }
    }

    public func deleteSessions(userId: String) async throws {
        try await db.write { db in try db.execute(sql: "DELETE FROM sessions WHERE user_id = ?", arguments: [userId]) }
    }

    public func sessions(userId: String) async throws -> [SessionRecord] {
        try await db.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT * FROM sessions WHERE user_id = ? ORDER BY created_at",
                arguments: [userId]
            )
            .compactMap(Self.session)
        }
    }

    public func deleteExpiredSessions(now: Int64) async throws -> Int {
        try await db.write { db in
            try db.execute(
                sql: "DELETE FROM sessions WHERE idle_expires_at <= ? OR absolute_expires_at <= ?",
                arguments: [now, now]
            )
            return db.changesCount
        }
    }

    // MARK: DPoP proofs

    public func recordDPoPProof(key: String, expiresAt: Int64, now: Int64) async throws -> Bool {
        let hash = Data(try Crypto.sha256(Array(key.utf8)))
        return try await db.write { db in
            try db.execute(sql: "DELETE FROM dpop_proofs WHERE expires_at <= ?", arguments: [now])
            try db.execute(
                sql: "INSERT INTO dpop_proofs (key_hash, expires_at) VALUES (?, ?) ON CONFLICT(key_hash) DO NOTHING",
                arguments: [hash, expiresAt]
            )
            return db.changesCount == 1
        }
    }

    // MARK: throttling

    public func throttle(key: String) async throws -> ThrottleRecord? {
        try await db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM throttles WHERE key = ?", arguments: [key]).map {
                ThrottleRecord(key: $0["key"], failures: $0["failures"], lastFailureAt: $0["last_failure_at"])
            }
        }
    }

    public func putThrottle(_ r: ThrottleRecord) async throws {
        try await db.write { db in
            try db.execute(
                sql: """
                    INSERT INTO throttles (key, failures, last_failure_at) VALUES (?, ?, ?)
                    ON CONFLICT(key) DO UPDATE SET failures = excluded.failures, last_failure_at = excluded.last_failure_at
                    """,
                arguments: [r.key, r.failures, r.lastFailureAt]
            )
        }
    }

    public func clearThrottle(key: String) async throws {
        try await db.write { db in try db.execute(sql: "DELETE FROM throttles WHERE key = ?", arguments: [key]) }
    }

    public func reserveAttempt(
        keys: [String],
        now: Int64,
        window: Int64,
        delay: @escaping @Sendable (Int) -> Int64
    ) async throws
        -> ThrottleReservation
    {
        // One write transaction: SQLite runs one writer at a time, so the check and the count cannot interleave
        // with another reservation (https://www.sqlite.org/lang_transaction.html).
        try await db.write { db in
            var current: [Int] = []
            var previous: [Int64?] = []
            var wait: Int64 = 0
            for key in keys {
                let row = try Row.fetchOne(
                    db,
                    sql: "SELECT failures, last_failure_at FROM throttles WHERE key = ?",
                    arguments: [key]
                )
                guard let row else {
                    current.append(0)
                    previous.append(nil)
                    continue
                }
                let failures: Int = row["failures"]
                let last: Int64 = row["last_failure_at"]
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
            if wait > 0 { return .throttled(retryAfter: wait) }
            for (key, n) in zip(keys, current) {
                try db.execute(
                    sql: """
                        INSERT INTO throttles (key, failures, last_failure_at) VALUES (?, ?, ?)
                        ON CONFLICT(key) DO UPDATE SET failures = excluded.failures,
                                                       last_failure_at = excluded.last_failure_at
                        """,
                    arguments: [key, n + 1, now]
                )
            }
            return .reserved(counts: current.map { $0 + 1 }, previous: previous)
        }
    }

    public func refundAttempt(key: String, reservedAt: Int64, previous: Int64?) async throws {
        try await db.write { db in
            try db.execute(
                sql: """
                    UPDATE throttles SET failures = MAX(failures - 1, 0),
                        last_failure_at = CASE WHEN last_failure_at = ? THEN ? ELSE last_failure_at END
                    WHERE key = ?
                    """,
                arguments: [reservedAt, previous ?? 0, key]
            )
            try db.execute(sql: "DELETE FROM throttles WHERE key = ? AND failures = 0", arguments: [key])
        }
    }

    // MARK: audit

    static func auditRow(_ r: Row) -> AuditRow {
        AuditRow(seq: r["seq"], time: r["time"], prevHash: r["prev_hash"], event: r["event"], hash: r["hash"])
    }

    public func appendAudit(
        time: Int64,
        event: String,
        chain: @escaping @Sendable (AuditRow?) throws -> AuditRow
    ) async throws -> AuditRow {
        try await db.write { db in try Self.appendAudit(db, chain) }
    }

    public func appendAuditBlocking(
        time: Int64,
        event: String,
        chain: (AuditRow?) throws -> AuditRow
    ) throws -> AuditRow {
        try db.writeBlocking { db in try Self.appendAudit(db, chain) }
    }

    /// Appends one chained audit row inside the caller's transaction.
    static func appendAudit(_ db: Database, _ chain: (AuditRow?) throws -> AuditRow) throws -> AuditRow {
        try appendAudit(db, after: try lastAuditRow(db), chain)
    }

    /// The newest audit row, read inside the caller's transaction.
    static func lastAuditRow(_ db: Database) throws -> AuditRow? {
        try Row.fetchOne(db, sql: "SELECT * FROM audit_log ORDER BY seq DESC LIMIT 1").map(Self.auditRow)
    }

    /// Appends one audit row chained after `last`, which the caller read in this same transaction (a batch keeps
    /// it across its items instead of reading it back each time).
    static func appendAudit(
        _ db: Database,
        after last: AuditRow?,
        _ chain: (AuditRow?) throws -> AuditRow
    ) throws
        -> AuditRow
    {
        let row = try chain(last)
        try db.execute(
            sql: "INSERT INTO audit_log (seq, time, prev_hash, event, hash) VALUES (?, ?, ?, ?, ?)",
            arguments: [row.seq, row.time, row.prevHash, row.event, row.hash]
        )
        return row
    }

    public func auditRows(after seq: Int64, limit: Int) async throws -> [AuditRow] {
        try await db.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
                arguments: [seq, limit]
            )
            .map(Self.auditRow)
        }
    }

    /// The readiness probe: not ready while the file system has fewer than ``minimumFreeBytes`` free, else one
    /// small committed write (a one-row heartbeat), skipped when a write committed in the last second and none
    /// failed since. A rollback-only check would not do: SQLite needs no new space to roll back.
    /// - Throws: ``StorageFault`` naming the cause.
    public func ping() async throws {
        if let path = db.path, let free = SQLiteAccess.freeBytes(path), free < minimumFreeBytes {
            let fault = StorageFault(.diskFull)
            health.recordFailure(fault)
            throw fault
        }
        if health.recentlyHealthy(within: .seconds(1)) { return }
        let now = Int64(Date().timeIntervalSince1970)
        try await db.write { db in
            try db.execute(
                sql: "INSERT INTO storage_probe (id, at) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET at = excluded.at",
                arguments: [now]
            )
        }
    }

    /// Test hook: runs raw SQL (used by tamper tests to bypass the append-only triggers deliberately).
    /// Runs outside a transaction, so that it can also switch `PRAGMA query_only` back off (a transaction's `BEGIN
    /// IMMEDIATE` is itself refused while the connection is query-only).
    package func unsafeExecute(_ sql: String) async throws {
        try await db.writer.writeWithoutTransaction { db in try db.execute(sql: sql) }
    }
}
