/// Storage of pipeline approval requests, approvals and standing delegations.
///
/// Every write that guards a decision is one transaction with a compare-and-set, committed with its audit record: a
/// request is decided once, one human approves one request once, a delegation is revoked once.
public protocol ApprovalStore: Sendable {
    // MARK: approval requests
    func insertRequest(_ request: ApprovalRequestRecord, audit: AuditAppend) async throws
    func request(id: String) async throws -> ApprovalRequestRecord?
    func request(userCode: String) async throws -> ApprovalRequestRecord?
    func request(deviceCodeHash: [UInt8]) async throws -> ApprovalRequestRecord?
    func pendingRequests(now: Int64) async throws -> [ApprovalRequestRecord]
    /// Records a poll: `lastPollAt` and `interval`.
    func notePoll(requestId: String, at: Int64, interval: Int64) async throws
    /// Atomically moves a request from `from` to `to`, with who decided and why; false when it was not in `from`.
    func transitionRequest(
        id: String,
        from: RequestState,
        to: RequestState,
        decidedBy: String?,
        reason: String?,
        audit: AuditAppend
    ) async throws -> Bool

    // MARK: approvals and delegations
    /// Inserts an approval of a pending request; ``StoreError/conflict`` if this user already approved it or the
    /// request is no longer pending. Returns the approvals of the request after the insert.
    func insertApproval(_ approval: ApprovalRecord, audit: AuditAppend) async throws -> [ApprovalRecord]
    func approvals(requestId: String) async throws -> [ApprovalRecord]
    func insertDelegation(_ delegation: DelegationRecord, audit: AuditAppend) async throws
    /// Live delegations granted by a user, newest first.
    func liveDelegations(userId: String, now: Int64) async throws -> [DelegationRecord]
    /// Live delegations granted from one session, newest first.
    func liveDelegations(sessionId: String, now: Int64) async throws -> [DelegationRecord]
    /// Every live delegation, newest first (administrators' view).
    func liveDelegations(now: Int64) async throws -> [DelegationRecord]
    /// The live delegations for exactly this client, role, stage and audience, newest first.
    func liveDelegations(
        clientId: String,
        role: String,
        stage: String,
        audience: String,
        now: Int64
    ) async throws
        -> [DelegationRecord]
    func delegation(id: String) async throws -> DelegationRecord?
    /// Revokes those of `ids` that are not revoked yet, and appends `audit` (if given) when at least one was, in one
    /// transaction. Returns the ids revoked now.
    func revokeDelegations(ids: [String], at: Int64, reason: String, audit: AuditAppend?) async throws -> [String]
}
