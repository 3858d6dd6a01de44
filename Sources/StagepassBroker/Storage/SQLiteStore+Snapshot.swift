import Foundation
import GRDB

extension SQLiteStore: StoreTransfer {
    public func exportSnapshot() async throws -> StoreSnapshot {
        // One read transaction: a consistent picture of the whole database.
        try await db.read { db in
            var s = StoreSnapshot()
            s.users = try Row.fetchAll(db, sql: "SELECT * FROM users ORDER BY id").map(Self.user)
            s.groups = try String.fetchAll(db, sql: "SELECT name FROM groups ORDER BY name")
            s.memberships = try Row.fetchAll(
                db,
                sql: "SELECT user_id, group_name FROM memberships ORDER BY user_id, group_name"
            ).map { MembershipRecord(userId: $0["user_id"], group: $0["group_name"]) }
            s.factors = try Row.fetchAll(db, sql: "SELECT * FROM factors ORDER BY id").map {
                try Self.readable(Self.factor($0), "factor")
            }
            s.backupCodes = try Row.fetchAll(db, sql: "SELECT * FROM backup_codes ORDER BY id").map { r in
                let h: Data = r["code_hash"]
                return BackupCodeRecord(id: r["id"], userId: r["user_id"], codeHash: [UInt8](h), usedAt: r["used_at"])
            }
            s.webAuthnCredentials = try Row.fetchAll(db, sql: Self.credentialSelect + " ORDER BY c.factor_id").map(
                Self.credential
            )
            s.sessions = try Row.fetchAll(db, sql: "SELECT * FROM sessions ORDER BY id").map {
                try Self.readable(Self.session($0), "session")
            }
            s.clients = try Row.fetchAll(db, sql: "SELECT * FROM clients ORDER BY name").map(Self.client)
            s.tokens = try Row.fetchAll(db, sql: "SELECT * FROM tokens ORDER BY seq").map(Self.token)
            s.statusLists = try Row.fetchAll(db, sql: "SELECT * FROM status_lists ORDER BY number").map {
                StatusListRecord(
                    number: $0["number"],
                    firstSeq: $0["first_seq"],
                    size: $0["size"],
                    createdAt: $0["created_at"]
                )
            }
            for r in try Row.fetchAll(db, sql: "SELECT name, value FROM counters") {
                s.counters[r["name"]] = r["value"]
            }
            s.ciTokenUses = try Row.fetchAll(
                db,
                sql: "SELECT * FROM ci_token_uses ORDER BY issuer COLLATE BINARY, token_key COLLATE BINARY"
            ).map {
                CITokenUseRecord(
                    issuer: $0["issuer"],
                    tokenKey: $0["token_key"],
                    expiresAt: $0["expires_at"],
                    usedAt: $0["used_at"]
                )
            }
            s.requests = try Row.fetchAll(db, sql: "SELECT * FROM approval_requests ORDER BY id").map {
                try Self.readable(Self.request($0), "approval request")
            }
            s.approvals = try Row.fetchAll(db, sql: "SELECT * FROM approvals ORDER BY rowid").map(Self.approval)
            s.delegations = try Row.fetchAll(db, sql: "SELECT * FROM delegations ORDER BY rowid").map(Self.delegation)
            s.audit = try Row.fetchAll(db, sql: "SELECT * FROM audit_log ORDER BY seq").map(Self.auditRow)
            return s
        }
    }

    /// A row the broker's decoder cannot read (an unknown state or kind) stops the export rather than vanish from it.
    static func readable<T>(_ record: T?, _ what: String) throws -> T {
        guard let record else { throw StoreError.backend("a stored \(what) cannot be read") }
        return record
    }

