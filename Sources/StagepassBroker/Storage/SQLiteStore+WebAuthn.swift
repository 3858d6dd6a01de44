import Foundation
import GRDB

extension SQLiteStore {
    /// Migration `v3-webauthn`: security keys and their challenges.
    static func migrateWebAuthn(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE webauthn_credentials (
                    factor_id TEXT PRIMARY KEY NOT NULL REFERENCES factors(id) ON DELETE CASCADE,
                    credential_id BLOB NOT NULL UNIQUE
                        CHECK (length(credential_id) BETWEEN 1 AND 1023),
                    public_key BLOB NOT NULL,
                    alg INTEGER NOT NULL CHECK (alg IN (-7, -8)),
                    sign_count INTEGER NOT NULL DEFAULT 0 CHECK (sign_count BETWEEN 0 AND 4294967295),
                    name TEXT NOT NULL,
                    aaguid BLOB NOT NULL CHECK (length(aaguid) = 16),
                    user_verified_at_registration INTEGER NOT NULL,
                    attestation TEXT NOT NULL CHECK (attestation IN ('none','self')),
                    created_at INTEGER NOT NULL,
                    last_used_at INTEGER
                );
                CREATE TABLE webauthn_challenges (
                    challenge_hash BLOB PRIMARY KEY NOT NULL,
                    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    purpose TEXT NOT NULL CHECK (purpose IN ('registration','signin','stepup','approval')),
                    binding TEXT,
                    created_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    CHECK ((purpose = 'approval') = (binding IS NOT NULL))
                );
                CREATE INDEX webauthn_challenges_expiry ON webauthn_challenges(expires_at);
                CREATE INDEX webauthn_challenges_user ON webauthn_challenges(user_id);
                """
        )
    }

    static let credentialSelect = """
        SELECT c.*, f.user_id FROM webauthn_credentials c
        JOIN factors f ON f.id = c.factor_id AND f.kind = 'webauthn'
        """

    static func credential(_ r: Row) -> WebAuthnCredentialRecord {
        let cid: Data = r["credential_id"]
        let key: Data = r["public_key"]
        let aaguid: Data = r["aaguid"]
        return WebAuthnCredentialRecord(
            factorId: r["factor_id"],
            userId: r["user_id"],
            credentialId: [UInt8](cid),
            publicKey: [UInt8](key),
            algorithm: r["alg"],
            signCount: r["sign_count"],
            name: r["name"],
            aaguid: [UInt8](aaguid),
            userVerifiedAtRegistration: r["user_verified_at_registration"],
            attestation: r["attestation"],
            createdAt: r["created_at"],
            lastUsedAt: r["last_used_at"]
        )
    }

    public func insertWebAuthnCredential(_ c: WebAuthnCredentialRecord, factor f: FactorRecord) async throws {
        try await db.write { db in
            let taken = try Row.fetchOne(
                db,
                sql: "SELECT 1 FROM webauthn_credentials WHERE credential_id = ?",
                arguments: [Data(c.credentialId)]
            )
            if taken != nil {
                throw StoreError.conflict("this security key is already registered")
            }
            try db.execute(
                sql: """
                    INSERT INTO factors (id, user_id, kind, state, secret_box, last_used_step, created_at)
                    VALUES (?, ?, 'webauthn', ?, NULL, NULL, ?)
                    """,
                arguments: [f.id, f.userId, f.state.rawValue, f.createdAt]
            )
            try db.execute(
                sql: """
                    INSERT INTO webauthn_credentials (factor_id, credential_id, public_key, alg, sign_count, name,
                        aaguid, user_verified_at_registration, attestation, created_at, last_used_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    f.id, Data(c.credentialId), Data(c.publicKey), c.algorithm, c.signCount, c.name, Data(c.aaguid),
                    c.userVerifiedAtRegistration, c.attestation, c.createdAt, c.lastUsedAt,
                ]
            )
        }
    }

    public func webAuthnCredential(credentialId: [UInt8]) async throws -> WebAuthnCredentialRecord? {
        try await db.read { db in
            try Row.fetchOne(
                db,
                sql: Self.credentialSelect + " WHERE c.credential_id = ?",
                arguments: [Data(credentialId)]
            ).map(Self.credential)
        }
    }

    public func webAuthnCredential(factorId: String) async throws -> WebAuthnCredentialRecord? {
        try await db.read { db in
            try Row.fetchOne(db, sql: Self.credentialSelect + " WHERE c.factor_id = ?", arguments: [factorId])
                .map(Self.credential)
        }
    }

    public func webAuthnCredentials(userId: String) async throws -> [WebAuthnCredentialRecord] {
        try await db.read { db in
            try Row.fetchAll(
                db,
                sql: Self.credentialSelect + " WHERE f.user_id = ? ORDER BY c.created_at, c.factor_id",
                arguments: [userId]
            ).map(Self.credential)
        }
    }

    public func renameWebAuthnCredential(factorId: String, name: String) async throws {
        try await db.write { db in
            try db.execute(
                sql: "UPDATE webauthn_credentials SET name = ? WHERE factor_id = ?",
                arguments: [name, factorId]
            )
            if db.changesCount == 0 { throw StoreError.notFound("no such security key") }
        }
    }

    public func advanceWebAuthnSignCount(factorId: String, to newCount: Int64, usedAt: Int64) async throws -> Bool {
        try await db.write { db in
            try db.execute(
                sql: """
                    UPDATE webauthn_credentials SET sign_count = ?, last_used_at = ?
                    WHERE factor_id = ? AND (sign_count < ? OR (sign_count = 0 AND ? = 0))
                    """,
                arguments: [newCount, usedAt, factorId, newCount, newCount]
            )
            return db.changesCount == 1
        }
    }

    public func insertWebAuthnChallenge(_ c: WebAuthnChallengeRecord) async throws {
        try await db.write { db in
            try db.execute(
                sql: """
                    INSERT INTO webauthn_challenges (challenge_hash, user_id, purpose, binding, created_at, expires_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [Data(c.challengeHash), c.userId, c.purpose, c.binding, c.createdAt, c.expiresAt]
            )
        }
    }

    public func consumeWebAuthnChallenge(hash: [UInt8]) async throws -> WebAuthnChallengeRecord? {
        try await db.write { db in
            // One statement: two concurrent finishes of the same ceremony cannot both get the row.
            try Row.fetchOne(
                db,
                sql: "DELETE FROM webauthn_challenges WHERE challenge_hash = ? RETURNING *",
                arguments: [Data(hash)]
            ).map { r in
                let h: Data = r["challenge_hash"]
                return WebAuthnChallengeRecord(
                    challengeHash: [UInt8](h),
                    userId: r["user_id"],
                    purpose: r["purpose"],
                    binding: r["binding"],
                    createdAt: r["created_at"],
                    expiresAt: r["expires_at"]
                )
            }
        }
    }

    public func deleteExpiredWebAuthnChallenges(now: Int64) async throws -> Int {
        try await db.write { db in
            try db.execute(sql: "DELETE FROM webauthn_challenges WHERE expires_at <= ?", arguments: [now])
            return db.changesCount
        }
    }
}
