import Foundation
import Logging
import PostgresNIO

extension PostgresStore {
    public func useCIToken(issuer: String, key: String, expiresAt: Int64, now: Int64) async throws -> Bool {
        let cutoff = now - SQLiteStore.ciTokenPruneMargin
        let logger = self.logger
        return try await transaction { conn in
            try await Self.drain(conn.query("DELETE FROM ci_token_uses WHERE expires_at < \(cutoff)", logger: logger))
            let inserted = try await Self.collect(
                conn.query(
                    """
                    INSERT INTO ci_token_uses (issuer, token_key, expires_at, used_at)
                    VALUES (\(issuer), \(key), \(expiresAt), \(now))
                    ON CONFLICT (issuer, token_key) DO NOTHING RETURNING 1
                    """,
                    logger: logger
                )
            )
            return !inserted.isEmpty
        }
    }
}
