import Foundation
import GRDB

extension SQLiteStore {
    /// Entries are kept this long past their token's expiry, so replicas whose clocks differ a little agree.
    static let ciTokenPruneMargin: Int64 = 300

    public func useCIToken(issuer: String, key: String, expiresAt: Int64, now: Int64) async throws -> Bool {
        try await db.write { db in
            try db.execute(
                sql: "DELETE FROM ci_token_uses WHERE expires_at < ?",
                arguments: [now - Self.ciTokenPruneMargin]
            )
            try db.execute(
                sql: """
                    INSERT INTO ci_token_uses (issuer, token_key, expires_at, used_at) VALUES (?, ?, ?, ?)
                    ON CONFLICT (issuer, token_key) DO NOTHING
                    """,
                arguments: [issuer, key, expiresAt, now]
            )
            return db.changesCount == 1
        }
    }
}
