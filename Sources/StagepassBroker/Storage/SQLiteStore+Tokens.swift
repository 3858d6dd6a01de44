import Foundation
import GRDB

extension SQLiteStore {
    static func migrateTokens(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE clients (
                    name TEXT PRIMARY KEY NOT NULL,
                    secret_hash BLOB NOT NULL,
                    created_at INTEGER NOT NULL
                );
                -- The token ledger. No foreign keys: the ledger outlives users, sessions and clients.
                CREATE TABLE tokens (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    jti TEXT NOT NULL UNIQUE,
                    kid TEXT NOT NULL,
                    user_id TEXT NOT NULL,
                    user_name TEXT NOT NULL,
                    session_id TEXT,
                    client_id TEXT,
                    role TEXT NOT NULL,
                    stage TEXT NOT NULL,
                    audience TEXT NOT NULL,
                    request_id TEXT,
                    issued_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    revoked_at INTEGER,
                    revoked_reason TEXT
                );
                CREATE INDEX tokens_session ON tokens(session_id);
                CREATE INDEX tokens_user ON tokens(user_id);
                CREATE INDEX tokens_kid ON tokens(kid);
                CREATE INDEX tokens_revoked ON tokens(revoked_at) WHERE revoked_at IS NOT NULL;
                CREATE TABLE counters (
                    name TEXT PRIMARY KEY NOT NULL,
                    value INTEGER NOT NULL
                );
                INSERT INTO counters (name, value) VALUES ('revocation_epoch', 0);
                CREATE TABLE approval_requests (
                    id TEXT PRIMARY KEY NOT NULL,
                    device_code_hash BLOB NOT NULL UNIQUE,
                    user_code TEXT NOT NULL UNIQUE,
                    client_id TEXT NOT NULL,
                    role TEXT NOT NULL,
                    stage TEXT NOT NULL,
                    audience TEXT NOT NULL,
                    run_id TEXT NOT NULL,
                    commit_sha TEXT,
                    triggered_by TEXT,
                    created_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('pending','approved','denied','issued')),
                    interval INTEGER NOT NULL,
                    last_poll_at INTEGER,
                    decided_by TEXT,
                    deny_reason TEXT,
                    token_jti TEXT
                );
                CREATE TABLE approvals (
                    id TEXT PRIMARY KEY NOT NULL,
                    request_id TEXT NOT NULL REFERENCES approval_requests(id),
                    user_id TEXT NOT NULL,
                    user_name TEXT NOT NULL,
                    session_id TEXT,
                    amr TEXT NOT NULL,
                    auth_time INTEGER NOT NULL,
                    created_at INTEGER NOT NULL,
                    binding TEXT NOT NULL,
                    delegation_id TEXT,
                    UNIQUE (request_id, user_id)
                );
                CREATE TABLE delegations (
                    id TEXT PRIMARY KEY NOT NULL,
                    user_id TEXT NOT NULL,
                    user_name TEXT NOT NULL,
                    session_id TEXT,
                    amr TEXT NOT NULL,
                    auth_time INTEGER NOT NULL,
                    client_id TEXT NOT NULL,
                    role TEXT NOT NULL,
                    stage TEXT NOT NULL,
                    audience TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    revoked_at INTEGER
                );
                CREATE INDEX delegations_lookup ON delegations(client_id, role, stage, audience);
                """
        )
    }

    private static func strings(_ json: String) -> [String] {
        (try? JSONDecoder().decode([String].self, from: Data(json.utf8))) ?? []
    }
    private static func json(_ list: [String]) throws -> String {
        String(decoding: try JSONEncoder().encode(list), as: UTF8.self)
    }

    // MARK: clients

    public func insertClient(_ c: ClientRecord) async throws {
        try await db.write { db in
            if try Row.fetchOne(db, sql: "SELECT 1 FROM clients WHERE name = ?", arguments: [c.name]) != nil {
                throw StoreError.conflict("client \(c.name) exists")
            }
            try db.execute(
                sql: "INSERT INTO clients (name, secret_hash, created_at) VALUES (?, ?, ?)",
                arguments: [c.name, Data(c.secretHash), c.createdAt]
            )
        }
    }

    static func client(_ r: Row) -> ClientRecord {
        let h: Data = r["secret_hash"]
        return ClientRecord(name: r["name"], secretHash: [UInt8](h), createdAt: r["created_at"])
    }

    public func client(named name: String) async throws -> ClientRecord? {
        try await db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM clients WHERE name = ?", arguments: [name]).map(Self.client)
        }
    }

    public func allClients() async throws -> [ClientRecord] {
        try await db.read { db in try Row.fetchAll(db, sql: "SELECT * FROM clients ORDER BY name").map(Self.client) }
    }

    public func deleteClient(named name: String) async throws {
        try await db.write { db in
            try db.execute(sql: "DELETE FROM clients WHERE name = ?", arguments: [name])
            if db.changesCount == 0 { throw StoreError.notFound("no client named \(name)") }
        }
    }

    // MARK: ledger

    static func token(_ r: Row) -> TokenRecord {
        TokenRecord(
            seq: r["seq"],
            jti: r["jti"],
            kid: r["kid"],
            userId: r["user_id"],
            userName: r["user_name"],
            sessionId: r["session_id"],
            clientId: r["client_id"],
            role: r["role"],
            stage: r["stage"],
            audience: r["audience"],
            requestId: r["request_id"],
            issuedAt: r["issued_at"],
            expiresAt: r["expires_at"],
            revokedAt: r["revoked_at"],
            revokedReason: r["revoked_reason"]
        )
    }

    public func insertToken(_ t: TokenRecord, audit: AuditAppend, claimRequest: String?) async throws -> TokenRecord {
        let results = try await insertTokens([PendingToken(token: t, audit: audit, claimRequest: claimRequest)])
        guard let first = results.first else { throw StoreError.backend("the ledger write returned no result") }
        return try first.get()
    }

    /// One write transaction (one commit, so one fsync under `synchronous = FULL`) for the whole batch; each item in
    /// a `SAVEPOINT` (<https://www.sqlite.org/lang_savepoint.html>), rolled back alone when it conflicts.
    public func insertTokens(_ batch: [PendingToken]) async throws -> [Result<TokenRecord, StoreError>] {
        guard !batch.isEmpty else { return [] }
        return try await db.write { db in
            var last = try Self.lastAuditRow(db)
            var out: [Result<TokenRecord, StoreError>] = []
            out.reserveCapacity(batch.count)
            for p in batch {
                var record = p.token
                var appended: AuditRow?
                do {
                    try db.inSavepoint {
                        record = try Self.insertLedgerRow(db, p.token, claimRequest: p.claimRequest)
                        appended = try Self.appendAudit(db, after: last, p.audit.chain)
                        return .commit
                    }
                } catch let e as StoreError {
                    out.append(.failure(e))
                    continue
                } catch let e as DatabaseError where e.resultCode == .SQLITE_CONSTRAINT {
                    // A duplicate jti: this item only (the savepoint rolled it back).
                    out.append(.failure(.conflict("token \(p.token.jti) conflicts with the ledger")))
                    continue
                }
                if let appended { last = appended }
                out.append(.success(record))
            }
            return out
        }
    }

    /// The ledger row of one token (and its request's `approved` → `issued` claim), inside the caller's transaction.
    private static func insertLedgerRow(_ db: Database, _ t: TokenRecord, claimRequest: String?) throws -> TokenRecord {
        if let id = claimRequest {
            try db.execute(
                sql:
                    "UPDATE approval_requests SET state = 'issued', token_jti = ? WHERE id = ? AND state = 'approved'",
                arguments: [t.jti, id]
            )
            if db.changesCount == 0 { throw StoreError.conflict("request \(id) is not approved") }
        }
        try db.execute(
            sql: """
                INSERT INTO tokens (jti, kid, user_id, user_name, session_id, client_id, role, stage, audience,
                                    request_id, issued_at, expires_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                t.jti, t.kid, t.userId, t.userName, t.sessionId, t.clientId, t.role, t.stage, t.audience,
                t.requestId, t.issuedAt, t.expiresAt,
            ]
        )
        var out = t
        out.seq = db.lastInsertedRowID
        return out
    }

    public func token(jti: String) async throws -> TokenRecord? {
        try await db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM tokens WHERE jti = ?", arguments: [jti]).map(Self.token)
        }
    }

    public func revoke(
        _ target: RevocationTarget,
        at: Int64,
        reason: String,
        audit: AuditAppend
    ) async throws -> [String] {
        let (condition, args): (String, StatementArguments)
        switch target {
        case .jti(let j): (condition, args) = ("jti = ?", [j])
        case .session(let s): (condition, args) = ("session_id = ?", [s])
        case .user(let id, let before): (condition, args) = ("user_id = ? AND issued_at <= ?", [id, before])
        case .kid(let k): (condition, args) = ("kid = ?", [k])
        }
        let updateArgs: StatementArguments = [at, reason]
        let allArgs = updateArgs + args
        return try await db.write { db -> [String] in
            let jtis = try String.fetchAll(
                db,
                sql: "SELECT jti FROM tokens WHERE revoked_at IS NULL AND \(condition)",
                arguments: args
            )
            try db.execute(
                sql: "UPDATE tokens SET revoked_at = ?, revoked_reason = ? WHERE revoked_at IS NULL AND \(condition)",
                arguments: allArgs
            )
            try db.execute(sql: "UPDATE counters SET value = value + 1 WHERE name = 'revocation_epoch'")
            _ = try Self.appendAudit(db, audit.chain)
            return jtis
        }
    }

    public func revokedSeqs(in range: ClosedRange<Int64>) async throws -> [Int64] {
        try await db.read { db in
            try Int64.fetchAll(
                db,
                sql: "SELECT seq FROM tokens WHERE revoked_at IS NOT NULL AND seq BETWEEN ? AND ? ORDER BY seq",
                arguments: [range.lowerBound, range.upperBound]
            )
        }
    }

    public func lastTokenSeq() async throws -> Int64 {
        try await db.read { db in try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(seq), 0) FROM tokens") ?? 0 }
    }

    public func revocationEpoch() async throws -> Int64 {
        try await db.read { db in
            try Int64.fetchOne(db, sql: "SELECT value FROM counters WHERE name = 'revocation_epoch'") ?? 0
        }
    }

    // MARK: status lists

    /// The status-list layout. Before it existed every list had 2^16 entries: the lists that hold the tokens issued
    /// until now are recorded with that size, so those tokens keep their `(idx, uri)`.
    static func migrateStatusLists(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE status_lists (
                    number INTEGER PRIMARY KEY NOT NULL CHECK (number >= 1),
                    first_seq INTEGER NOT NULL UNIQUE CHECK (first_seq >= 1),
                    size INTEGER NOT NULL CHECK (size >= 1),
                    created_at INTEGER NOT NULL
                );
                WITH RECURSIVE issued(last) AS (
                    SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'tokens'), 0),
                               COALESCE((SELECT MAX(seq) FROM tokens), 0))
                ), n(k) AS (
                    SELECT 1 WHERE (SELECT last FROM issued) > 0
                    UNION ALL SELECT k + 1 FROM n WHERE k * 65536 < (SELECT last FROM issued)
                )
                INSERT INTO status_lists (number, first_seq, size, created_at)
                    SELECT k, (k - 1) * 65536 + 1, 65536, CAST(strftime('%s', 'now') AS INTEGER) FROM n;
                """
        )
    }

    private static func statusList(_ r: Row) -> StatusListRecord {
        StatusListRecord(number: r["number"], firstSeq: r["first_seq"], size: r["size"], createdAt: r["created_at"])
    }

    public func statusLists() async throws -> [StatusListRecord] {
        try await db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM status_lists ORDER BY number").map(Self.statusList)
        }
    }

    public func placeStatusList(seq: Int64, size: Int64, at: Int64) async throws -> StatusListRecord {
        guard seq >= 1, size >= 1 else { throw StoreError.conflict("a status list needs seq >= 1 and size >= 1") }
        return try await db.write { db in
            if let r = try Row.fetchOne(
                db,
                sql: "SELECT * FROM status_lists WHERE first_seq <= ? ORDER BY number DESC LIMIT 1",
                arguments: [seq]
            ).map(Self.statusList), r.contains(seq: seq) {
                return r
            }
            let last = try Row.fetchOne(db, sql: "SELECT * FROM status_lists ORDER BY number DESC LIMIT 1")
                .map(Self.statusList)
            let created = StatusListRecord.extending(last, toCover: seq, size: size, at: at)
            // Lists are contiguous from seq 1: a seq below the last list's end is always inside one.
            guard let holding = created.last else {
                throw StoreError.conflict("seq \(seq) is not covered by the status-list layout")
            }
            for next in created {
                try db.execute(
                    sql: "INSERT INTO status_lists (number, first_seq, size, created_at) VALUES (?, ?, ?, ?)",
                    arguments: [next.number, next.firstSeq, next.size, next.createdAt]
                )
            }
            return holding
        }
    }

    // MARK: approval requests

    static func request(_ r: Row) -> ApprovalRequestRecord? {
        guard let state = RequestState(rawValue: r["state"]) else { return nil }
        let h: Data = r["device_code_hash"]
        return ApprovalRequestRecord(
            id: r["id"],
            deviceCodeHash: [UInt8](h),
            userCode: r["user_code"],
            clientId: r["client_id"],
            role: r["role"],
            stage: r["stage"],
            audience: r["audience"],
            runId: r["run_id"],
            commit: r["commit_sha"],
            triggeredBy: r["triggered_by"],
            createdAt: r["created_at"],
            expiresAt: r["expires_at"],
            state: state,
            interval: r["interval"],
            lastPollAt: r["last_poll_at"],
            decidedBy: r["decided_by"],
            denyReason: r["deny_reason"],
            tokenJti: r["token_jti"],
            ciIssuer: r["ci_issuer"],
            ciClaims: r["ci_claims"]
        )
    }

    public func insertRequest(_ q: ApprovalRequestRecord, audit: AuditAppend) async throws {
        try await db.write { db in
            if try Row.fetchOne(
                db,
                sql: "SELECT 1 FROM approval_requests WHERE user_code = ? OR device_code_hash = ?",
                arguments: [q.userCode, Data(q.deviceCodeHash)]
            ) != nil {
                throw StoreError.conflict("code collision")
            }
            try db.execute(
                sql: """
                    INSERT INTO approval_requests (id, device_code_hash, user_code, client_id, role, stage, audience,
                        run_id, commit_sha, triggered_by, created_at, expires_at, state, interval, decided_by,
                        ci_issuer, ci_claims)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    q.id, Data(q.deviceCodeHash), q.userCode, q.clientId, q.role, q.stage, q.audience, q.runId,
                    q.commit, q.triggeredBy, q.createdAt, q.expiresAt, q.state.rawValue, q.interval, q.decidedBy,
                    q.ciIssuer, q.ciClaims,
                ]
            )
            _ = try Self.appendAudit(db, audit.chain)
        }
    }

    public func request(id: String) async throws -> ApprovalRequestRecord? {
        try await db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM approval_requests WHERE id = ?", arguments: [id])
                .flatMap(Self.request)
        }
    }

    public func request(userCode: String) async throws -> ApprovalRequestRecord? {
        try await db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM approval_requests WHERE user_code = ?", arguments: [userCode])
                .flatMap(Self.request)
        }
    }

    public func request(deviceCodeHash: [UInt8]) async throws -> ApprovalRequestRecord? {
        try await db.read { db in
            try Row.fetchOne(
                db,
                sql: "SELECT * FROM approval_requests WHERE device_code_hash = ?",
                arguments: [Data(deviceCodeHash)]
            ).flatMap(Self.request)
        }
    }

    public func pendingRequests(now: Int64) async throws -> [ApprovalRequestRecord] {
        try await db.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT * FROM approval_requests WHERE state = 'pending' AND expires_at > ? ORDER BY created_at",
                arguments: [now]
            ).compactMap(Self.request)
        }
    }

    public func notePoll(requestId: String, at: Int64, interval: Int64) async throws {
        try await db.write { db in
            try db.execute(
                sql: "UPDATE approval_requests SET last_poll_at = ?, interval = ? WHERE id = ?",
                arguments: [at, interval, requestId]
            )
        }
    }

    public func transitionRequest(
        id: String,
        from: RequestState,
        to: RequestState,
        decidedBy: String?,
        reason: String?,
        audit: AuditAppend
    ) async throws -> Bool {
        try await db.write { db in
            try db.execute(
                sql: """
                    UPDATE approval_requests SET state = ?, decided_by = COALESCE(?, decided_by),
                        deny_reason = COALESCE(?, deny_reason)
                    WHERE id = ? AND state = ?
                    """,
                arguments: [to.rawValue, decidedBy, reason, id, from.rawValue]
            )
            guard db.changesCount == 1 else { return false }
            _ = try Self.appendAudit(db, audit.chain)
            return true
        }
    }

    // MARK: approvals and delegations

    static func approval(_ r: Row) -> ApprovalRecord {
        ApprovalRecord(
            id: r["id"],
            requestId: r["request_id"],
            userId: r["user_id"],
            userName: r["user_name"],
            sessionId: r["session_id"],
            amr: strings(r["amr"]),
            authTime: r["auth_time"],
            createdAt: r["created_at"],
            binding: r["binding"],
            delegationId: r["delegation_id"]
        )
    }

    public func insertApproval(_ a: ApprovalRecord, audit: AuditAppend) async throws -> [ApprovalRecord] {
        try await db.write { db in
            guard
                try String.fetchOne(
                    db,
                    sql: "SELECT state FROM approval_requests WHERE id = ?",
                    arguments: [a.requestId]
                ) == "pending"
            else { throw StoreError.conflict("the request is no longer pending") }
            if try Row.fetchOne(
                db,
                sql: "SELECT 1 FROM approvals WHERE request_id = ? AND user_id = ?",
                arguments: [a.requestId, a.userId]
            ) != nil {
                throw StoreError.conflict("\(a.userName) already approved this request")
            }
            try db.execute(
                sql: """
                    INSERT INTO approvals (id, request_id, user_id, user_name, session_id, amr, auth_time, created_at,
                                           binding, delegation_id)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    a.id, a.requestId, a.userId, a.userName, a.sessionId, try Self.json(a.amr), a.authTime,
                    a.createdAt, a.binding, a.delegationId,
                ]
            )
            _ = try Self.appendAudit(db, audit.chain)
            return try Row.fetchAll(
                db,
                sql: "SELECT * FROM approvals WHERE request_id = ? ORDER BY created_at, rowid",
                arguments: [a.requestId]
            ).map(Self.approval)
        }
    }

    public func approvals(requestId: String) async throws -> [ApprovalRecord] {
        try await db.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT * FROM approvals WHERE request_id = ? ORDER BY created_at, rowid",
                arguments: [requestId]
            ).map(Self.approval)
        }
    }

    public func insertDelegation(_ d: DelegationRecord, audit: AuditAppend) async throws {
        try await db.write { db in
            try db.execute(
                sql: """
                    INSERT INTO delegations (id, user_id, user_name, session_id, amr, auth_time, client_id, role, stage,
                                             audience, created_at, expires_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    d.id, d.userId, d.userName, d.sessionId, try Self.json(d.amr), d.authTime, d.clientId, d.role,
                    d.stage, d.audience, d.createdAt, d.expiresAt,
                ]
            )
            _ = try Self.appendAudit(db, audit.chain)
        }
    }

    static func delegation(_ r: Row) -> DelegationRecord {
        DelegationRecord(
            id: r["id"],
            userId: r["user_id"],
            userName: r["user_name"],
            sessionId: r["session_id"],
            amr: Self.strings(r["amr"]),
            authTime: r["auth_time"],
            clientId: r["client_id"],
            role: r["role"],
            stage: r["stage"],
            audience: r["audience"],
            createdAt: r["created_at"],
            expiresAt: r["expires_at"],
            revokedAt: r["revoked_at"],
            revokedReason: r["revoked_reason"]
        )
    }

    private func liveDelegations(
        where condition: String,
        _ args: StatementArguments,
        now: Int64
    ) async throws
        -> [DelegationRecord]
    {
        let clause = condition.isEmpty ? "" : "\(condition) AND "
        return try await db.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM delegations WHERE \(clause)revoked_at IS NULL AND expires_at > ?
                    ORDER BY created_at DESC, rowid DESC
                    """,
                arguments: args + [now]
            ).map(Self.delegation)
        }
    }

    public func liveDelegations(
        clientId: String,
        role: String,
        stage: String,
        audience: String,
        now: Int64
    ) async throws
        -> [DelegationRecord]
    {
        try await liveDelegations(
            where: "client_id = ? AND role = ? AND stage = ? AND audience = ?",
            [clientId, role, stage, audience],
            now: now
        )
    }

    public func liveDelegations(sessionId: String, now: Int64) async throws -> [DelegationRecord] {
        try await liveDelegations(where: "session_id = ?", [sessionId], now: now)
    }

    public func liveDelegations(now: Int64) async throws -> [DelegationRecord] {
        try await liveDelegations(where: "", [], now: now)
    }

    public func delegation(id: String) async throws -> DelegationRecord? {
        try await db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM delegations WHERE id = ?", arguments: [id]).map(Self.delegation)
        }
    }

    public func revokeDelegations(
        ids: [String],
        at: Int64,
        reason: String,
        audit: AuditAppend?
    ) async throws -> [String] {
        try await db.write { db in
            var revoked: [String] = []
            for id in ids {
                try db.execute(
                    sql:
                        "UPDATE delegations SET revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked_at IS NULL",
                    arguments: [at, reason, id]
                )
                if db.changesCount == 1 { revoked.append(id) }
            }
            if !revoked.isEmpty, let audit { _ = try Self.appendAudit(db, audit.chain) }
            return revoked
        }
    }

    public func liveDelegations(userId: String, now: Int64) async throws -> [DelegationRecord] {
        try await liveDelegations(where: "user_id = ?", [userId], now: now)
    }
}
