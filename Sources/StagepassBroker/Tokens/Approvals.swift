import Foundation
import StagepassJOSE

/// A pipeline whose identity was established (by its client secret, by its CI token, or, for a CI request's poll,
/// by the device code).
struct AuthenticatedPipeline {
    var name: String
}

/// What the device authorization endpoint answers (RFC 8628 §3.2).
public struct DeviceAuthorization: Sendable {
    public var requestId: String
    /// The pipeline's secret handle for polling (shown once; stored as SHA-256).
    public var deviceCode: String
    /// What the human types or follows: `XXXX-XXXX` from ``UserCode/alphabet``.
    public var userCode: String
    public var expiresIn: Int64
    public var interval: Int64
    /// True when a standing delegation already approved the run.
    public var preApproved: Bool
    /// The pipeline the request is for (with a CI token: the one whose rule matched).
    public var pipeline: String = ""
    /// The run (with a CI token: its run id claim).
    public var runId: String = ""
}

/// A request as shown to a human deciding on it.
public struct RequestView: Sendable {
    public var request: ApprovalRequestRecord
    public var approvals: [ApprovalRecord]
    public var approversNeeded: Int
    /// Whether the time to approve has passed.
    public var expired: Bool
}

/// RFC 8628 §6.1 user codes: 8 characters from a 20-letter consonant alphabet (no vowels, so no words; no
/// look-alikes), shown as `XXXX-XXXX`: 20^8 ≈ 2^34.6 codes. With requests living minutes and failed lookups
/// throttled per user and per address, guessing a live code is impractical (§5.1).
public enum UserCode {
    public static let alphabet = Array("BCDFGHJKLMNPQRSTVWXZ")

    static func generate() throws -> String {
        var out = ""
        // Rejection sampling: 240 = 12 × 20, so bytes below 240 map uniformly onto the alphabet.
        while out.count < 8 {
            for b in try Crypto.randomBytes(16) where b < 240 && out.count < 8 {
                out.append(alphabet[Int(b) % alphabet.count])
            }
        }
        return String(out.prefix(4)) + "-" + String(out.suffix(4))
    }

    /// RFC 8628 §6.1: case-insensitive, dashes and spaces ignored. Nil when the input cannot be a user code.
    public static func normalize(_ s: String) -> String? {
        let chars = s.uppercased().filter { $0 != "-" && $0 != " " }
        guard chars.count == 8, chars.allSatisfy({ alphabet.contains($0) }) else { return nil }
        return String(chars.prefix(4)) + "-" + String(chars.suffix(4))
    }
}

/// Registered pipeline clients: a name and a secret shown once (only its SHA-256 is stored; the secret carries
/// 256 random bits, so a fast hash suffices).
public struct ClientRegistry: Sendable {
    public let human: HumanBroker
    public init(human: HumanBroker) { self.human = human }

    /// Registers a client and returns its secret, which is shown once.
    /// - Throws: ``BrokerError/invalidRequest(_:)`` for a bad name, ``StoreError/conflict`` if it exists.
    public func add(name: String, actor: String) async throws -> String {
        guard (1...128).contains(name.utf8.count),
            name.unicodeScalars.allSatisfy({
                $0.isASCII
                    && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_./@".unicodeScalars.contains($0))
            })
        else { throw BrokerError.invalidRequest("a client name is 1-128 characters of A-Z a-z 0-9 - _ . / @") }
        let secret = "spc_" + Base64URL.encode(try Crypto.randomBytes(32))
        try await human.store.insertClient(
            ClientRecord(name: name, secretHash: try Crypto.sha256(Array(secret.utf8)), createdAt: human.clock.now())
        )
        try await human.audit.record(AuditEvent(action: "client.add", actor: actor, subject: name))
        return secret
    }

    public func remove(name: String, actor: String) async throws {
        try await human.store.deleteClient(named: name)
        try await human.audit.record(AuditEvent(action: "client.remove", actor: actor, subject: name))
    }

    public func list() async throws -> [ClientRecord] { try await human.store.allClients() }
}

extension TokenBroker {
    /// The pipeline client registry.
    public var clients: ClientRegistry { ClientRegistry(human: human) }

