import Foundation

/// A stored user account. `passwordHash` is an Argon2id PHC string (never the password).
public struct UserRecord: Sendable, Hashable, Codable {
    public var id: String
    public var name: String
    public var passwordHash: String
    public var disabled: Bool
    /// Set after too many factor failures; only an admin clears it (``AccountService/unlock(_:actor:)``).
    public var locked: Bool
    public var createdAt: Int64

    public init(
        id: String,
        name: String,
        passwordHash: String,
        disabled: Bool = false,
        locked: Bool = false,
        createdAt: Int64
    ) {
        self.id = id
        self.name = name
        self.passwordHash = passwordHash
        self.disabled = disabled
        self.locked = locked
        self.createdAt = createdAt
    }
}

/// Kinds of second factor. A `webauthn` factor is a registered security key; its credential lives in
/// ``WebAuthnStore``.
public enum FactorKind: String, Sendable, Hashable, Codable, CaseIterable {
    case totp
    case backup
    case webauthn
}

/// A factor is `pending` from enrolment until its first correct use, then `active`.
public enum FactorState: String, Sendable, Hashable, Codable {
    case pending
    case active
}

/// A stored second factor. `secretBox` is the AES-256-GCM box of the secret (the TOTP seed), sealed under the master
/// key with the factor id as additional authenticated data; nil for backup codes and security keys (a `webauthn`
/// factor's public key is in its ``WebAuthnCredentialRecord``).
public struct FactorRecord: Sendable, Hashable {
    public var id: String
    public var userId: String
    public var kind: FactorKind
    public var state: FactorState
    public var secretBox: [UInt8]?
    /// The last TOTP time step accepted (RFC 6238 §5.2: a code is accepted once).
    public var lastUsedStep: Int64?
    public var createdAt: Int64
    /// When the factor last proved its user (sign-in, step-up or approval), unix seconds; nil if never.
    public var lastUsedAt: Int64?

    public init(
        id: String,
        userId: String,
        kind: FactorKind,
        state: FactorState,
        secretBox: [UInt8]?,
        lastUsedStep: Int64? = nil,
        createdAt: Int64,
        lastUsedAt: Int64? = nil
    ) {
        self.id = id
        self.userId = userId
        self.kind = kind
        self.state = state
        self.secretBox = secretBox
        self.lastUsedStep = lastUsedStep
        self.createdAt = createdAt
        self.lastUsedAt = lastUsedAt
    }
}

/// One stored backup code: only its hash is kept.
public struct BackupCodeRecord: Sendable, Hashable {
    public var id: Int64
    public var userId: String
    public var codeHash: [UInt8]
    public var usedAt: Int64?
}

/// Session states: `pending` proved the password and still needs a factor; `mfa` is fully signed in.
public enum SessionState: String, Sendable, Hashable, Codable {
    case pending
    case mfa
}

/// One factor method's latest proof in a session: when, and with which credential (the factor id).
public struct FactorStamp: Sendable, Hashable, Codable {
    /// Unix seconds of the proof.
    public var at: Int64
    /// The factor that was proved (its id); nil for the password.
    public var credential: String?

    public init(at: Int64, credential: String?) {
        self.at = at
        self.credential = credential
    }
}

/// A stored session. The bearer token itself is never stored, only its SHA-256.
public struct SessionRecord: Sendable, Hashable {
    public var id: String
    public var tokenHash: [UInt8]
    public var userId: String
    public var state: SessionState
    /// Authentication methods references (RFC 8176 §2 values, see ``AMR``): every method proved in this session.
    public var amr: [String]
    /// When the user last proved a factor (OpenID Connect Core §2 `auth_time`), unix seconds.
    public var authTime: Int64
    public var createdAt: Int64
    public var idleExpiresAt: Int64
    public var absoluteExpiresAt: Int64
    /// The latest proof of each method in this session, keyed by its ``AMR`` value (`pwd`, `otp`, `bkp`, `hwk`).
    /// Freshness rules read these, never `authTime`: a fresh proof of one method says nothing about another.
    public var proofs: [String: FactorStamp]

    public init(
        id: String,
        tokenHash: [UInt8],
        userId: String,
        state: SessionState,
        amr: [String],
        authTime: Int64,
        createdAt: Int64,
        idleExpiresAt: Int64,
        absoluteExpiresAt: Int64,
        proofs: [String: FactorStamp] = [:]
    ) {
        self.id = id
        self.tokenHash = tokenHash
        self.userId = userId
        self.state = state
        self.amr = amr
        self.authTime = authTime
        self.createdAt = createdAt
        self.idleExpiresAt = idleExpiresAt
        self.absoluteExpiresAt = absoluteExpiresAt
        self.proofs = proofs
    }
}

