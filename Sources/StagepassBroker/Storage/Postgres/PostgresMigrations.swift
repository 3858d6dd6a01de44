import Logging
import PostgresNIO

/// The PostgreSQL schema, as versioned migrations named like ``SQLiteStore/migrator``'s (`v1-…` to `v4-…`), so the
/// two backends stay comparable migration by migration. Migrations are never changed once shipped; add new ones at
/// the end (a keyring table for several brokers, for instance, would be `v5-…`).
///
/// Each migration runs in its own transaction, under a transaction-scoped advisory lock
/// (``PostgresStore/LockKey/migrations``), and records its name in `schema_migrations`: two brokers starting at once
/// on one empty database apply every migration exactly once. Statements are constant text (no values), one per
/// entry: PostgreSQL's extended query protocol takes one statement at a time.
///
/// Types: `bigint` for unix times and counters, `bytea` for hashes, boxes and keys, `text` for the rest; text keys
/// that are listed in order are compared with the `C` collation, like SQLite's `BINARY`.
enum PostgresMigrations {
    struct Migration: Sendable {
        let name: String
        let statements: [String]
    }

    static let all: [Migration] = [
        Migration(
            name: "v1-accounts-factors-sessions-audit",
            statements: [
                """
                CREATE TABLE users (
                    id text PRIMARY KEY,
                    name text NOT NULL UNIQUE,
                    password_hash text NOT NULL,
                    disabled boolean NOT NULL DEFAULT false,
                    locked boolean NOT NULL DEFAULT false,
                    created_at bigint NOT NULL
                )
                """,
                "CREATE TABLE groups (name text PRIMARY KEY)",
                """
                CREATE TABLE memberships (
                    user_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    group_name text NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
                    PRIMARY KEY (user_id, group_name)
                )
                """,
                """
                CREATE TABLE factors (
                    id text PRIMARY KEY,
                    user_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    kind text NOT NULL CHECK (kind IN ('totp','backup','webauthn')),
                    state text NOT NULL CHECK (state IN ('pending','active')),
                    secret_box bytea,
                    last_used_step bigint,
                    created_at bigint NOT NULL
                )
                """,
                "CREATE INDEX factors_user ON factors(user_id)",
                """
                CREATE TABLE backup_codes (
                    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    user_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    code_hash bytea NOT NULL,
                    used_at bigint
                )
                """,
                "CREATE INDEX backup_codes_user ON backup_codes(user_id)",
                """
                CREATE TABLE sessions (
                    id text PRIMARY KEY,
                    token_hash bytea NOT NULL UNIQUE,
                    user_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    state text NOT NULL CHECK (state IN ('pending','mfa')),
                    amr text NOT NULL,
                    auth_time bigint NOT NULL,
                    created_at bigint NOT NULL,
                    idle_expires_at bigint NOT NULL,
                    absolute_expires_at bigint NOT NULL
                )
                """,
                "CREATE INDEX sessions_user ON sessions(user_id)",
                """
                CREATE TABLE throttles (
                    key text PRIMARY KEY,
                    failures bigint NOT NULL,
                    last_failure_at bigint NOT NULL
                )
                """,
                """
                CREATE TABLE audit_log (
                    seq bigint PRIMARY KEY,
                    time bigint NOT NULL,
                    prev_hash text NOT NULL,
                    event text NOT NULL,
                    hash text NOT NULL
                )
                """,
                """
                CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    RAISE EXCEPTION 'audit_log is append-only';
                END
                $$
                """,
                """
                CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
                    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()
                """,
                """
                CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
                    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()
                """,
            ]
        ),
        Migration(
            name: "v2-clients-tokens-approvals",
            statements: [
                """
                CREATE TABLE clients (
                    name text PRIMARY KEY,
                    secret_hash bytea NOT NULL,
                    created_at bigint NOT NULL
                )
                """,
                // The token ledger. No foreign keys: the ledger outlives users, sessions and clients. `seq` (the
                // status-list index) is assigned under the audit chain lock, so it is unique and has no gaps.
                """
                CREATE TABLE tokens (
                    seq bigint PRIMARY KEY CHECK (seq > 0),
                    jti text NOT NULL UNIQUE,
                    kid text NOT NULL,
                    user_id text NOT NULL,
                    user_name text NOT NULL,
                    session_id text,
                    client_id text,
                    role text NOT NULL,
                    stage text NOT NULL,
                    audience text NOT NULL,
                    request_id text,
                    issued_at bigint NOT NULL,
                    expires_at bigint NOT NULL,
                    revoked_at bigint,
                    revoked_reason text
                )
                """,
                "CREATE INDEX tokens_session ON tokens(session_id)",
                "CREATE INDEX tokens_user ON tokens(user_id)",
                "CREATE INDEX tokens_kid ON tokens(kid)",
                "CREATE INDEX tokens_revoked ON tokens(revoked_at) WHERE revoked_at IS NOT NULL",
                "CREATE TABLE counters (name text PRIMARY KEY, value bigint NOT NULL)",
                "INSERT INTO counters (name, value) VALUES ('revocation_epoch', 0)",
                """
                CREATE TABLE approval_requests (
                    id text PRIMARY KEY,
                    device_code_hash bytea NOT NULL UNIQUE,
                    user_code text NOT NULL UNIQUE,
                    client_id text NOT NULL,
                    role text NOT NULL,
                    stage text NOT NULL,
                    audience text NOT NULL,
                    run_id text NOT NULL,
                    commit_sha text,
                    triggered_by text,
                    created_at bigint NOT NULL,
                    expires_at bigint NOT NULL,
                    state text NOT NULL CHECK (state IN ('pending','approved','denied','issued')),
                    interval bigint NOT NULL,
                    last_poll_at bigint,
                    decided_by text,
                    deny_reason text,
                    token_jti text
                )
                """,
                // `ord` keeps insertion order (SQLite's rowid) for records created in the same second.
                """
                CREATE TABLE approvals (
                    id text PRIMARY KEY,
                    ord bigint GENERATED ALWAYS AS IDENTITY,
                    request_id text NOT NULL REFERENCES approval_requests(id),
                    user_id text NOT NULL,
                    user_name text NOT NULL,
                    session_id text,
                    amr text NOT NULL,
                    auth_time bigint NOT NULL,
                    created_at bigint NOT NULL,
                    binding text NOT NULL,
                    delegation_id text,
                    UNIQUE (request_id, user_id)
                )
                """,
                """
                CREATE TABLE delegations (
                    id text PRIMARY KEY,
                    ord bigint GENERATED ALWAYS AS IDENTITY,
                    user_id text NOT NULL,
                    user_name text NOT NULL,
                    session_id text,
                    amr text NOT NULL,
                    auth_time bigint NOT NULL,
                    client_id text NOT NULL,
                    role text NOT NULL,
                    stage text NOT NULL,
                    audience text NOT NULL,
                    created_at bigint NOT NULL,
                    expires_at bigint NOT NULL,
                    revoked_at bigint
                )
                """,
                "CREATE INDEX delegations_lookup ON delegations(client_id, role, stage, audience)",
            ]
        ),
        Migration(
            name: "v3-webauthn",
            statements: [
                """
                CREATE TABLE webauthn_credentials (
                    factor_id text PRIMARY KEY REFERENCES factors(id) ON DELETE CASCADE,
                    credential_id bytea NOT NULL UNIQUE
                        CHECK (octet_length(credential_id) BETWEEN 1 AND 1023),
                    public_key bytea NOT NULL,
                    alg bigint NOT NULL CHECK (alg IN (-7, -8)),
                    sign_count bigint NOT NULL DEFAULT 0 CHECK (sign_count BETWEEN 0 AND 4294967295),
                    name text NOT NULL,
                    aaguid bytea NOT NULL CHECK (octet_length(aaguid) = 16),
                    user_verified_at_registration boolean NOT NULL,
                    attestation text NOT NULL CHECK (attestation IN ('none','self')),
                    created_at bigint NOT NULL,
                    last_used_at bigint
                )
                """,
                """
                CREATE TABLE webauthn_challenges (
                    challenge_hash bytea PRIMARY KEY,
                    user_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    purpose text NOT NULL CHECK (purpose IN ('registration','signin','stepup','approval')),
                    binding text,
                    created_at bigint NOT NULL,
                    expires_at bigint NOT NULL,
                    CHECK ((purpose = 'approval') = (binding IS NOT NULL))
                )
                """,
                "CREATE INDEX webauthn_challenges_expiry ON webauthn_challenges(expires_at)",
                "CREATE INDEX webauthn_challenges_user ON webauthn_challenges(user_id)",
            ]
        ),
        Migration(
            name: "v4-factor-proofs",
            statements: [
                "ALTER TABLE sessions ADD COLUMN proofs text NOT NULL DEFAULT '{}'",
                "ALTER TABLE factors ADD COLUMN last_used_at bigint",
                "ALTER TABLE delegations ADD COLUMN revoked_reason text",
                "CREATE INDEX delegations_user ON delegations(user_id)",
                "CREATE INDEX delegations_session ON delegations(session_id)",
            ]
        ),
        // Status lists keep the size they were created with; a PostgreSQL database starts with this layout, so no
        // existing tokens need lists at the old fixed size (SQLite's v5 creates those).
        Migration(
            name: "v5-status-lists",
            statements: [
                """
                CREATE TABLE status_lists (
                    number bigint PRIMARY KEY CHECK (number >= 1),
                    first_seq bigint NOT NULL UNIQUE CHECK (first_seq >= 1),
                    size bigint NOT NULL CHECK (size >= 1),
                    created_at bigint NOT NULL
                )
                """
            ]
        ),
        // RFC 9449 §11.1: DPoP proofs the token endpoint accepted (SQLite's v7-dpop-proofs).
        Migration(
            name: "v7-dpop-proofs",
            statements: [
                """
                CREATE TABLE dpop_proofs (
                    key_hash bytea PRIMARY KEY CHECK (length(key_hash) = 32),
                    expires_at bigint NOT NULL
                )
                """,
                "CREATE INDEX dpop_proofs_expiry ON dpop_proofs(expires_at)",
            ]
        ),
    ]