    /// RFC 6749 §2.3.1 client authentication. Unknown clients and wrong secrets fail alike, after the same work.
    func authenticateClient(_ name: String, secret: String) async throws -> ClientRecord {
        let record = try await store.client(named: name)
        let presented = try Crypto.sha256(Array(secret.utf8))
        let fallback = try Crypto.sha256(Array("no such client".utf8))
        let expected = record?.secretHash ?? fallback
        guard Crypto.constantTimeEqual(presented, expected), let record else {
            _ = await denied(.invalidClient, action: "client.auth", actor: nil, details: ["client": name])
            throw OAuthError.invalidClient
        }
        return record
    }

    // MARK: device authorization (RFC 8628 §3.1, §3.2)

    /// A pipeline asks for a token for one run. A live delegation matching (client, role, stage, audience) approves
    /// it at once; otherwise it waits for humans.
    public func startRequest(
        client: String,
        secret: String,
        audience: String,
        role: String,
        stage: String,
        runId: String,
        commit: String?,
        triggeredBy: String?
    ) async throws -> DeviceAuthorization {
        let c = try await authenticateClient(client, secret: secret)
        return try await openRequest(
            client: c.name,
            audience: audience,
            role: role,
            stage: stage,
            runId: runId,
            commit: commit,
            triggeredBy: triggeredBy,
            ci: nil
        )
    }