/// A throttle counter, keyed by e.g. `acct:alice`, `addr:10.0.0.1`, `factor:<user id>`.
public struct ThrottleRecord: Sendable, Hashable {
    public var key: String
    public var failures: Int
    public var lastFailureAt: Int64

    public init(key: String, failures: Int, lastFailureAt: Int64) {
        self.key = key
        self.failures = failures
        self.lastFailureAt = lastFailureAt
    }
}

/// The outcome of ``ThrottleStore/reserveAttempt(keys:now:window:delay:)``.
public enum ThrottleReservation: Sendable, Hashable {
    /// The attempt may go ahead: the counts after it and each key's previous last-attempt time (nil when the key had
    /// no live count), in key order.
    case reserved(counts: [Int], previous: [Int64?])
    /// Some key is still waiting; nothing was counted.
    case throttled(retryAfter: Int64)
}

/// One chained audit record as stored (see ``HashChainAuditLog``).
public struct AuditRow: Sendable, Hashable {
    public var seq: Int64
    public var time: Int64
    /// Hex SHA-256 of the previous record (64 zeros for the first).
    public var prevHash: String
    /// The canonical JSON of the ``AuditEvent``.
    public var event: String
    /// Hex SHA-256(prevHash bytes || canonical record).
    public var hash: String

    public init(seq: Int64, time: Int64, prevHash: String, event: String, hash: String) {
        self.seq = seq
        self.time = time
        self.prevHash = prevHash
        self.event = event
        self.hash = hash
    }
}

/// Storage errors with stable codes.
public struct StoreError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Code: String, Sendable {
        case conflict
        case notFound = "not_found"
        case backend
    }
    private let _code: Code
    public let detail: String
    private init(_ c: Code, _ d: String) {
        _code = c
        detail = d
    }
    public var code: String { _code.rawValue }
    public var description: String { "\(code): \(detail)" }
    public static func == (l: StoreError, r: StoreError) -> Bool { l._code == r._code }
    public func hash(into h: inout Hasher) { h.combine(_code) }
    /// A unique name or id already exists.
    public static func conflict(_ d: String) -> StoreError { .init(.conflict, d) }
    public static func notFound(_ d: String) -> StoreError { .init(.notFound, d) }
    public static func backend(_ d: String) -> StoreError { .init(.backend, d) }
    public static let conflict = StoreError(.conflict, "")
    public static let notFound = StoreError(.notFound, "")
}

/// The broker's storage, in domain terms, so that broker logic never names a backend: ``SQLiteStore`` (embedded,
/// the default) and ``PostgresStore`` implement it, and one conformance suite (`StoreConformanceTests`) runs against
/// both.
///
/// It is the composition of one protocol per aggregate: ``AccountStore`` (users, groups), ``FactorStore`` (factors,
/// backup codes), ``SessionStore``, ``ThrottleStore``, ``AuditStore``, ``TokenStore`` (clients, the token ledger,
/// revocation), ``ApprovalStore`` (requests, approvals, delegations) and ``WebAuthnStore``.
///
/// Operations that guard a security decision are single atomic statements or transactions (compare-and-set), never
/// read-then-write in the caller: ``FactorStore/claimTOTPStep(factorId:step:)``,
/// ``FactorStore/consumeBackupCode(id:at:)``, ``ThrottleStore/reserveAttempt(keys:now:window:delay:)``,
/// ``AuditStore/appendAudit(time:event:chain:)``. Every method throws ``StoreError``, ``StorageFault`` when the backend cannot read or
/// commit (nothing was changed), or the backend's own error for anything else.
///
/// Every call is `async`: the calling task suspends while the backend works, and no thread of the caller waits —
/// ``SQLiteStore`` runs its statements on GRDB's writer and reader queues, ``PostgresStore`` on PostgresNIO's
/// connection pool. A call is not cancelled with the calling task: once asked for, a write runs to its commit or
/// rollback. The only blocking calls are the audit log's ``AuditStore/appendAuditBlocking(time:event:chain:)`` and
/// ``AuditStore/auditEventsBlocking(withActionPrefix:)``, for the key store (see ``AuditSink``).
public protocol BrokerStore: AccountStore, FactorStore, SessionStore, ThrottleStore, AuditStore, TokenStore,
    ApprovalStore, WebAuthnStore, CITokenStore, DPoPProofStore
{
    /// Readiness probe of the backend (used by `/readyz`): cheap, but it must show whether a write can commit now.
    /// - Throws: ``StorageFault`` naming why not (disk full, read-only, locked, corrupt, I/O error).
    func ping() async throws
}
