import Foundation
import Logging
import PostgresNIO

extension PostgresStore {
    // MARK: clients

    public func insertClient(_ c: ClientRecord) async throws {
        do {
            _ = try await rows(
                """
                INSERT INTO clients (name, secret_hash, created_at)
                VALUES (\(c.name), \(Data(c.secretHash)), \(c.createdAt))
                """
            )
        } catch let e as StoreError where e == .conflict {
            throw StoreError.conflict("client \(c.name) exists")
        }
    }

    static func client(_ row: PostgresRow) throws -> ClientRecord {
        let c = Cells(row)
        return ClientRecord(name: try c("name"), secretHash: try c.bytes("secret_hash"), createdAt: try c("created_at"))
    }

    public func client(named name: String) async throws -> ClientRecord? {
        try await rows("SELECT * FROM clients WHERE name = \(name)").first.map(Self.client)
    }

    public func allClients() async throws -> [ClientRecord] {
        try await rows("SELECT * FROM clients ORDER BY name COLLATE \"C\"").map(Self.client)
    }

    public func deleteClient(named name: String) async throws {
        if try await count("DELETE FROM clients WHERE name = \(name) RETURNING 1") == 0 {
            throw StoreError.notFound("no client named \(name)")
        }
    }

    // MARK: ledger

    static func token(_ row: PostgresRow) throws -> TokenRecord {
        let c = Cells(row)
        return TokenRecord(
            seq: try c("seq"),
            jti: try c("jti"),
            kid: try c("kid"),
            userId: try c("user_id"),
            userName: try c("user_name"),
            sessionId: try c("session_id"),
            clientId: try c("client_id"),
            role: try c("role"),
            stage: try c("stage"),
            audience: try c("audience"),
            requestId: try c("request_id"),
            issuedAt: try c("issued_at"),
            expiresAt: try c("expires_at"),
            revokedAt: try c("revoked_at"),
            revokedReason: try c("revoked_reason")
        )
    }

    public func insertToken(_ t: TokenRecord, audit: AuditAppend, claimRequest: String?) async throws -> TokenRecord {
        let logger = self.logger
        return try await transaction { conn in
            // The chain lock first: it also orders `seq`, so the ledger has no gaps and no duplicates.
            try await Self.lock(conn, .auditChain, logger: logger)
            return try await Self.insertOne(conn, t, audit: audit, claimRequest: claimRequest, logger: logger)
        }
    }

    /// Group commit on PostgreSQL: the whole batch in ONE transaction (one commit, one WAL flush), under one
    /// acquisition of the chain lock. Each item runs inside a savepoint: an item that conflicts (its request is no
    /// longer `approved`, a duplicate jti) is rolled back to its savepoint alone and gets its ``StoreError``; the
    /// others commit, their `seq`s contiguous and their audit records chained in batch order.
    public func insertTokens(_ batch: [PendingToken]) async throws -> [Result<TokenRecord, StoreError>] {
        if batch.count == 1, let p = batch.first {
            do {
                return [.success(try await insertToken(p.token, audit: p.audit, claimRequest: p.claimRequest))]
            } catch let e as StoreError {
                return [.failure(e)]
            }
        }
        guard !batch.isEmpty else { return [] }
        let logger = self.logger
        return try await transaction { conn in
            try await Self.lock(conn, .auditChain, logger: logger)
            // The fast path: a handful of round trips for the whole batch. Should any row conflict (a duplicate jti),
            // it is rolled back and every item runs alone in its own savepoint, as below.
            try await Self.drain(conn.query("SAVEPOINT token_batch", logger: logger))
            do {
                let fast = try await Self.insertAll(conn, batch, logger: logger)
                try await Self.drain(conn.query("RELEASE SAVEPOINT token_batch", logger: logger))
                return fast
            } catch {
                guard let e = Self.storeError(error, "token batch") as? StoreError, case .conflict = e else {
                    throw error
                }
                try await Self.drain(conn.query("ROLLBACK TO SAVEPOINT token_batch", logger: logger))
            }
            var out: [Result<TokenRecord, StoreError>] = []
            out.reserveCapacity(batch.count)
            for p in batch {
                try await Self.drain(conn.query("SAVEPOINT token_item", logger: logger))
                do {
                    let record = try await Self.insertOne(
                        conn,
                        p.token,
                        audit: p.audit,
                        claimRequest: p.claimRequest,
                        logger: logger
                    )
                    try await Self.drain(conn.query("RELEASE SAVEPOINT token_item", logger: logger))
                    out.append(.success(record))
                } catch {
                    // Only an item's own conflict is its failure; anything else fails the whole batch.
                    guard let e = Self.storeError(error, "token insert") as? StoreError, case .conflict = e else {
                        throw error
                    }
                    try await Self.drain(conn.query("ROLLBACK TO SAVEPOINT token_item", logger: logger))
                    out.append(.failure(e))
                }
            }
            return out
        }
    }

