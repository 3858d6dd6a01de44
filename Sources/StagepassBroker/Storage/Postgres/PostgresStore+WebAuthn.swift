import Foundation
import Logging
import PostgresNIO

extension PostgresStore {
    static func credential(_ row: PostgresRow) throws -> WebAuthnCredentialRecord {
        let c = Cells(row)
        return WebAuthnCredentialRecord(
            factorId: try c("factor_id"),
            userId: try c("user_id"),
            credentialId: try c.bytes("credential_id"),
            publicKey: try c.bytes("public_key"),
            algorithm: try c("alg"),
            signCount: try c("sign_count"),
            name: try c("name"),
            aaguid: try c.bytes("aaguid"),
            userVerifiedAtRegistration: try c("user_verified_at_registration"),
            attestation: try c("attestation"),
            createdAt: try c("created_at"),
            lastUsedAt: try c("last_used_at")
        )
    }

    public func insertWebAuthnCredential(_ c: WebAuthnCredentialRecord, factor f: FactorRecord) async throws {
        let logger = self.logger
        do {
            try await transaction { conn in
                try await Self.drain(
                    conn.query(
                        """
                        INSERT INTO factors (id, user_id, kind, state, secret_box, last_used_step, created_at)
                        VALUES (\(f.id), \(f.userId), 'webauthn', \(f.state.rawValue), NULL, NULL, \(f.createdAt))
                        """,
                        logger: logger
                    )
                )
                try await Self.drain(
                    conn.query(
                        """
                        INSERT INTO webauthn_credentials (factor_id, credential_id, public_key, alg, sign_count, name,
                            aaguid, user_verified_at_registration, attestation, created_at, last_used_at)
                        VALUES (\(f.id), \(Data(c.credentialId)), \(Data(c.publicKey)), \(c.algorithm), \(c.signCount),
                            \(c.name), \(Data(c.aaguid)), \(c.userVerifiedAtRegistration), \(c.attestation),
                            \(c.createdAt), \(c.lastUsedAt))
                        """,
                        logger: logger
                    )
                )
            }
        } catch let e as StoreError where e == .conflict {
            throw StoreError.conflict("this security key is already registered")
        }
    }

    public func webAuthnCredential(credentialId: [UInt8]) async throws -> WebAuthnCredentialRecord? {
        try await rows(
            """
            SELECT c.*, f.user_id FROM webauthn_credentials c
            JOIN factors f ON f.id = c.factor_id AND f.kind = 'webauthn'
            WHERE c.credential_id = \(Data(credentialId))
            """
        ).first.map(Self.credential)
    }

    public func webAuthnCredential(factorId: String) async throws -> WebAuthnCredentialRecord? {
        try await rows(
            """
            SELECT c.*, f.user_id FROM webauthn_credentials c
            JOIN factors f ON f.id = c.factor_id AND f.kind = 'webauthn'
            WHERE c.factor_id = \(factorId)
            """
        ).first.map(Self.credential)
    }

    public func webAuthnCredentials(userId: String) async throws -> [WebAuthnCredentialRecord] {
        try await rows(
            """
            SELECT c.*, f.user_id FROM webauthn_credentials c
            JOIN factors f ON f.id = c.factor_id AND f.kind = 'webauthn'
            WHERE f.user_id = \(userId)
            ORDER BY c.created_at, c.factor_id COLLATE "C"
            """
        ).map(Self.credential)
    }

    public func renameWebAuthnCredential(factorId: String, name: String) async throws {
        if try await count("UPDATE webauthn_credentials SET name = \(name) WHERE factor_id = \(factorId) RETURNING 1")
            == 0
        {
            throw StoreError.notFound("no such security key")
        }
    }

    public func advanceWebAuthnSignCount(factorId: String, to newCount: Int64, usedAt: Int64) async throws -> Bool {
        try await count(
            """
            UPDATE webauthn_credentials SET sign_count = \(newCount), last_used_at = \(usedAt)
            WHERE factor_id = \(factorId) AND (sign_count < \(newCount) OR (sign_count = 0 AND \(newCount) = 0))
            RETURNING 1
            """
        ) == 1
    }

    public func insertWebAuthnChallenge(_ c: WebAuthnChallengeRecord) async throws {
        _ = try await rows(
            """
            INSERT INTO webauthn_challenges (challenge_hash, user_id, purpose, binding, created_at, expires_at)
            VALUES (\(Data(c.challengeHash)), \(c.userId), \(c.purpose), \(c.binding), \(c.createdAt), \(c.expiresAt))
            """
        )
    }

    public func consumeWebAuthnChallenge(hash: [UInt8]) async throws -> WebAuthnChallengeRecord? {
        // One statement: two concurrent finishes of the same ceremony cannot both get the row.
        try await rows("DELETE FROM webauthn_challenges WHERE challenge_hash = \(Data(hash)) RETURNING *").first.map {
            row in
            let c = Cells(row)
            return WebAuthnChallengeRecord(
                challengeHash: try c.bytes("challenge_hash"),
                userId: try c("user_id"),
                purpose: try c("purpose"),
                binding: try c("binding"),
                createdAt: try c("created_at"),
                expiresAt: try c("expires_at")
            )
        }
    }

    public func deleteExpiredWebAuthnChallenges(now: Int64) async throws -> Int {
        try await count("DELETE FROM webauthn_challenges WHERE expires_at <= \(now) RETURNING 1")
    }
}