    public func importSnapshot(_ s: StoreSnapshot) async throws {
        try await db.write { db in
            var counts: [(table: String, rows: Int)] = []
            for table in StoreSnapshot.occupancyTables {
                // Constant table names from StoreSnapshot, never input.
                counts.append((table, try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(table)") ?? 0))
            }
            var counters: [String: Int64] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT name, value FROM counters") { counters[r["name"]] = r["value"] }
            if let reason = StoreSnapshot.notEmptyReason(counts: counts, counters: counters) {
                throw StoreTransferError.targetNotEmpty(reason)
            }
            for u in s.users {
                try db.execute(
                    sql: """
                        INSERT INTO users (id, name, password_hash, disabled, locked, created_at)
                        VALUES (?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [u.id, u.name, u.passwordHash, u.disabled, u.locked, u.createdAt]
                )
            }
            for g in s.groups { try db.execute(sql: "INSERT INTO groups (name) VALUES (?)", arguments: [g]) }
            for m in s.memberships {
                try db.execute(
                    sql: "INSERT INTO memberships (user_id, group_name) VALUES (?, ?)",
                    arguments: [m.userId, m.group]
                )
            }
            for f in s.factors {
                try db.execute(
                    sql: """
                        INSERT INTO factors (id, user_id, kind, state, secret_box, last_used_step, created_at,
                                             last_used_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        f.id, f.userId, f.kind.rawValue, f.state.rawValue, f.secretBox.map { Data($0) },
                        f.lastUsedStep, f.createdAt, f.lastUsedAt,
                    ]
                )
            }
            for b in s.backupCodes {
                try db.execute(
                    sql: "INSERT INTO backup_codes (id, user_id, code_hash, used_at) VALUES (?, ?, ?, ?)",
                    arguments: [b.id, b.userId, Data(b.codeHash), b.usedAt]
                )
            }
            for c in s.webAuthnCredentials {
                try db.execute(
                    sql: """
                        INSERT INTO webauthn_credentials (factor_id, credential_id, public_key, alg, sign_count, name,
                            aaguid, user_verified_at_registration, attestation, created_at, last_used_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        c.factorId, Data(c.credentialId), Data(c.publicKey), c.algorithm, c.signCount, c.name,
                        Data(c.aaguid), c.userVerifiedAtRegistration, c.attestation, c.createdAt, c.lastUsedAt,
                    ]
                )
            }
            for x in s.sessions {
                try db.execute(
                    sql: """
                        INSERT INTO sessions (id, token_hash, user_id, state, amr, auth_time, created_at,
                                              idle_expires_at, absolute_expires_at, proofs)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        x.id, Data(x.tokenHash), x.userId, x.state.rawValue, try snapshotJSON(x.amr), x.authTime,
                        x.createdAt, x.idleExpiresAt, x.absoluteExpiresAt, try snapshotJSON(x.proofs),
                    ]
                )
            }
            for c in s.clients {
                try db.execute(
                    sql: "INSERT INTO clients (name, secret_hash, created_at) VALUES (?, ?, ?)",
                    arguments: [c.name, Data(c.secretHash), c.createdAt]
                )
            }
            for t in s.tokens {
                // The explicit seq keeps every status-list index; AUTOINCREMENT continues after the highest.
                try db.execute(
                    sql: """
                        INSERT INTO tokens (seq, jti, kid, user_id, user_name, session_id, client_id, role, stage,
                                            audience, request_id, issued_at, expires_at, revoked_at, revoked_reason)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        t.seq, t.jti, t.kid, t.userId, t.userName, t.sessionId, t.clientId, t.role, t.stage,
                        t.audience, t.requestId, t.issuedAt, t.expiresAt, t.revokedAt, t.revokedReason,
                    ]
                )
            }
            for l in s.statusLists {
                try db.execute(
                    sql: "INSERT INTO status_lists (number, first_seq, size, created_at) VALUES (?, ?, ?, ?)",
                    arguments: [l.number, l.firstSeq, l.size, l.createdAt]
                )
            }
            for u in s.ciTokenUses {
                try db.execute(
                    sql: "INSERT INTO ci_token_uses (issuer, token_key, expires_at, used_at) VALUES (?, ?, ?, ?)",
                    arguments: [u.issuer, u.tokenKey, u.expiresAt, u.usedAt]
                )
            }
            for (name, value) in s.counters.sorted(by: { $0.key < $1.key }) {
                try db.execute(
                    sql: """
                        INSERT INTO counters (name, value) VALUES (?, ?)
                        ON CONFLICT (name) DO UPDATE SET value = excluded.value
                        """,
                    arguments: [name, value]
                )
            }
            for r in s.requests {
                try db.execute(
                    sql: """
                        INSERT INTO approval_requests (id, device_code_hash, user_code, client_id, role, stage,
                            audience, run_id, commit_sha, triggered_by, created_at, expires_at, state, interval,
                            last_poll_at, decided_by, deny_reason, token_jti, ci_issuer, ci_claims)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        r.id, Data(r.deviceCodeHash), r.userCode, r.clientId, r.role, r.stage, r.audience, r.runId,
                        r.commit, r.triggeredBy, r.createdAt, r.expiresAt, r.state.rawValue, r.interval, r.lastPollAt,
                        r.decidedBy, r.denyReason, r.tokenJti, r.ciIssuer, r.ciClaims,
                    ]
                )
            }
            for a in s.approvals {
                try db.execute(
                    sql: """
                        INSERT INTO approvals (id, request_id, user_id, user_name, session_id, amr, auth_time,
                                               created_at, binding, delegation_id)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        a.id, a.requestId, a.userId, a.userName, a.sessionId, try snapshotJSON(a.amr), a.authTime,
                        a.createdAt, a.binding, a.delegationId,
                    ]
                )
            }
            for d in s.delegations {
                try db.execute(
                    sql: """
                        INSERT INTO delegations (id, user_id, user_name, session_id, amr, auth_time, client_id, role,
                                                 stage, audience, created_at, expires_at, revoked_at, revoked_reason)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        d.id, d.userId, d.userName, d.sessionId, try snapshotJSON(d.amr), d.authTime, d.clientId,
                        d.role, d.stage, d.audience, d.createdAt, d.expiresAt, d.revokedAt, d.revokedReason,
                    ]
                )
            }
            for a in s.audit {
                try db.execute(
                    sql: "INSERT INTO audit_log (seq, time, prev_hash, event, hash) VALUES (?, ?, ?, ?, ?)",
                    arguments: [a.seq, a.time, a.prevHash, a.event, a.hash]
                )
            }
        }
    }
}

/// The JSON the stores keep in text columns (`amr`, `proofs`): sorted keys, like the stores' own writers.
func snapshotJSON<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