    /// The whole batch in a few statements, on `conn` inside a transaction that holds the chain lock: each request
    /// claim (an item whose request is not `approved` fails alone: its UPDATE changes nothing), one read of the last
    /// `seq` and of the chain head, the `seq`s and the audit chain computed in batch order, then one multi-row
    /// INSERT for the ledger and one for the audit log. A duplicate jti fails the statement (the caller then takes
    /// the per-item path).
    static func insertAll(
        _ conn: PostgresConnection,
        _ batch: [PendingToken],
        logger: Logger
    ) async throws -> [Result<TokenRecord, StoreError>] {
        var out: [Result<TokenRecord, StoreError>] = []
        var kept: [(index: Int, item: PendingToken)] = []
        for (i, p) in batch.enumerated() {
            if let id = p.claimRequest {
                do {
                    try await claim(conn, request: id, jti: p.token.jti, logger: logger)
                } catch let e as StoreError {
                    out.append(.failure(e))
                    continue
                }
            }
            out.append(.success(p.token))
            kept.append((i, p))
        }
        guard !kept.isEmpty else { return out }
        let top = try await collect(conn.query("SELECT COALESCE(MAX(seq), 0) FROM tokens", logger: logger))
        guard var seq = try top.first?.decode(Int64.self) else { throw StoreError.backend("no token seq") }
        var last = try await collect(
            conn.query(
                "SELECT seq, time, prev_hash, event, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
                logger: logger
            )
        ).first.map(auditRow)
        var tokenSQL = """
            INSERT INTO tokens (seq, jti, kid, user_id, user_name, session_id, client_id, role, stage, audience,
                                request_id, issued_at, expires_at) VALUES
            """
        var tokenBinds = PostgresBindings(capacity: kept.count * 13)
        var auditSQL = "INSERT INTO audit_log (seq, time, prev_hash, event, hash) VALUES "
        var auditBinds = PostgresBindings(capacity: kept.count * 5)
        for (n, entry) in kept.enumerated() {
            seq += 1
            var t = entry.item.token
            t.seq = seq
            out[entry.index] = .success(t)
            let row = try entry.item.audit.chain(last)
            last = row
            let base = n * 13
            tokenSQL += (n == 0 ? "" : ", ") + "(" + (1...13).map { "$\(base + $0)" }.joined(separator: ", ") + ")"
            tokenBinds.append(t.seq)
            tokenBinds.append(t.jti)
            tokenBinds.append(t.kid)
            tokenBinds.append(t.userId)
            tokenBinds.append(t.userName)
            tokenBinds.append(t.sessionId)
            tokenBinds.append(t.clientId)
            tokenBinds.append(t.role)
            tokenBinds.append(t.stage)
            tokenBinds.append(t.audience)
            tokenBinds.append(t.requestId)
            tokenBinds.append(t.issuedAt)
            tokenBinds.append(t.expiresAt)
            let a = n * 5
            auditSQL += (n == 0 ? "" : ", ") + "(" + (1...5).map { "$\(a + $0)" }.joined(separator: ", ") + ")"
            auditBinds.append(row.seq)
            auditBinds.append(row.time)
            auditBinds.append(row.prevHash)
            auditBinds.append(row.event)
            auditBinds.append(row.hash)
        }
        // Constant SQL text with numbered placeholders only; every value is a bound parameter.
        try await drain(conn.query(PostgresQuery(unsafeSQL: tokenSQL, binds: tokenBinds), logger: logger))
        try await drain(conn.query(PostgresQuery(unsafeSQL: auditSQL, binds: auditBinds), logger: logger))
        return out
    }