    /// Applies the missing migrations, each in a transaction under the migration lock. Returns the names applied now.
    static func migrate(_ client: PostgresClient, logger: Logger) async throws -> [String] {
        var applied: [String] = []
        for migration in all {
            let ran = try await client.withTransaction(logger: logger) { conn -> Bool in
                try await PostgresStore.lock(conn, .migrations, logger: logger)
                try await PostgresStore.drain(
                    conn.query(
                        """
                        CREATE TABLE IF NOT EXISTS schema_migrations (
                            name text PRIMARY KEY,
                            applied_at timestamptz NOT NULL DEFAULT now()
                        )
                        """,
                        logger: logger
                    )
                )
                let done = try await PostgresStore.collect(
                    conn.query("SELECT 1 FROM schema_migrations WHERE name = \(migration.name)", logger: logger)
                )
                guard done.isEmpty else { return false }
                for statement in migration.statements {
                    // Constant schema text from this file, never a value: nothing to bind.
                    try await PostgresStore.drain(conn.query(PostgresQuery(unsafeSQL: statement), logger: logger))
                }
                try await PostgresStore.drain(
                    conn.query("INSERT INTO schema_migrations (name) VALUES (\(migration.name))", logger: logger)
                )
                return true
            }
            if ran { applied.append(migration.name) }
        }
        return applied
    }
}
