import Foundation
import Logging
import PostgresNIO

extension PostgresStore: StoreTransfer {
    public func exportSnapshot() async throws -> StoreSnapshot {
        let logger = self.logger
        return try await transaction { conn in
            // One snapshot for every table (the first statement of the transaction fixes it).
            try await Self.drain(
                conn.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
            )
            func all(_ query: PostgresQuery) async throws -> [PostgresRow] {
                try await Self.collect(conn.query(query, logger: logger))
            }
            var s = StoreSnapshot()
            s.users = try await all("SELECT * FROM users ORDER BY id COLLATE \"C\"").map(Self.user)
            s.groups = try await all("SELECT name FROM groups ORDER BY name COLLATE \"C\"").map {
                try $0.decode(String.self)
            }
            s.memberships = try await all(
                "SELECT user_id, group_name FROM memberships ORDER BY user_id COLLATE \"C\", group_name COLLATE \"C\""
            ).map { row in
                let (user, group) = try row.decode((String, String).self)
                return MembershipRecord(userId: user, group: group)
            }
            s.factors = try await all("SELECT * FROM factors ORDER BY id COLLATE \"C\"").map {
                try SQLiteStore.readable(Self.factor($0), "factor")
            }
            s.backupCodes = try await all("SELECT * FROM backup_codes ORDER BY id").map { row in
                let c = Cells(row)
                return BackupCodeRecord(
                    id: try c("id"),
                    userId: try c("user_id"),
                    codeHash: try c.bytes("code_hash"),
                    usedAt: try c("used_at")
                )
            }
            s.webAuthnCredentials = try await all(
                """
                SELECT c.*, f.user_id FROM webauthn_credentials c
                JOIN factors f ON f.id = c.factor_id AND f.kind = 'webauthn'
                ORDER BY c.factor_id COLLATE "C"
                """
            ).map(Self.credential)
            s.sessions = try await all("SELECT * FROM sessions ORDER BY id COLLATE \"C\"").map {
                try SQLiteStore.readable(Self.session($0), "session")
            }
            s.clients = try await all("SELECT * FROM clients ORDER BY name COLLATE \"C\"").map(Self.client)
            s.tokens = try await all("SELECT * FROM tokens ORDER BY seq").map(Self.token)
            s.statusLists = try await all(
                "SELECT number, first_seq, size, created_at FROM status_lists ORDER BY number"
            )
            .map {
                let (number, firstSeq, size, createdAt) = try $0.decode((Int64, Int64, Int64, Int64).self)
                return StatusListRecord(number: number, firstSeq: firstSeq, size: size, createdAt: createdAt)
            }
            s.ciTokenUses = try await all(
                """
                SELECT issuer, token_key, expires_at, used_at FROM ci_token_uses
                ORDER BY issuer COLLATE "C", token_key COLLATE "C"
                """
            )
            .map {
                let (issuer, key, expiresAt, usedAt) = try $0.decode((String, String, Int64, Int64).self)
                return CITokenUseRecord(issuer: issuer, tokenKey: key, expiresAt: expiresAt, usedAt: usedAt)
            }
            for row in try await all("SELECT name, value FROM counters") {
                let (name, value) = try row.decode((String, Int64).self)
                s.counters[name] = value
            }
            s.requests = try await all("SELECT * FROM approval_requests ORDER BY id COLLATE \"C\"").map {
                try SQLiteStore.readable(Self.request($0), "approval request")
            }
            s.approvals = try await all("SELECT * FROM approvals ORDER BY ord").map(Self.approval)
            s.delegations = try await all("SELECT * FROM delegations ORDER BY ord").map(Self.delegation)
            s.audit = try await all("SELECT seq, time, prev_hash, event, hash FROM audit_log ORDER BY seq").map(
                Self.auditRow
            )
            return s
        }
    }