    /// Turns an `approved` request `issued` for token `jti` (compare-and-set in one statement).
    /// - Throws: ``StoreError/conflict(_:)`` when the request is not `approved` (nothing changed).
    static func claim(_ conn: PostgresConnection, request id: String, jti: String, logger: Logger) async throws {
        let claimed = try await collect(
            conn.query(
                """
                UPDATE approval_requests SET state = 'issued', token_jti = \(jti)
                WHERE id = \(id) AND state = 'approved'
                RETURNING 1
                """,
                logger: logger
            )
        )
        if claimed.isEmpty { throw StoreError.conflict("request \(id) is not approved") }
    }

    /// One ledger row, its request claim and its audit record, on `conn` inside a transaction that holds the chain
    /// lock.
    static func insertOne(
        _ conn: PostgresConnection,
        _ t: TokenRecord,
        audit: AuditAppend,
        claimRequest: String?,
        logger: Logger
    ) async throws -> TokenRecord {
        if let id = claimRequest {
            try await claim(conn, request: id, jti: t.jti, logger: logger)
        }
        let next = try await collect(conn.query("SELECT COALESCE(MAX(seq), 0) + 1 FROM tokens", logger: logger))
        guard let seq = try next.first?.decode(Int64.self) else {
            throw StoreError.backend("no next token seq")
        }
        try await drain(
            conn.query(
                """
                INSERT INTO tokens (seq, jti, kid, user_id, user_name, session_id, client_id, role, stage, audience,
                                    request_id, issued_at, expires_at)
                VALUES (\(seq), \(t.jti), \(t.kid), \(t.userId), \(t.userName), \(t.sessionId), \(t.clientId),
                        \(t.role), \(t.stage), \(t.audience), \(t.requestId), \(t.issuedAt), \(t.expiresAt))
                """,
                logger: logger
            )
        )
        var out = t
        out.seq = seq
        _ = try await appendAudit(conn, audit.chain, logger: logger)
        return out
    }

    public func token(jti: String) async throws -> TokenRecord? {
        try await rows("SELECT * FROM tokens WHERE jti = \(jti)").first.map(Self.token)
    }

