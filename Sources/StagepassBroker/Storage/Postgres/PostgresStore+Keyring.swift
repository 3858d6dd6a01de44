import Foundation
import Logging
import PostgresNIO

/// The signing keyring in the database (``KeyringDatabase``), for brokers that share one PostgreSQL database: table
/// `keyring` (one row per key: kid, position, alg, state, timestamps, origin, the encrypted PKCS#8 PEM while the key
/// is published) and the single-row `keyring_meta` (the version). Schema: migration `v6-keyring`.
///
/// A change is one transaction: `SELECT … FOR UPDATE` of the version row (writers queue there; a stale version
/// writes nothing), the key rows, the version bump, the chained audit records, and `pg_notify` on
/// ``changeChannel`` (delivered at commit, never for a rolled-back change).
extension PostgresStore: KeyringDatabase {
    /// The channel on which brokers announce committed changes to one another (``BrokerChange``).
    public static let changeChannel = "stagepass_changes"

    public func keyringVersion() throws -> Int64 {
        try rowsBlocking("SELECT version FROM keyring_meta WHERE id = 1").first?.decode(Int64.self) ?? 0
    }

    public func loadKeyring() throws -> StoredKeyring {
        // One statement: one snapshot of the version and the rows together.
        let found = try rowsBlocking(
            """
            SELECT m.version, k.kid, k.alg, k.state, k.created, k.activated, k.retiring_since, k.retired,
                   k.retire_after, k.origin, k.private_key_pem
            FROM keyring_meta m LEFT JOIN keyring k ON true
            WHERE m.id = 1 ORDER BY k.position
            """
        )
        var version: Int64 = 0
        var keys: [StoredKey] = []
        for row in found {
            let c = Cells(row)
            version = try c("version")
            guard let kid: String = try c.row["kid"].decode(String?.self) else { continue }
            let stateName: String = try c("state")
            guard let state = KeyState(rawValue: stateName) else {
                throw KeyStoreError.corruptKeyring(
                    "the database keyring names an unknown state \(stateName) for \(kid)"
                )
            }
            let record = KeyRecord(
                kid: kid,
                alg: try c("alg"),
                state: state,
                created: try c("created"),
                activated: try c.row["activated"].decode(Int64?.self),
                retiringSince: try c.row["retiring_since"].decode(Int64?.self),
                retired: try c.row["retired"].decode(Int64?.self),
                retireAfter: try c.row["retire_after"].decode(Int64?.self),
                origin: try c("origin")
            )
            keys.append(StoredKey(record: record, pem: try c.row["private_key_pem"].decode(String?.self)))
        }
        return StoredKeyring(version: version, keys: keys)
    }

    public func commitKeyring(_ change: KeyringChange) throws -> Int64? {
        let logger = self.logger
        // The one-active-key index is checked per statement: demotions are written before the promotion.
        let ordered = change.keys.enumerated().sorted {
            ($0.element.state == .active ? 1 : 0) < ($1.element.state == .active ? 1 : 0)
        }
        return try transactionBlocking { conn -> Int64? in
            let current =
                try await Self.collect(
                    conn.query("SELECT version FROM keyring_meta WHERE id = 1 FOR UPDATE", logger: logger)
                ).first?.decode(Int64.self) ?? 0
            guard current == change.expectedVersion else { return nil }
            for (position, r) in ordered {
                // An existing key changes state (its PEM is kept while published, destroyed otherwise); a new key is
                // inserted with its PEM.
                let updated = try await Self.collect(
                    conn.query(
                        """
                        UPDATE keyring SET position = \(Int64(position)), state = \(r.state.rawValue),
                            activated = \(r.activated), retiring_since = \(r.retiringSince), retired = \(r.retired),
                            retire_after = \(r.retireAfter),
                            private_key_pem = CASE WHEN \(r.state.isPublished) THEN private_key_pem ELSE NULL END
                        WHERE kid = \(r.kid) RETURNING 1
                        """,
                        logger: logger
                    )
                )
                guard updated.isEmpty else { continue }
                let pem = r.state.isPublished ? change.newPEMs[r.kid] : nil
                try await Self.drain(
                    conn.query(
                        """
                        INSERT INTO keyring (kid, position, alg, state, created, activated, retiring_since, retired,
                                             retire_after, origin, private_key_pem)
                        VALUES (\(r.kid), \(Int64(position)), \(r.alg), \(r.state.rawValue), \(r.created),
                                \(r.activated), \(r.retiringSince), \(r.retired), \(r.retireAfter), \(r.origin), \(pem))
                        """,
                        logger: logger
                    )
                )
            }
            let version = current + 1
            try await Self.drain(
                conn.query("UPDATE keyring_meta SET version = \(version) WHERE id = 1", logger: logger)
            )
            for entry in change.audit { _ = try await Self.appendAudit(conn, entry.chain, logger: logger) }
            let payload = BrokerChange.keyring(version).payload
            try await Self.drain(
                conn.query("SELECT pg_notify(\(Self.changeChannel), \(payload))", logger: logger)
            )
            return version
        }
    }

    /// Tells every broker listening on ``changeChannel`` that this one reloaded its access policy.
    public func announcePolicyReload() async throws {
        _ = try await rows("SELECT pg_notify(\(Self.changeChannel), \(BrokerChange.policy(from: instance).payload))")
    }
}

/// What one broker tells the others sharing its database (a `NOTIFY` payload on ``PostgresStore/changeChannel``).
/// Revocations need none: every status-list request compares the database's revocation epoch.
public enum BrokerChange: Sendable, Hashable {
    /// The keyring reached this version.
    case keyring(Int64)
    /// The broker process `from` (``PostgresStore/instance``) reloaded the access policy from its file.
    case policy(from: String)

    public var payload: String {
        switch self {
        case .keyring(let v): "keyring:\(v)"
        case .policy(let from): "policy:\(from)"
        }
    }

    /// Parses a payload; nil for anything else (ignored by listeners).
    public init?(payload: String) {
        if payload.hasPrefix("policy:") {
            self = .policy(from: String(payload.dropFirst("policy:".count)))
        } else if payload.hasPrefix("keyring:"), let v = Int64(payload.dropFirst("keyring:".count)) {
            self = .keyring(v)
        } else {
            return nil
        }
    }
}