    public func importSnapshot(_ s: StoreSnapshot) async throws {
        let logger = self.logger
        try await transaction { conn in
            func run(_ query: PostgresQuery) async throws { try await Self.drain(conn.query(query, logger: logger)) }
            // The chain lock: no broker appends to this database while the copy is written.
            try await Self.lock(conn, .auditChain, logger: logger)
            var counts: [(table: String, rows: Int)] = []
            for table in StoreSnapshot.occupancyTables {
                // Constant table names from StoreSnapshot, never input.
                let n = try await Self.collect(
                    conn.query(PostgresQuery(unsafeSQL: "SELECT COUNT(*) FROM \(table)"), logger: logger)
                ).first?.decode(Int64.self)
                counts.append((table, Int(n ?? 0)))
            }
            // The database keyring (PostgreSQL only) counts too: a copy never lands beside another broker's keys.
            let keyringRows = try await Self.collect(conn.query("SELECT COUNT(*) FROM keyring", logger: logger))
            counts.append(("keyring", Int(try keyringRows.first?.decode(Int64.self) ?? 0)))
            var counters: [String: Int64] = [:]
            for row in try await Self.collect(conn.query("SELECT name, value FROM counters", logger: logger)) {
                let (name, value) = try row.decode((String, Int64).self)
                counters[name] = value
            }
            if let reason = StoreSnapshot.notEmptyReason(counts: counts, counters: counters) {
                throw StoreTransferError.targetNotEmpty(reason)
            }
            for u in s.users {
                try await run(
                    """
                    INSERT INTO users (id, name, password_hash, disabled, locked, created_at)
                    VALUES (\(u.id), \(u.name), \(u.passwordHash), \(u.disabled), \(u.locked), \(u.createdAt))
                    """
                )
            }
            for g in s.groups { try await run("INSERT INTO groups (name) VALUES (\(g))") }
            for m in s.memberships {
                try await run("INSERT INTO memberships (user_id, group_name) VALUES (\(m.userId), \(m.group))")
            }
            for f in s.factors {
                try await run(
                    """
                    INSERT INTO factors (id, user_id, kind, state, secret_box, last_used_step, created_at, last_used_at)
                    VALUES (\(f.id), \(f.userId), \(f.kind.rawValue), \(f.state.rawValue), \(f.secretBox.map { Data($0) }),
                            \(f.lastUsedStep), \(f.createdAt), \(f.lastUsedAt))
                    """
                )
            }
            for b in s.backupCodes {
                try await run(
                    """
                    INSERT INTO backup_codes (id, user_id, code_hash, used_at) OVERRIDING SYSTEM VALUE
                    VALUES (\(b.id), \(b.userId), \(Data(b.codeHash)), \(b.usedAt))
                    """
                )
            }
            // New backup codes continue after the highest copied id.
            try await run(
                """
                SELECT setval(pg_get_serial_sequence('backup_codes', 'id'), GREATEST(MAX(id), 1), MAX(id) IS NOT NULL)
                FROM backup_codes
                """
            )
            for c in s.webAuthnCredentials {
                try await run(
                    """
                    INSERT INTO webauthn_credentials (factor_id, credential_id, public_key, alg, sign_count, name,
                        aaguid, user_verified_at_registration, attestation, created_at, last_used_at)
                    VALUES (\(c.factorId), \(Data(c.credentialId)), \(Data(c.publicKey)), \(c.algorithm),
                        \(c.signCount), \(c.name), \(Data(c.aaguid)), \(c.userVerifiedAtRegistration), \(c.attestation),
                        \(c.createdAt), \(c.lastUsedAt))
                    """
                )
            }
            for x in s.sessions {
                let (amr, proofs) = (try snapshotJSON(x.amr), try snapshotJSON(x.proofs))
                try await run(
                    """
                    INSERT INTO sessions (id, token_hash, user_id, state, amr, auth_time, created_at, idle_expires_at,
                                          absolute_expires_at, proofs)
                    VALUES (\(x.id), \(Data(x.tokenHash)), \(x.userId), \(x.state.rawValue), \(amr), \(x.authTime),
                            \(x.createdAt), \(x.idleExpiresAt), \(x.absoluteExpiresAt), \(proofs))
                    """
                )
            }
            for c in s.clients {
                try await run(
                    "INSERT INTO clients (name, secret_hash, created_at) VALUES (\(c.name), \(Data(c.secretHash)), \(c.createdAt))"
                )
            }
            for t in s.tokens {
                // The explicit seq keeps every status-list index; new tokens take MAX(seq) + 1.
                try await run(
                    """
                    INSERT INTO tokens (seq, jti, kid, user_id, user_name, session_id, client_id, role, stage, audience,
                                        request_id, issued_at, expires_at, revoked_at, revoked_reason)
                    VALUES (\(t.seq), \(t.jti), \(t.kid), \(t.userId), \(t.userName), \(t.sessionId), \(t.clientId),
                            \(t.role), \(t.stage), \(t.audience), \(t.requestId), \(t.issuedAt), \(t.expiresAt),
                            \(t.revokedAt), \(t.revokedReason))
                    """
                )
            }
            for l in s.statusLists {
                try await run(
                    """
                    INSERT INTO status_lists (number, first_seq, size, created_at)
                    VALUES (\(l.number), \(l.firstSeq), \(l.size), \(l.createdAt))
                    """
                )
            }
            for u in s.ciTokenUses {
                try await run(
                    """
                    INSERT INTO ci_token_uses (issuer, token_key, expires_at, used_at)
                    VALUES (\(u.issuer), \(u.tokenKey), \(u.expiresAt), \(u.usedAt))
                    """
                )
            }
            for (name, value) in s.counters.sorted(by: { $0.key < $1.key }) {
                try await run(
                    """
                    INSERT INTO counters (name, value) VALUES (\(name), \(value))
                    ON CONFLICT (name) DO UPDATE SET value = excluded.value
                    """
                )
            }
            for r in s.requests {
                try await run(
                    """
                    INSERT INTO approval_requests (id, device_code_hash, user_code, client_id, role, stage, audience,
                        run_id, commit_sha, triggered_by, created_at, expires_at, state, interval, last_poll_at,
                        decided_by, deny_reason, token_jti, ci_issuer, ci_claims)
                    VALUES (\(r.id), \(Data(r.deviceCodeHash)), \(r.userCode), \(r.clientId), \(r.role), \(r.stage),
                        \(r.audience), \(r.runId), \(r.commit), \(r.triggeredBy), \(r.createdAt), \(r.expiresAt),
                        \(r.state.rawValue), \(r.interval), \(r.lastPollAt), \(r.decidedBy), \(r.denyReason),
                        \(r.tokenJti), \(r.ciIssuer), \(r.ciClaims))
                    """
                )
            }
            // Approvals and delegations in their stored order: `ord` is assigned in insertion order.
            for a in s.approvals {
                let amr = try snapshotJSON(a.amr)
                try await run(
                    """
                    INSERT INTO approvals (id, request_id, user_id, user_name, session_id, amr, auth_time, created_at,
                                           binding, delegation_id)
                    VALUES (\(a.id), \(a.requestId), \(a.userId), \(a.userName), \(a.sessionId), \(amr), \(a.authTime),
                            \(a.createdAt), \(a.binding), \(a.delegationId))
                    """
                )
            }
            for d in s.delegations {
                let amr = try snapshotJSON(d.amr)
                try await run(
                    """
                    INSERT INTO delegations (id, user_id, user_name, session_id, amr, auth_time, client_id, role, stage,
                                             audience, created_at, expires_at, revoked_at, revoked_reason)
                    VALUES (\(d.id), \(d.userId), \(d.userName), \(d.sessionId), \(amr), \(d.authTime), \(d.clientId),
                            \(d.role), \(d.stage), \(d.audience), \(d.createdAt), \(d.expiresAt), \(d.revokedAt),
                            \(d.revokedReason))
                    """
                )
            }
            for a in s.audit {
                try await run(
                    """
                    INSERT INTO audit_log (seq, time, prev_hash, event, hash)
                    VALUES (\(a.seq), \(a.time), \(a.prevHash), \(a.event), \(a.hash))
                    """
                )
            }
        }
    }
}