    public func revoke(
        _ target: RevocationTarget,
        at: Int64,
        reason: String,
        audit: AuditAppend
    ) async throws -> [String] {
        let logger = self.logger
        return try await transaction { conn in
            try await Self.lock(conn, .auditChain, logger: logger)
            let query: PostgresQuery
            switch target {
            case .jti(let j):
                query = """
                    UPDATE tokens SET revoked_at = \(at), revoked_reason = \(reason)
                    WHERE revoked_at IS NULL AND jti = \(j) RETURNING seq, jti
                    """
            case .session(let s):
                query = """
                    UPDATE tokens SET revoked_at = \(at), revoked_reason = \(reason)
                    WHERE revoked_at IS NULL AND session_id = \(s) RETURNING seq, jti
                    """
            case .user(let id, let before):
                query = """
                    UPDATE tokens SET revoked_at = \(at), revoked_reason = \(reason)
                    WHERE revoked_at IS NULL AND user_id = \(id) AND issued_at <= \(before) RETURNING seq, jti
                    """
            case .kid(let k):
                query = """
                    UPDATE tokens SET revoked_at = \(at), revoked_reason = \(reason)
                    WHERE revoked_at IS NULL AND kid = \(k) RETURNING seq, jti
                    """
            }
            let revoked = try await Self.collect(conn.query(query, logger: logger)).map {
                try $0.decode((Int64, String).self)
            }
            try await Self.drain(
                conn.query("UPDATE counters SET value = value + 1 WHERE name = 'revocation_epoch'", logger: logger)
            )
            _ = try await Self.appendAudit(conn, audit.chain, logger: logger)
            return revoked.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }

    public func revokedSeqs(in range: ClosedRange<Int64>) async throws -> [Int64] {
        try await rows(
            """
            SELECT seq FROM tokens WHERE revoked_at IS NOT NULL AND seq BETWEEN \(range.lowerBound) AND \(range.upperBound)
            ORDER BY seq
            """
        ).map { try $0.decode(Int64.self) }
    }

    public func lastTokenSeq() async throws -> Int64 {
        try await rows("SELECT COALESCE(MAX(seq), 0) FROM tokens").first?.decode(Int64.self) ?? 0
    }

    public func revocationEpoch() async throws -> Int64 {
        try await rows("SELECT value FROM counters WHERE name = 'revocation_epoch'").first?.decode(Int64.self) ?? 0
    }

    // MARK: status lists

    private static func statusList(_ row: PostgresRow) throws -> StatusListRecord {
        let (number, firstSeq, size, createdAt) = try row.decode((Int64, Int64, Int64, Int64).self)
        return StatusListRecord(number: number, firstSeq: firstSeq, size: size, createdAt: createdAt)
    }

    public func statusLists() async throws -> [StatusListRecord] {
        try await rows("SELECT number, first_seq, size, created_at FROM status_lists ORDER BY number").map(
            Self.statusList
        )
    }

    public func placeStatusList(seq: Int64, size: Int64, at: Int64) async throws -> StatusListRecord {
        guard seq >= 1, size >= 1 else { throw StoreError.conflict("a status list needs seq >= 1 and size >= 1") }
        let logger = self.logger
        return try await transaction { conn in
            // Lists are created by one transaction at a time (every replica): the layout stays contiguous.
            try await Self.lock(conn, .statusLists, logger: logger)
            let covering = try await Self.collect(
                conn.query(
                    """
                    SELECT number, first_seq, size, created_at FROM status_lists WHERE first_seq <= \(seq)
                    ORDER BY number DESC LIMIT 1
                    """,
                    logger: logger
                )
            )
            if let r = try covering.first.map(Self.statusList), r.contains(seq: seq) { return r }
            let last = try await Self.collect(
                conn.query(
                    "SELECT number, first_seq, size, created_at FROM status_lists ORDER BY number DESC LIMIT 1",
                    logger: logger
                )
            ).first.map(Self.statusList)
            let created = StatusListRecord.extending(last, toCover: seq, size: size, at: at)
            guard let holding = created.last else {
                throw StoreError.conflict("seq \(seq) is not covered by the status-list layout")
            }
            for next in created {
                try await Self.drain(
                    conn.query(
                        """
                        INSERT INTO status_lists (number, first_seq, size, created_at)
                        VALUES (\(next.number), \(next.firstSeq), \(next.size), \(next.createdAt))
                        """,
                        logger: logger
                    )
                )
            }
            return holding
        }
    }

    // MARK: approval requests

    static func request(_ row: PostgresRow) throws -> ApprovalRequestRecord? {
        let c = Cells(row)
        guard let state = RequestState(rawValue: try c("state")) else { return nil }
        return ApprovalRequestRecord(
            id: try c("id"),
            deviceCodeHash: try c.bytes("device_code_hash"),
            userCode: try c("user_code"),
            clientId: try c("client_id"),
            role: try c("role"),
            stage: try c("stage"),
            audience: try c("audience"),
            runId: try c("run_id"),
            commit: try c("commit_sha"),
            triggeredBy: try c("triggered_by"),
            createdAt: try c("created_at"),
            expiresAt: try c("expires_at"),
            state: state,
            interval: try c("interval"),
            lastPollAt: try c("last_poll_at"),
            decidedBy: try c("decided_by"),
            denyReason: try c("deny_reason"),
            tokenJti: try c("token_jti"),
            ciIssuer: try c("ci_issuer"),
            ciClaims: try c("ci_claims")
        )
    }

    public func insertRequest(_ q: ApprovalRequestRecord, audit: AuditAppend) async throws {
        let logger = self.logger
        do {
            try await transaction { conn in
                try await Self.lock(conn, .auditChain, logger: logger)
                try await Self.drain(
                    conn.query(
                        """
                        INSERT INTO approval_requests (id, device_code_hash, user_code, client_id, role, stage, audience,
                            run_id, commit_sha, triggered_by, created_at, expires_at, state, interval, decided_by,
                            ci_issuer, ci_claims)
                        VALUES (\(q.id), \(Data(q.deviceCodeHash)), \(q.userCode), \(q.clientId), \(q.role), \(q.stage),
                            \(q.audience), \(q.runId), \(q.commit), \(q.triggeredBy), \(q.createdAt), \(q.expiresAt),
                            \(q.state.rawValue), \(q.interval), \(q.decidedBy), \(q.ciIssuer), \(q.ciClaims))
                        """,
                        logger: logger
                    )
                )
                _ = try await Self.appendAudit(conn, audit.chain, logger: logger)
            }
        } catch let e as StoreError where e == .conflict {
            throw StoreError.conflict("code collision")
        }
    }

    public func request(id: String) async throws -> ApprovalRequestRecord? {
        try await rows("SELECT * FROM approval_requests WHERE id = \(id)").first.flatMap(Self.request)
    }

    public func request(userCode: String) async throws -> ApprovalRequestRecord? {
        try await rows("SELECT * FROM approval_requests WHERE user_code = \(userCode)").first.flatMap(Self.request)
    }

    public func request(deviceCodeHash: [UInt8]) async throws -> ApprovalRequestRecord? {
        try await rows("SELECT * FROM approval_requests WHERE device_code_hash = \(Data(deviceCodeHash))").first
            .flatMap(Self.request)
    }

    public func pendingRequests(now: Int64) async throws -> [ApprovalRequestRecord] {
        try await rows(
            """
            SELECT * FROM approval_requests WHERE state = 'pending' AND expires_at > \(now)
            ORDER BY created_at, id COLLATE "C"
            """
        ).compactMap(Self.request)
    }

    public func notePoll(requestId: String, at: Int64, interval: Int64) async throws {
        _ = try await rows(
            "UPDATE approval_requests SET last_poll_at = \(at), interval = \(interval) WHERE id = \(requestId)"
        )
    }

    public func transitionRequest(
        id: String,
        from: RequestState,
        to: RequestState,
        decidedBy: String?,
        reason: String?,
        audit: AuditAppend
    ) async throws -> Bool {
        let logger = self.logger
        return try await transaction { conn in
            try await Self.lock(conn, .auditChain, logger: logger)
            let moved = try await Self.collect(
                conn.query(
                    """
                    UPDATE approval_requests SET state = \(to.rawValue), decided_by = COALESCE(\(decidedBy), decided_by),
                        deny_reason = COALESCE(\(reason), deny_reason)
                    WHERE id = \(id) AND state = \(from.rawValue)
                    RETURNING 1
                    """,
                    logger: logger
                )
            )
            guard moved.count == 1 else { return false }
            _ = try await Self.appendAudit(conn, audit.chain, logger: logger)
            return true
        }
    }

    // MARK: approvals and delegations

    static func approval(_ row: PostgresRow) throws -> ApprovalRecord {
        let c = Cells(row)
        return ApprovalRecord(
            id: try c("id"),
            requestId: try c("request_id"),
            userId: try c("user_id"),
            userName: try c("user_name"),
            sessionId: try c("session_id"),
            amr: strings(try c("amr")),
            authTime: try c("auth_time"),
            createdAt: try c("created_at"),
            binding: try c("binding"),
            delegationId: try c("delegation_id")
        )
    }

    public func insertApproval(_ a: ApprovalRecord, audit: AuditAppend) async throws -> [ApprovalRecord] {
        let logger = self.logger
        let amr = try Self.json(a.amr)
        return try await transaction { conn in
            try await Self.lock(conn, .auditChain, logger: logger)
            let state = try await Self.collect(
                conn.query("SELECT state FROM approval_requests WHERE id = \(a.requestId) FOR UPDATE", logger: logger)
            ).first?.decode(String.self)
            guard state == RequestState.pending.rawValue else {
                throw StoreError.conflict("the request is no longer pending")
            }
            let already = try await Self.collect(
                conn.query(
                    "SELECT 1 FROM approvals WHERE request_id = \(a.requestId) AND user_id = \(a.userId)",
                    logger: logger
                )
            )
            if !already.isEmpty { throw StoreError.conflict("\(a.userName) already approved this request") }
            try await Self.drain(
                conn.query(
                    """
                    INSERT INTO approvals (id, request_id, user_id, user_name, session_id, amr, auth_time, created_at,
                                           binding, delegation_id)
                    VALUES (\(a.id), \(a.requestId), \(a.userId), \(a.userName), \(a.sessionId), \(amr), \(a.authTime),
                            \(a.createdAt), \(a.binding), \(a.delegationId))
                    """,
                    logger: logger
                )
            )
            _ = try await Self.appendAudit(conn, audit.chain, logger: logger)
            return try await Self.collect(
                conn.query(
                    "SELECT * FROM approvals WHERE request_id = \(a.requestId) ORDER BY created_at, ord",
                    logger: logger
                )
            ).map(Self.approval)
        }
    }

    public func approvals(requestId: String) async throws -> [ApprovalRecord] {
        try await rows("SELECT * FROM approvals WHERE request_id = \(requestId) ORDER BY created_at, ord").map(
            Self.approval
        )
    }

    public func insertDelegation(_ d: DelegationRecord, audit: AuditAppend) async throws {
        let logger = self.logger
        let amr = try Self.json(d.amr)
        try await transaction { conn in
            try await Self.lock(conn, .auditChain, logger: logger)
            try await Self.drain(
                conn.query(
                    """
                    INSERT INTO delegations (id, user_id, user_name, session_id, amr, auth_time, client_id, role, stage,
                                             audience, created_at, expires_at)
                    VALUES (\(d.id), \(d.userId), \(d.userName), \(d.sessionId), \(amr), \(d.authTime), \(d.clientId),
                            \(d.role), \(d.stage), \(d.audience), \(d.createdAt), \(d.expiresAt))
                    """,
                    logger: logger
                )
            )
            _ = try await Self.appendAudit(conn, audit.chain, logger: logger)
        }
    }

    static func delegation(_ row: PostgresRow) throws -> DelegationRecord {
        let c = Cells(row)
        return DelegationRecord(
            id: try c("id"),
            userId: try c("user_id"),
            userName: try c("user_name"),
            sessionId: try c("session_id"),
            amr: strings(try c("amr")),
            authTime: try c("auth_time"),
            clientId: try c("client_id"),
            role: try c("role"),
            stage: try c("stage"),
            audience: try c("audience"),
            createdAt: try c("created_at"),
            expiresAt: try c("expires_at"),
            revokedAt: try c("revoked_at"),
            revokedReason: try c("revoked_reason")
        )
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
        try await rows(
            """
            SELECT * FROM delegations
            WHERE client_id = \(clientId) AND role = \(role) AND stage = \(stage) AND audience = \(audience)
              AND revoked_at IS NULL AND expires_at > \(now)
            ORDER BY created_at DESC, ord DESC
            """
        ).map(Self.delegation)
    }

    public func liveDelegations(sessionId: String, now: Int64) async throws -> [DelegationRecord] {
        try await rows(
            """
            SELECT * FROM delegations WHERE session_id = \(sessionId) AND revoked_at IS NULL AND expires_at > \(now)
            ORDER BY created_at DESC, ord DESC
            """
        ).map(Self.delegation)
    }

    public func liveDelegations(userId: String, now: Int64) async throws -> [DelegationRecord] {
        try await rows(
            """
            SELECT * FROM delegations WHERE user_id = \(userId) AND revoked_at IS NULL AND expires_at > \(now)
            ORDER BY created_at DESC, ord DESC
            """
        ).map(Self.delegation)
    }

    public func liveDelegations(now: Int64) async throws -> [DelegationRecord] {
        try await rows(
            """
            SELECT * FROM delegations WHERE revoked_at IS NULL AND expires_at > \(now)
            ORDER BY created_at DESC, ord DESC
            """
        ).map(Self.delegation)
    }

    public func delegation(id: String) async throws -> DelegationRecord? {
        try await rows("SELECT * FROM delegations WHERE id = \(id)").first.map(Self.delegation)
    }

    public func revokeDelegations(
        ids: [String],
        at: Int64,
        reason: String,
        audit: AuditAppend?
    ) async throws -> [String] {
        let logger = self.logger
        return try await transaction { conn in
            if audit != nil { try await Self.lock(conn, .auditChain, logger: logger) }
            var revoked: [String] = []
            for id in ids {
                let changed = try await Self.collect(
                    conn.query(
                        """
                        UPDATE delegations SET revoked_at = \(at), revoked_reason = \(reason)
                        WHERE id = \(id) AND revoked_at IS NULL
                        RETURNING 1
                        """,
                        logger: logger
                    )
                )
                if changed.count == 1 { revoked.append(id) }
            }
            if !revoked.isEmpty, let audit { _ = try await Self.appendAudit(conn, audit.chain, logger: logger) }
            return revoked
        }
    }
}