    /// Opens an approval request for an authenticated pipeline: by client secret, or (`ci`) by its CI platform's
    /// token, whose run id, commit and actor are then the ones passed here.
    func openRequest(
        client: String,
        audience: String,
        role: String,
        stage: String,
        runId: String,
        commit: String?,
        triggeredBy: String?,
        ci: CIIdentity?
    ) async throws -> DeviceAuthorization {
        let c = AuthenticatedPipeline(name: client)
        let p = policy.current
        let now = clock.now()
        var details = ["client": c.name, "role": role, "stage": stage, "audience": audience, "run_id": runId]
        if let ci { details.merge(Self.ciAuditDetails(ci)) { a, _ in a } }
        func printable(_ s: String, max: Int) -> Bool {
            (1...max).contains(s.utf8.count) && s.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value != 0x7f }
        }
        guard printable(runId, max: 200) else {
            throw OAuthError.invalidRequest("run_id must be 1-200 printable characters")
        }
        if let commit, !printable(commit, max: 100) {
            throw OAuthError.invalidRequest("commit must be 1-100 printable characters")
        }
        if let triggeredBy, !printable(triggeredBy, max: 256) {
            throw OAuthError.invalidRequest("triggered_by must be 1-256 printable characters")
        }
        let s: StagePolicy
        var triggers: Set<String> = []
        do throws(OAuthError) {
            try checkPipeline(c.name, role: role, stage: stage, audience: audience, policy: p)
            s = try authorize(groups: nil, role: role, stage: stage, audience: audience, policy: p).1
            if !s.allowSelfApproval {
                triggers = try await triggeringUsers(triggeredBy, stage: s, policy: p, ciIssuer: ci?.issuer)
            }
        } catch {
            throw await denied(error, action: "request.deny", actor: nil, details: details)
        }
        let deviceCode = "spd_" + Base64URL.encode(try Crypto.randomBytes(32))
        let id = "req_" + Base64URL.encode(try Crypto.randomBytes(12))
        var record = ApprovalRequestRecord(
            id: id,
            deviceCodeHash: try Crypto.sha256(Array(deviceCode.utf8)),
            userCode: "",
            clientId: c.name,
            role: role,
            stage: stage,
            audience: audience,
            runId: runId,
            commit: commit,
            triggeredBy: triggeredBy,
            createdAt: now,
            expiresAt: now + p.tokens.requestLifetime,
            interval: p.tokens.pollInterval,
            ciIssuer: ci?.issuer,
            ciClaims: ci?.canonicalClaims
        )
        var auditDetails = details
        auditDetails["request"] = id
        if let commit { auditDetails["commit"] = commit }
        if let triggeredBy { auditDetails["triggered_by"] = triggeredBy }
        // A user code collision is astronomically rare but must not fail the pipeline: draw again.
        var inserted = false
        for _ in 0..<5 where !inserted {
            record.userCode = try UserCode.generate()
            auditDetails["user_code"] = record.userCode
            do {
                try await store.insertRequest(
                    record,
                    audit: try audit.entry(
                        AuditEvent(action: "request.start", actor: c.name, subject: c.name, details: auditDetails)
                    )
                )
                inserted = true
            } catch let e as StoreError where e == .conflict { continue }
        }
        guard inserted else { throw BrokerError.internalError("could not allocate a user code") }
        var preApproved = false
        var standingDelegation: DelegationRecord?
        if case .delegated = s.approval, s.approvers == 1 {
            standingDelegation = try await firstStandingDelegation(
                clientId: c.name,
                role: role,
                stage: stage,
                audience: audience,
                excluding: triggers,
                now: now,
                policy: p
            )
        }
        if let d = standingDelegation {
            let approval = ApprovalRecord(
                id: "apr_" + Base64URL.encode(try Crypto.randomBytes(9)),
                requestId: id,
                userId: d.userId,
                userName: d.userName,
                sessionId: d.sessionId,
                amr: d.amr,
                authTime: d.authTime,
                createdAt: now,
                binding: try Self.binding(record),
                delegationId: d.id
            )
            _ = try await store.insertApproval(
                approval,
                audit: try audit.entry(
                    AuditEvent(
                        action: "request.approve",
                        actor: d.userName,
                        subject: c.name,
                        factors: d.amr,
                        details: auditDetails.merging(["approval": approval.id, "delegation": d.id]) { a, _ in a }
                    )
                )
            )
            preApproved = try await store.transitionRequest(
                id: id,
                from: .pending,
                to: .approved,
                decidedBy: d.userName,
                reason: nil,
                audit: try audit.entry(
                    AuditEvent(
                        action: "request.approved",
                        actor: d.userName,
                        subject: c.name,
                        factors: d.amr,
                        details: ["request": id, "approvals": approval.id, "delegation": d.id]
                    )
                )
            )
        }
        return DeviceAuthorization(
            requestId: id,
            deviceCode: deviceCode,
            userCode: record.userCode,
            expiresIn: p.tokens.requestLifetime,
            interval: p.tokens.pollInterval,
            preApproved: preApproved,
            pipeline: c.name,
            runId: runId
        )
    }

    /// The approval binding: the hex SHA-256 of everything the human saw.
    /// For a pipeline authenticated by a CI token, the token's issuer and its mapped claims (repository, ids, ref,
    /// workflow, …) are covered too.
    static func binding(_ r: ApprovalRequestRecord) throws -> String {
        var fields = [r.id, r.clientId, r.role, r.stage, r.audience, r.runId, r.commit ?? "", r.triggeredBy ?? ""]
        if let issuer = r.ciIssuer { fields += ["ci", issuer, r.ciClaims ?? ""] }
        let joined = fields.map { "\($0.utf8.count):\($0)" }.joined()
        return try Crypto.sha256(Array(joined.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    // MARK: polling (RFC 8628 §3.4, §3.5)

    /// The pipeline's poll: `authorization_pending`, `slow_down` (and the interval grows by 5 s, §3.5),
    /// `access_denied`, `expired_token`, or the token once approved (handed out once).
    /// A request opened with a CI token is polled without a secret: the device code, handed only to the job that
    /// presented that token, is its proof (`secret` nil).
    public func poll(
        client: String,
        secret: String?,
        deviceCode: String,
        dpopProof: String? = nil
    ) async throws -> IssuedToken {
        let binding = try checkDPoPProof(dpopProof)
        let grant = try await self.pollGrant(client: client, secret: secret, deviceCode: deviceCode, dpop: binding)
        do { return try await issue(grant) } catch let e as StoreError where e == .conflict {
            throw OAuthError.invalidGrant("the device_code was already used")
        }
    }

    /// Everything ``poll(client:secret:deviceCode:)`` checks and records before it signs.
    func pollGrant(client: String, secret: String?, deviceCode: String, dpop: DPoPBinding? = nil) async throws -> Grant
    {
        var name = client
        if let secret { name = try await authenticateClient(client, secret: secret).name }
        let c = AuthenticatedPipeline(name: name)
        guard deviceCode.utf8.count <= 128,
            let r = try await store.request(deviceCodeHash: try Crypto.sha256(Array(deviceCode.utf8))),
            r.clientId == c.name
        else { throw OAuthError.invalidGrant("unknown device_code") }
        // Secret-less polling is for requests a CI token opened, and only those; a CI request is polled that way.
        guard (secret == nil) == (r.ciIssuer != nil) else {
            throw secret == nil ? OAuthError.invalidClient : OAuthError.invalidGrant("unknown device_code")
        }
        // RFC 9449 §11.1: every token request's proof is used once, polls included; a poll that could never be
        // issued a token (DPoP required, no proof) says so at once, not after a human approved it.
        let jkt = try await recordDPoP(
            dpop,
            stage: policy.current.stages[r.stage],
            pipeline: c.name,
            policy: policy.current
        )
        let now = clock.now()
        switch r.state {
        case .denied:
            throw OAuthError.accessDenied(
                "denied by \(r.decidedBy ?? "an approver")" + (r.denyReason.map { ": \($0)" } ?? "")
            )
        case .issued: throw OAuthError.invalidGrant("the device_code was already used")
        case .pending, .approved: break
        }
        if now >= r.expiresAt { throw OAuthError.expiredToken }
        if let last = r.lastPollAt, now - last < r.interval {
            let slower = r.interval + 5
            try await store.notePoll(requestId: r.id, at: now, interval: slower)
            throw OAuthError.slowDown(interval: slower)
        }
        try await store.notePoll(requestId: r.id, at: now, interval: r.interval)
        guard r.state == .approved else { throw OAuthError.authorizationPending }
        let p = policy.current
        guard let s = p.stages[r.stage] else {
            throw await denied(
                .accessDenied("the stage '\(r.stage)' is no longer in the policy"),
                action: "token.deny",
                actor: c.name,
                details: ["request": r.id]
            )
        }
        if let ciIssuer = r.ciIssuer {
            // The pipeline must still be one the policy authenticates by this issuer's tokens.
            let rule = p.pipelines[r.clientId]?.ci
            guard let rule, p.ciIssuers[rule.issuer]?.issuer == ciIssuer else {
                throw await denied(
                    .accessDenied("the pipeline '\(r.clientId)' is no longer authenticated by \(ciIssuer) tokens"),
                    action: "token.deny",
                    actor: c.name,
                    details: ["request": r.id]
                )
            }
        }
        let approvals = try await store.approvals(requestId: r.id)
        guard let last = approvals.last else { throw OAuthError.authorizationPending }
        // An approval is only as alive as the human behind it: re-checked now, at issuance.
        for a in approvals {
            let reason: String?
            if let did = a.delegationId {
                if let d = try await store.delegation(id: did), d.revokedAt == nil {
                    reason = try await standing(userId: d.userId, role: r.role, sessionId: nil, policy: p)
                } else {
                    reason = "the delegation \(did) was revoked"
                }
            } else {
                reason = try await standing(userId: a.userId, role: r.role, sessionId: a.sessionId, policy: p)
            }
            guard let reason else { continue }
            _ = try await store.transitionRequest(
                id: r.id,
                from: .approved,
                to: .denied,
                decidedBy: "stagepass",
                reason: reason,
                audit: try audit.entry(
                    AuditEvent(
                        action: "request.withdrawn",
                        actor: a.userName,
                        subject: c.name,
                        result: "denied",
                        reason: reason,
                        details: ["request": r.id, "approval": a.id, "run_id": r.runId]
                    )
                )
            )
            throw OAuthError.accessDenied("the approval no longer stands: \(reason)")
        }
        // The policy may have changed since the proof was recorded: a token it requires to be bound must be.
        if jkt == nil, dpopRequired(stage: s, pipeline: c.name, policy: p) {
            _ = try await recordDPoP(nil, stage: s, pipeline: c.name, policy: p)
        }
        return Grant(
            userId: last.userId,
            userName: last.userName,
            sessionId: last.sessionId,
            amr: last.amr,
            authTime: last.authTime,
            clientId: c.name,
            role: r.role,
            stage: r.stage,
            audience: r.audience,
            lifetime: lifetime(stage: s, policy: p, sessionEnds: nil, now: now),
            runId: r.runId,
            commit: r.commit,
            approvals: approvals.map(\.id),
            requestId: r.id,
            via: r.ciIssuer == nil ? "device-code" : "device-code+ci",
            ci: r.ciIssuer.map { CIGrant(issuer: $0, claims: CIIdentity.parseClaims(r.ciClaims ?? "")) },
            jkt: jkt
        )
    }

    // MARK: humans deciding

    /// Finds a request by user code for a human, throttling failed lookups per user and per address (RFC 8628 §5.1):
    /// the attempt is reserved before the lookup and given back when the code named a request.
    func lookup(userCode: String, session: Session, address: String) async throws -> ApprovalRequestRecord {
        let keys = ["usercode:" + session.userId, Throttle.addressKey(address)]
        let ticket = try await human.sessions.throttle.reserve(keys)
        guard let code = UserCode.normalize(userCode), let r = try await store.request(userCode: code) else {
            throw OAuthError.notFound("no request with that code")
        }
        try await human.sessions.throttle.refund(ticket)
        return r
    }

    /// The request behind a user code, with its approvals so far.
    public func view(userCode: String, sessionToken: String, address: String) async throws -> RequestView {
        let s = try await human.sessions.requireMFA(token: sessionToken)
        let r = try await lookup(userCode: userCode, session: s, address: address)
        return try await view(r)
    }

    func view(_ r: ApprovalRequestRecord) async throws -> RequestView {
        let needed = policy.current.stages[r.stage]?.approvers ?? 1
        return RequestView(
            request: r,
            approvals: try await store.approvals(requestId: r.id),
            approversNeeded: needed,
            expired: clock.now() >= r.expiresAt
        )
    }

    /// Pending, unexpired requests the session's user may approve: they hold the role, did not trigger the run
    /// where the stage forbids self-approval, and have not approved it yet.
    public func pendingRequests(sessionToken: String) async throws -> [RequestView] {
        let s = try await human.sessions.requireMFA(token: sessionToken)
        let p = policy.current
        var views: [RequestView] = []
        for r in try await store.pendingRequests(now: clock.now())
        where await (try? checkDecider(s, r, policy: p)) != nil {
            let v = try await view(r)
            if !v.approvals.contains(where: { $0.userId == s.userId }) { views.append(v) }
        }
        return views
    }

    /// Checks that `s` may decide on `r`: the request is pending and unexpired, the human holds its role, and (where
    /// the stage forbids self-approval) is not the user who triggered the run.
    func checkDecider(
        _ s: Session,
        _ r: ApprovalRequestRecord,
        policy p: AccessPolicy
    ) async throws(OAuthError)
        -> StagePolicy
    {
        guard r.state == .pending else { throw .conflict("the request is already \(r.state.rawValue)") }
        guard clock.now() < r.expiresAt else { throw .expiredToken }
        guard let role = p.roles[r.role], let stage = p.stages[r.stage] else {
            throw .forbidden("the request's role or stage is no longer in the policy")
        }
        guard !role.groups.isDisjoint(with: s.groups) else {
            throw .forbidden("only holders of the role '\(r.role)' may decide on this request")
        }
        if !stage.allowSelfApproval {
            let triggers = try await triggeringUsers(r.triggeredBy, stage: stage, policy: p, ciIssuer: r.ciIssuer)
            guard !triggers.contains(Identity.normalize(s.userName)) else {
                throw .forbidden("the user who triggered the run cannot approve it")
            }
        }
        return stage
    }

    /// The users (normalised names) a run's `triggered_by` names: the user of that name, and the user the policy's
    /// `identities` maps it to. For a stage that forbids self-approval, a run whose trigger is missing or names
    /// nobody cannot be decided, and is refused.
    /// For a run authenticated by a CI token, the trigger is the token's actor, and the policy's identities may name
    /// it per issuer as `ISSUER-NAME:actor` (e.g. `github:octocat`) as well as plainly.
    func triggeringUsers(
        _ triggeredBy: String?,
        stage: StagePolicy,
        policy p: AccessPolicy,
        ciIssuer: String? = nil
    ) async throws(OAuthError)
        -> Set<String>
    {
        if ciIssuer != nil, triggeredBy == nil {
            throw .invalidRequest(
                "the stage '\(stage.name)' forbids self-approval, and the CI token names no actor to keep from approving"
            )
        }
        guard let triggeredBy else {
            throw .invalidRequest(
                "the stage '\(stage.name)' forbids self-approval: the request must name its trigger (triggered_by)"
            )
        }
        let key = Identity.normalize(triggeredBy)
        var users: Set<String> = []
        if (try? await store.user(named: key)) != nil { users.insert(key) }
        if let mapped = p.identities[key] { users.insert(Identity.normalize(mapped)) }
        if let ciIssuer, let name = p.ciIssuers.values.first(where: { $0.issuer == ciIssuer })?.name,
            let mapped = p.identities[Identity.normalize(name + ":" + triggeredBy)]
        {
            users.insert(Identity.normalize(mapped))
        }
        guard !users.isEmpty else {
            throw .invalidRequest(
                "the stage '\(stage.name)' forbids self-approval, but triggered_by '\(triggeredBy.prefix(80))' names "
                    + "no user and no entry of the policy's identities"
            )
        }
        return users
    }

    /// The first live delegation for this pipeline, role, stage and audience whose delegator still stands behind it
    /// (``standing(userId:role:sessionId:policy:)``) and did not trigger the run (`excluding`, normalised names).
    func firstStandingDelegation(
        clientId: String,
        role: String,
        stage: String,
        audience: String,
        excluding triggers: Set<String>,
        now: Int64,
        policy p: AccessPolicy
    ) async throws -> DelegationRecord? {
        for d in try await store.liveDelegations(
            clientId: clientId,
            role: role,
            stage: stage,
            audience: audience,
            now: now
        ) where !triggers.contains(Identity.normalize(d.userName)) {
            if (try? await standing(userId: d.userId, role: role, sessionId: nil, policy: p)) == .some(nil) {
                return d
            }
        }
        return nil
    }

    /// Why the human behind an approval or delegation no longer stands behind it (disabled, locked, gone, no longer
    /// holding the role, or, for a session-bound approval, the session ended), or nil when they still do.
    func standing(userId: String, role: String, sessionId: String?, policy p: AccessPolicy) async throws -> String? {
        guard let u = try await store.user(id: userId) else { return "the approver's account no longer exists" }
        if u.disabled { return "\(u.name) was disabled" }
        if u.locked { return "\(u.name) is locked" }
        guard let r = p.roles[role], !r.groups.isDisjoint(with: try await store.groups(ofUser: userId)) else {
            return "\(u.name) no longer holds the role '\(role)'"
        }
        if let sessionId, await !(try human.sessions.isAlive(sessionId: sessionId, userId: userId)) {
            return "the session \(u.name) approved from has ended"
        }
        return nil
    }

    public struct ApprovalOutcome: Sendable {
        public var approval: ApprovalRecord
        public var approvals: Int
        public var needed: Int
        /// True when this approval released the token.
        public var approved: Bool
    }

    /// Starts a security-key assertion bound to one request: the challenge covers the request's binding (its id,
    /// client, role, stage, audience, run id, commit and triggering user), so the resulting assertion is accepted
    /// only by ``approve(userCode:sessionToken:proof:address:)`` for this same request.
    /// - Returns: the request options for `navigator.credentials.get()` (``WebAuthnRequestOptions/json``).
    /// - Throws: ``OAuthError`` (`not_found`, `conflict`, `expired_token`, `forbidden`) when the session's user
    ///   cannot decide on the request; ``WebAuthnError/noCredentials(_:)`` when they have no security key;
    ///   ``BrokerError`` for the session.
    public func beginApprovalAssertion(
        userCode: String,
        sessionToken: String,
        address: String
    ) async throws
        -> WebAuthnRequestOptions
    {
        let s = try await human.sessions.requireMFA(token: sessionToken)
        let r = try await lookup(userCode: userCode, session: s, address: address)
        do { _ = try await checkDecider(s, r, policy: policy.current) } catch {
            throw await denied(
                error,
                action: "request.approve",
                actor: s.userName,
                factors: s.amr,
                details: ["request": r.id, "stage": r.stage, "step": "webauthn.begin"]
            )
        }
        return try await human.webauthn.beginAssertion(
            userId: s.userId,
            purpose: .approval(binding: try Self.binding(r))
        )
    }

    /// A human approves one run. With `proof`, the factor is verified for this approval (a security-key assertion
    /// must answer a challenge from ``beginApprovalAssertion(userCode:sessionToken:address:)`` for this request) and
    /// must be a kind the stage counts for approvals; it is checked before anything is verified or consumed, and the
    /// proof is recorded in the session only once the approval is stored. Without `proof`, the session must already
    /// hold a fresh enough proof of a counted kind. Distinct approvers are counted; the run's triggering user cannot
    /// approve it when the stage forbids self-approval. A refused attempt changes nothing in the session.
    public func approve(
        userCode: String,
        sessionToken: String,
        proof: FactorProof?,
        address: String
    ) async throws
        -> ApprovalOutcome
    {
        var s = try await human.sessions.requireMFA(token: sessionToken)
        let r = try await lookup(userCode: userCode, session: s, address: address)
        let p = policy.current
        var details = [
            "request": r.id, "client": r.clientId, "role": r.role, "stage": r.stage, "audience": r.audience,
            "run_id": r.runId,
        ]
        do {
            let stage = try await checkDecider(s, r, policy: p)
            if try await store.approvals(requestId: r.id).contains(where: { $0.userId == s.userId }) {
                throw OAuthError.conflict("\(s.userName) already approved this request")
            }
            let fresh: FreshProof
            var proved: ProvedFactor?
            var amr = s.amr
            if let proof {
                let kinds = stage.factorsForApproval
                guard kinds.contains(proof.kind) else {
                    throw OAuthError.insufficientUserAuthentication(
                        "approving runs of the stage '\(stage.name)' needs one of the factors "
                            + "\(kinds.map(\.rawValue).sorted()), not \(proof.kind.rawValue)",
                        maxAge: stage.mfaMaxAge,
                        acrValues: ACR.values(for: kinds)
                    )
                }
                let verified = try await human.sessions.verify(
                    token: sessionToken,
                    proof: proof,
                    address: address,
                    purpose: .approval(binding: try Self.binding(r))
                )
                fresh = verified.1.fresh
                proved = verified.1
                for m in verified.1.methods where !amr.contains(m) { amr.append(m) }
            } else {
                fresh = try requireFresh(s, stage: stage, now: clock.now(), approving: true)
            }
            let approval = ApprovalRecord(
                id: "apr_" + Base64URL.encode(try Crypto.randomBytes(9)),
                requestId: r.id,
                userId: s.userId,
                userName: s.userName,
                sessionId: s.id,
                amr: amr,
                authTime: fresh.at,
                createdAt: clock.now(),
                binding: try Self.binding(r)
            )
            details["approval"] = approval.id
            details["binding"] = approval.binding
            details["fresh_factor"] = fresh.label
            let all: [ApprovalRecord]
            do {
                all = try await store.insertApproval(
                    approval,
                    audit: try audit.entry(
                        AuditEvent(
                            action: "request.approve",
                            actor: s.userName,
                            subject: r.clientId,
                            factors: amr,
                            details: details
                        )
                    )
                )
            } catch let e as StoreError where e == .conflict {
                throw OAuthError.conflict(e.detail)
            }
            if let proved {
                s = try await human.sessions.record(
                    proved,
                    in: s,
                    address: address,
                    details: ["binding": approval.binding]
                )
            }
            var released = false
            if all.count >= stage.approvers {
                released = try await store.transitionRequest(
                    id: r.id,
                    from: .pending,
                    to: .approved,
                    decidedBy: s.userName,
                    reason: nil,
                    audit: try audit.entry(
                        AuditEvent(
                            action: "request.approved",
                            actor: s.userName,
                            subject: r.clientId,
                            factors: s.amr,
                            details: [
                                "request": r.id, "approvals": all.map(\.id).joined(separator: ","),
                                "approvers": all.map(\.userName).joined(separator: ","),
                            ]
                        )
                    )
                )
            }
            return ApprovalOutcome(
                approval: approval,
                approvals: all.count,
                needed: stage.approvers,
                approved: released
            )
        } catch let e as OAuthError {
            throw await denied(e, action: "request.approve", actor: s.userName, factors: s.amr, details: details)
        }
    }

    /// A human denies one run; the pipeline's next poll gets `access_denied`.
    public func deny(userCode: String, sessionToken: String, reason: String?, address: String) async throws {
        let s = try await human.sessions.requireMFA(token: sessionToken)
        let r = try await lookup(userCode: userCode, session: s, address: address)
        let p = policy.current
        if let reason, reason.utf8.count > 500 {
            throw OAuthError.invalidRequest("the reason is longer than 500 bytes")
        }
        _ = try await checkDecider(s, r, policy: p)
        let ok = try await store.transitionRequest(
            id: r.id,
            from: .pending,
            to: .denied,
            decidedBy: s.userName,
            reason: reason,
            audit: try audit.entry(
                AuditEvent(
                    action: "request.deny",
                    actor: s.userName,
                    subject: r.clientId,
                    result: "success",
                    reason: reason,
                    factors: s.amr,
                    details: ["request": r.id, "role": r.role, "stage": r.stage, "run_id": r.runId]
                )
            )
        )
        guard ok else { throw OAuthError.conflict("the request was decided meanwhile") }
    }

    // MARK: delegations

    /// A standing approval: `client` may obtain tokens for (role, stage, audience) for `window` seconds, approved
    /// by the session's human. Only for stages whose approval mode is `delegated`, within its `max_window`, with one
    /// approver, and with a fresh factor.
    public func delegate(
        sessionToken: String,
        client: String,
        role: String,
        stage: String,
        audience: String,
        window: Int64
    ) async throws -> DelegationRecord {
        let s = try await human.sessions.requireMFA(token: sessionToken)
        let p = policy.current
        let now = clock.now()
        let details = [
            "client": client, "role": role, "stage": stage, "audience": audience, "window": String(window),
        ]
        do {
            let (_, st) = try authorize(groups: s.groups, role: role, stage: stage, audience: audience, policy: p)
            guard case .delegated(let maxWindow) = st.approval else {
                throw OAuthError.forbidden("the stage '\(stage)' does not allow delegations")
            }
            guard st.approvers == 1 else {
                throw OAuthError.forbidden("the stage '\(stage)' needs \(st.approvers) approvers per run")
            }
            guard window > 0, window <= maxWindow else {
                throw OAuthError.invalidRequest("the window must be 1..\(maxWindow) seconds for '\(stage)'")
            }
            try checkPipeline(client, role: role, stage: stage, audience: audience, policy: p)
            let registered = try await store.client(named: client) != nil
            guard p.pipelines[client]?.ci != nil || registered else {
                throw OAuthError.notFound("no registered pipeline client '\(client)'")
            }
            let fresh = try requireFresh(s, stage: st, now: now, approving: true)
            let d = DelegationRecord(
                id: "dlg_" + Base64URL.encode(try Crypto.randomBytes(9)),
                userId: s.userId,
                userName: s.userName,
                sessionId: s.id,
                amr: s.amr,
                authTime: fresh.at,
                clientId: client,
                role: role,
                stage: stage,
                audience: audience,
                createdAt: now,
                expiresAt: now + window
            )
            try await store.insertDelegation(
                d,
                audit: try audit.entry(
                    AuditEvent(
                        action: "delegation.grant",
                        actor: s.userName,
                        subject: client,
                        factors: s.amr,
                        details: details.merging([
                            "delegation": d.id, "expires_at": String(d.expiresAt), "fresh_factor": fresh.label,
                        ]) { a, _ in a }
                    )
                )
            )
            return d
        } catch let e as OAuthError {
            throw await denied(e, action: "delegation.grant", actor: s.userName, factors: s.amr, details: details)
        }
    }

    /// Live delegations: the session user's own, or (with `all`, for an administrator with a fresh factor) everyone's.
    /// - Throws: ``BrokerError`` for the session; ``OAuthError`` `forbidden` / `insufficient_user_authentication`.
    public func delegations(sessionToken: String, all: Bool = false) async throws -> [DelegationRecord] {
        let s = try await human.sessions.requireMFA(token: sessionToken)
        if all {
            try requireAdmin(s)
            return try await store.liveDelegations(now: clock.now())
        }
        return try await store.liveDelegations(userId: s.userId, now: clock.now())
    }

    /// Revokes one delegation: its delegator may, and so may an administrator with a fresh factor. Audited.
    /// - Returns: false when it was already revoked or expired.
    /// - Throws: ``OAuthError`` `not_found`, `forbidden`, `insufficient_user_authentication`.
    @discardableResult
    public func revokeDelegation(id: String, sessionToken: String, reason: String?) async throws -> Bool {
        let s = try await human.sessions.requireMFA(token: sessionToken)
        if let reason, reason.utf8.count > 500 {
            throw OAuthError.invalidRequest("the reason is longer than 500 bytes")
        }
        do {
            guard let d = try await store.delegation(id: id) else { throw OAuthError.notFound("no such delegation") }
            if d.userId != s.userId {
                // Not found rather than forbidden for non-admins: delegation ids of others are not disclosed.
                guard policy.current.isAdmin(groups: s.groups) else { throw OAuthError.notFound("no such delegation") }
                try requireAdmin(s)
            }
            let why = reason ?? "revoked by \(s.userName)"
            let revoked = try await store.revokeDelegations(
                ids: [d.id],
                at: clock.now(),
                reason: why,
                audit: try audit.entry(
                    AuditEvent(
                        action: "delegation.revoke",
                        actor: s.userName,
                        subject: d.clientId,
                        reason: why,
                        factors: s.amr,
                        details: [
                            "delegation": d.id, "delegator": d.userName, "role": d.role, "stage": d.stage,
                            "audience": d.audience,
                        ]
                    )
                )
            )
            return !revoked.isEmpty
        } catch let e as OAuthError {
            throw await denied(
                e,
                action: "delegation.revoke",
                actor: s.userName,
                factors: s.amr,
                details: ["delegation": id]
            )
        }
    }
}
