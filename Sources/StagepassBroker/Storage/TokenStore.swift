import Foundation

/// A registered pipeline client. Only the SHA-256 of its secret is stored (the secret is 256 random bits, so a
/// fast hash is enough; it is compared in constant time).
public struct ClientRecord: Sendable, Hashable {
    public var name: String
    public var secretHash: [UInt8]
    public var createdAt: Int64

    public init(name: String, secretHash: [UInt8], createdAt: Int64) {
        self.name = name
        self.secretHash = secretHash
        self.createdAt = createdAt
    }
}

/// One issued token in the ledger. `seq` (assigned on insert, from 1) fixes the token's status-list position: the
/// ``StatusListRecord`` whose range holds `seq`, at index `seq - firstSeq`.
public struct TokenRecord: Sendable, Hashable {
    public var seq: Int64
    public var jti: String
    public var kid: String
    public var userId: String
    public var userName: String
    public var sessionId: String?
    public var clientId: String?
    public var role: String
    public var stage: String
    public var audience: String
    public var requestId: String?
    public var issuedAt: Int64
    public var expiresAt: Int64
    public var revokedAt: Int64?
    public var revokedReason: String?

    public init(
        seq: Int64 = 0,
        jti: String,
        kid: String,
        userId: String,
        userName: String,
        sessionId: String?,
        clientId: String?,
        role: String,
        stage: String,
        audience: String,
        requestId: String?,
        issuedAt: Int64,
        expiresAt: Int64,
        revokedAt: Int64? = nil,
        revokedReason: String? = nil
    ) {
        self.seq = seq
        self.jti = jti
        self.kid = kid
        self.userId = userId
        self.userName = userName
        self.sessionId = sessionId
        self.clientId = clientId
        self.role = role
        self.stage = stage
        self.audience = audience
        self.requestId = requestId
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
        self.revokedReason = revokedReason
    }
}

/// The life of a pipeline approval request (RFC 8628 device authorization).
public enum RequestState: String, Sendable, Hashable, Codable {
    /// Waiting for approvals.
    case pending
    /// Enough approvals; the next poll receives the token.
    case approved
    /// A human denied it; polls get `access_denied`.
    case denied
    /// The token was handed out (a device code is used once).
    case issued
}

/// A pipeline's request for a token, waiting for humans. The device code is stored only as its SHA-256.
public struct ApprovalRequestRecord: Sendable, Hashable {
    public var id: String
    public var deviceCodeHash: [UInt8]
    public var userCode: String
    public var clientId: String
    public var role: String
    public var stage: String
    public var audience: String
    public var runId: String
    public var commit: String?
    public var triggeredBy: String?
    public var createdAt: Int64
    public var expiresAt: Int64
    public var state: RequestState
    /// Current minimum seconds between polls (RFC 8628 §3.5: grows by 5 on every `slow_down`).
    public var interval: Int64
    public var lastPollAt: Int64?
    public var decidedBy: String?
    public var denyReason: String?
    public var tokenJti: String?
    /// For a pipeline authenticated by its CI platform's OIDC token: the token's `iss`.
    public var ciIssuer: String?
    /// With ``ciIssuer``: the token's mapped claims as canonical JSON (``CIIdentity/canonicalClaims``). The run id,
    /// commit and trigger above were taken from them, and the binding covers them.
    public var ciClaims: String?

    public init(
        id: String,
        deviceCodeHash: [UInt8],
        userCode: String,
        clientId: String,
        role: String,
        stage: String,
        audience: String,
        runId: String,
        commit: String?,
        triggeredBy: String?,
        createdAt: Int64,
        expiresAt: Int64,
        state: RequestState = .pending,
        interval: Int64,
        lastPollAt: Int64? = nil,
        decidedBy: String? = nil,
        denyReason: String? = nil,
        tokenJti: String? = nil,
        ciIssuer: String? = nil,
        ciClaims: String? = nil
    ) {
        self.ciIssuer = ciIssuer
        self.ciClaims = ciClaims
        self.id = id
        self.deviceCodeHash = deviceCodeHash
        self.userCode = userCode
        self.clientId = clientId
        self.role = role
        self.stage = stage
        self.audience = audience
        self.runId = runId
        self.commit = commit
        self.triggeredBy = triggeredBy
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.state = state
        self.interval = interval
        self.lastPollAt = lastPollAt
        self.decidedBy = decidedBy
        self.denyReason = denyReason
        self.tokenJti = tokenJti
    }
}

