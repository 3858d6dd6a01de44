/// One use of a CI token in the replay cache (``CITokenStore``): copied so that a token used before a move is not
/// accepted again after it.
public struct CITokenUseRecord: Sendable, Hashable {
    public var issuer: String
    public var tokenKey: String
    public var expiresAt: Int64
    public var usedAt: Int64

    public init(issuer: String, tokenKey: String, expiresAt: Int64, usedAt: Int64) {
        self.issuer = issuer
        self.tokenKey = tokenKey
        self.expiresAt = expiresAt
        self.usedAt = usedAt
    }
}

/// One user's membership of one group.
public struct MembershipRecord: Sendable, Hashable {
    public var userId: String
    public var group: String

    public init(userId: String, group: String) {
        self.userId = userId
        self.group = group
    }
}

/// Every durable record of a broker's database, as stored, for moving a broker from one backend to another
/// (`stagepass db copy`): the same ids, the same token `seq`s (status-list indexes) with their revocation state, the
/// same backup-code ids, factor boxes as sealed (the master key never takes part), and the audit chain's rows with
/// their hashes exactly as written.
///
/// Not part of a snapshot: throttle counters, WebAuthn challenges and DPoP proof records (short-lived: a proof is
/// refused as too old within ~90 s; a moved broker starts them afresh), and the schema's own bookkeeping. Lists are in the order the broker reads them (approvals and delegations
/// in insertion order, which their "newest first" queries depend on).
public struct StoreSnapshot: Sendable, Hashable {
    public var users: [UserRecord] = []
    public var groups: [String] = []
    public var memberships: [MembershipRecord] = []
    public var factors: [FactorRecord] = []
    public var backupCodes: [BackupCodeRecord] = []
    public var webAuthnCredentials: [WebAuthnCredentialRecord] = []
    public var sessions: [SessionRecord] = []
    public var clients: [ClientRecord] = []
    public var tokens: [TokenRecord] = []
    /// The status-list layout: each list's number, first seq and size, so every copied token keeps its index and list.
    public var statusLists: [StatusListRecord] = []
    /// Named counters, e.g. `revocation_epoch`.
    public var counters: [String: Int64] = [:]
    public var requests: [ApprovalRequestRecord] = []
    public var approvals: [ApprovalRecord] = []
    public var delegations: [DelegationRecord] = []
    /// The audit chain in `seq` order.
    public var audit: [AuditRow] = []
    /// The CI-token replay cache, by issuer and key (a used CI token stays used across the move).
    public var ciTokenUses: [CITokenUseRecord] = []

    public init() {}

    /// Rows per table, in the order a restore writes them (the `stagepass db copy` summary).
    public var rowCounts: [(table: String, rows: Int)] {
        [
            ("users", users.count), ("groups", groups.count), ("memberships", memberships.count),
            ("factors", factors.count), ("backup_codes", backupCodes.count),
            ("webauthn_credentials", webAuthnCredentials.count), ("sessions", sessions.count),
            ("clients", clients.count), ("tokens", tokens.count), ("status_lists", statusLists.count),
            ("counters", counters.count),
            ("approval_requests", requests.count), ("approvals", approvals.count),
            ("delegations", delegations.count), ("audit_log", audit.count),
            ("ci_token_uses", ciTokenUses.count),
        ]
    }
}

/// Whole-database dump and restore, for moving a broker between backends. Both ``SQLiteStore`` and
/// ``PostgresStore`` implement it.
public protocol StoreTransfer: Sendable {
    /// Reads every durable record (``StoreSnapshot``) in one read transaction: a consistent picture even while a
    /// broker writes.
    func exportSnapshot() async throws -> StoreSnapshot
    /// Writes `snapshot` into this store in one transaction. Refuses with ``StoreTransferError/targetNotEmpty(_:)``,
    /// writing nothing, unless the store holds no users, groups, factors, sessions, clients, tokens, approval requests,
    /// delegations or audit records and every counter is zero. Token and audit `seq`s are kept: the next token or
    /// record continues after the highest copied one.
    func importSnapshot(_ snapshot: StoreSnapshot) async throws
}

extension StoreSnapshot {
    /// Why the restore target is not empty, or nil if it is: the first table (by name) holding rows, or a non-zero
    /// counter.
    static func notEmptyReason(counts: [(table: String, rows: Int)], counters: [String: Int64]) -> String? {
        if let (table, n) = counts.first(where: { $0.rows > 0 }) {
            return "the target database is not empty: \(table) has \(n) row\(n == 1 ? "" : "s")"
        }
        if let (name, value) = counters.sorted(by: { $0.key < $1.key }).first(where: { $0.value != 0 }) {
            return "the target database is not empty: counter \(name) is \(value)"
        }
        return nil
    }

    /// The tables whose rows make a store non-empty.
    static let occupancyTables = [
        "users", "groups", "factors", "backup_codes", "sessions", "clients", "tokens", "approval_requests",
        "approvals", "delegations", "audit_log", "webauthn_credentials", "status_lists",
    ]
}

/// Why a whole-database copy stopped.
public enum StoreTransferError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The target already holds broker data (the reason names a table or counter); nothing was written.
    case targetNotEmpty(String)
    /// The source's own audit chain does not verify; nothing was copied.
    case sourceChainBroken(AuditVerification)
    /// The copy was committed but the target does not match the source (one line per difference).
    case mismatch([String])

    public var description: String {
        switch self {
        case .targetNotEmpty(let reason): reason
        case .sourceChainBroken(let v):
            "the source audit chain is BROKEN at seq \(v.firstBadSeq ?? 0): \(v.reason ?? "") (nothing copied)"
        case .mismatch(let lines): "the copy does not match its source: " + lines.joined(separator: "; ")
        }
    }
}