/// One human's approval of one request (or the delegation that stood in for it). `binding` is the hex SHA-256 of
/// the request's id, client, role, stage, audience, run id and commit: the approval cannot be moved to another
/// request. The approver's `amr` and `auth_time` are those of the session that proved the fresh factor.
public struct ApprovalRecord: Sendable, Hashable {
    public var id: String
    public var requestId: String
    public var userId: String
    public var userName: String
    public var sessionId: String?
    public var amr: [String]
    public var authTime: Int64
    public var createdAt: Int64
    public var binding: String
    /// Set when a standing delegation approved the run.
    public var delegationId: String?

    public init(
        id: String,
        requestId: String,
        userId: String,
        userName: String,
        sessionId: String?,
        amr: [String],
        authTime: Int64,
        createdAt: Int64,
        binding: String,
        delegationId: String? = nil
    ) {
        self.id = id
        self.requestId = requestId
        self.userId = userId
        self.userName = userName
        self.sessionId = sessionId
        self.amr = amr
        self.authTime = authTime
        self.createdAt = createdAt
        self.binding = binding
        self.delegationId = delegationId
    }
}

/// A standing approval: `userName` lets `clientId` obtain tokens for (role, stage, audience) until `expiresAt`.
public struct DelegationRecord: Sendable, Hashable {
    public var id: String
    public var userId: String
    public var userName: String
    public var sessionId: String?
    public var amr: [String]
    public var authTime: Int64
    public var clientId: String
    public var role: String
    public var stage: String
    public var audience: String
    public var createdAt: Int64
    public var expiresAt: Int64
    public var revokedAt: Int64?
    /// Why it was revoked (who revoked it, or the event that ended it: the delegator disabled, regrouped, revoked).
    public var revokedReason: String?

    public init(
        id: String,
        userId: String,
        userName: String,
        sessionId: String?,
        amr: [String],
        authTime: Int64,
        clientId: String,
        role: String,
        stage: String,
        audience: String,
        createdAt: Int64,
        expiresAt: Int64,
        revokedAt: Int64? = nil,
        revokedReason: String? = nil
    ) {
        self.revokedReason = revokedReason
        self.id = id
        self.userId = userId
        self.userName = userName
        self.sessionId = sessionId
        self.amr = amr
        self.authTime = authTime
        self.clientId = clientId
        self.role = role
        self.stage = stage
        self.audience = audience
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
    }
}

/// One Token Status List's place in the ledger: the tokens whose `seq` lies in `firstSeq ..< firstSeq + size`,
/// at index `seq - firstSeq`. Lists are numbered from 1 and are contiguous (list n+1 starts where list n ends). A
/// list is never changed once created: its size is the policy's `tokens.status_list_size` when it was created, so a
/// later change of that setting shapes only lists created after it and never moves an issued token's `(idx, uri)`.
public struct StatusListRecord: Sendable, Hashable {
    public var number: Int64
    public var firstSeq: Int64
    public var size: Int64
    public var createdAt: Int64

    public init(number: Int64, firstSeq: Int64, size: Int64, createdAt: Int64) {
        self.number = number
        self.firstSeq = firstSeq
        self.size = size
        self.createdAt = createdAt
    }

    /// Whether the token with ledger `seq` sits in this list.
    public func contains(seq: Int64) -> Bool { seq >= firstSeq && seq - firstSeq < size }

    /// The seqs this list covers.
    public var seqs: ClosedRange<Int64> { firstSeq...(firstSeq + size - 1) }

    /// The lists to create after `last` (nil: none yet), each of `size` entries, until one holds `seq`; the last one
    /// returned holds it. Lists are contiguous from seq 1, so a `seq` at or below `last`'s end needs none (empty).
    /// Both stores run this inside the transaction that inserts the lists.
    static func extending(_ last: StatusListRecord?, toCover seq: Int64, size: Int64, at: Int64) -> [StatusListRecord] {
        var out: [StatusListRecord] = []
        var previous = last
        while previous.map({ $0.firstSeq + $0.size <= seq }) ?? true {
            let next = StatusListRecord(
                number: (previous?.number ?? 0) + 1,
                firstSeq: previous.map { $0.firstSeq + $0.size } ?? 1,
                size: size,
                createdAt: at
            )
            out.append(next)
            previous = next
        }
        return out
    }
}

/// Which tokens a revocation covers.
public enum RevocationTarget: Sendable, Hashable {
    case jti(String)
    case session(String)
    /// Every token of the user issued at or before `issuedBefore`.
    case user(id: String, issuedBefore: Int64)
    case kid(String)
}

/// One audit record to chain inside another write (see ``HashChainAuditLog/entry(_:)``).
public struct AuditAppend: Sendable {
    public var time: Int64
    public var event: String
    public var chain: @Sendable (AuditRow?) throws -> AuditRow

    public init(time: Int64, event: String, chain: @escaping @Sendable (AuditRow?) throws -> AuditRow) {
        self.time = time
        self.event = event
        self.chain = chain
    }
}

/// Storage of pipeline clients and the token ledger: its `seq`s (the status-list indexes, unique) and revocation.
///
/// Every write that guards a decision is one transaction with a compare-and-set: issuing a token and writing its
/// audit record commit together (a token is never returned without both), an approved request turns `issued` once.
public protocol TokenStore: Sendable {
    // MARK: clients
    func insertClient(_ client: ClientRecord) async throws
    func client(named name: String) async throws -> ClientRecord?
    func allClients() async throws -> [ClientRecord]
    func deleteClient(named name: String) async throws

    // MARK: ledger
    /// Inserts the ledger row (assigning `seq`) and appends `audit` in one transaction. With `claimRequest`, the
    /// request must be `approved` and turns `issued` in the same transaction (else ``StoreError/conflict``).
    func insertToken(_ token: TokenRecord, audit: AuditAppend, claimRequest: String?) async throws -> TokenRecord
    /// Group commit: every item of `batch` as by ``insertToken(_:audit:claimRequest:)``, in ONE transaction with one
    /// commit. Each item is written inside a savepoint, so an item that conflicts (its request is not `approved`
    /// any more, a duplicate jti) is rolled back alone and gets its ``StoreError``, while the others commit; the
    /// audit records chain in `batch` order. Returns one result per item, in order. Throws (nothing committed)
    /// when the transaction as a whole fails, e.g. ``StorageFault``.
    func insertTokens(_ batch: [PendingToken]) async throws -> [Result<TokenRecord, StoreError>]
    func token(jti: String) async throws -> TokenRecord?
    /// Marks every matching unrevoked token revoked (and bumps the revocation epoch) with `audit`, in one
    /// transaction. Returns the jtis revoked.
    func revoke(_ target: RevocationTarget, at: Int64, reason: String, audit: AuditAppend) async throws -> [String]
    /// The `seq`s of revoked tokens in `range`.
    func revokedSeqs(in range: ClosedRange<Int64>) async throws -> [Int64]
    /// The highest `seq` issued (0 when none).
    func lastTokenSeq() async throws -> Int64
    /// A counter bumped by every revocation (status list caches compare it).
    func revocationEpoch() async throws -> Int64
    /// Every status list created so far, by number.
    func statusLists() async throws -> [StatusListRecord]
    /// The status list holding `seq`, creating lists of `size` entries after the last one (in one transaction) until
    /// one holds it. Existing lists are never changed, whatever `size` says.
    func placeStatusList(seq: Int64, size: Int64, at: Int64) async throws -> StatusListRecord

}
