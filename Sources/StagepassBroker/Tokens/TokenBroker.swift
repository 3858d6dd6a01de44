import Foundation
import StagepassJOSE
import StagepassVerify

/// A signed access token as handed out.
public struct IssuedToken: Sendable {
    /// The compact JWS (never log it whole).
    public var accessToken: String
    public var jti: String
    public var expiresIn: Int64
    public var record: TokenRecord
    /// The status list position written into the token.
    public var statusURI: String
    public var statusIndex: Int64
    /// `cnf.jkt` of a DPoP-bound token (RFC 9449 §6.1): the thumbprint of the key it is bound to; nil for a bearer
    /// token.
    public var confirmationThumbprint: String? = nil
    /// The `token_type` of the token response (RFC 9449 §5: `DPoP` for a bound token, RFC 6750 `Bearer` otherwise).
    public var tokenType: String { confirmationThumbprint == nil ? "Bearer" : "DPoP" }
}

/// A token request's DPoP proof after the stateless checks of RFC 9449 §4.3 (``TokenBroker/checkDPoPProof(_:)``),
/// not yet recorded as used.
public struct DPoPBinding: Sendable, Hashable {
    /// The RFC 7638 thumbprint of the proof's key: the token's `cnf.jkt`.
    public let thumbprint: String
    /// The replay record's key (thumbprint and `jti`) and how long it is kept.
    let replayKey: String
    let expiresAt: Int64
}

/// The scoped-token core: policy checks, RFC 8693 token exchange, RFC 8628 pipeline approvals, delegations,
/// revocation and the Token Status List. It holds no HTTP types; StagepassHTTP and the CLI call it.
///
/// ```swift
/// let tokens = TokenBroker(human: broker, keys: keyStore, issuer: "https://sp.example")
/// let t = try await tokens.exchange(sessionToken: s, audience: "deploy-api", role: "deployer", stage: "production")
/// ```
public struct TokenBroker: Sendable {
    public let human: HumanBroker
    public let keys: KeyStore
    /// The policy in force: the human broker's holder, so one reload applies to sign-in and tokens alike.
    public var policy: PolicyHolder { human.policies }
    /// The `iss` of every token; status list URIs and the discovery document hang off it.
    public let issuer: String
    public let statusLists: StatusListPublisher

    /// Where tokens sit in the status lists (``StatusListLayout``).
    public let statusListLayout: StatusListLayout
    /// Writes issued tokens' ledger rows and audit records, many per transaction (``IssuanceCommitter``).
    public let issuance: IssuanceCommitter
    /// The keys of the trusted CI issuers (``CIKeyDirectory``).
    public let ciKeys: CIKeyDirectory

    var store: any BrokerStore { human.store }
    var audit: HashChainAuditLog { human.audit }
    var clock: BrokerClock { human.clock }

    /// - Parameter ciKeys: where CI issuers' keys come from (default: pinned `jwks_file`s only).
    public init(human: HumanBroker, keys: KeyStore, issuer: String, ciKeys: CIKeyDirectory = CIKeyDirectory()) async {
        self.human = human
        self.ciKeys = ciKeys
        self.keys = keys
        self.issuer = issuer
        let layout = StatusListLayout(store: human.store)
        statusListLayout = layout
        issuance = await IssuanceCommitter(store: human.store)
        statusLists = StatusListPublisher(
            store: human.store,
            keys: keys,
            policy: human.policies,
            issuer: issuer,
            clock: human.clock,
            layout: layout
        )
    }

    /// The URI of status list `n` (the `sub` of the list token and the `uri` tokens carry).
    public func statusListURI(_ n: Int64) -> String { StatusListPublisher.uri(issuer: issuer, n) }

    // MARK: DPoP (RFC 9449)

    /// The token endpoint's URL: what a DPoP proof for a token request names in `htu` (RFC 9449 §4.2).
    public var tokenEndpoint: String { (issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer) + "/v1/token" }

    /// The checks of RFC 9449 §4.3 on a token request's proof (typ, alg ES256/EdDSA, public jwk, signature, `htm`
    /// POST, `htu` ``tokenEndpoint``, `iat` within 60 s plus 30 s of skew). The "used once" check happens when the
    /// grant is decided (``recordDPoP(_:stage:pipeline:policy:)``).
    /// - Parameter proof: the `DPoP` header, or nil when the request had none.
    /// - Returns: the binding, or nil without a proof.
    /// - Throws: ``OAuthError`` `invalid_dpop_proof` naming the failed check.
    public func checkDPoPProof(_ proof: String?) throws(OAuthError) -> DPoPBinding? {
        guard let proof else { return nil }
        do {
            let c = try DPoPProofChecker().check(
                proof,
                method: "POST",
                url: tokenEndpoint,
                accessToken: nil,
                now: clock.now()
            )
            return DPoPBinding(
                thumbprint: c.thumbprint,
                replayKey: c.thumbprint + " " + c.jti,
                expiresAt: c.replayExpiresAt
            )
        } catch {
            throw .invalidDPoPProof(error.detail)
        }
    }

    /// Whether policy makes DPoP mandatory for `stage` or for `pipeline` (`require_dpop`, Specs/policy.md).
    func dpopRequired(stage: StagePolicy, pipeline: String?, policy p: AccessPolicy) -> Bool {
        stage.requireDPoP || (pipeline.flatMap { p.pipelines[$0]?.requireDPoP } ?? false)
    }

    /// Applies the DPoP rules to a grant about to be issued: a required proof must be present, and a proof is
    /// accepted once (RFC 9449 §11.1, recorded in the store so the record survives restarts and is shared by every
    /// broker on the database).
    /// - Returns: the `cnf.jkt` for the token, or nil for a bearer token.
    /// - Throws: ``OAuthError`` `invalid_dpop_proof` (missing where required, or already used).
    func recordDPoP(
        _ binding: DPoPBinding?,
        stage: StagePolicy?,
        pipeline: String?,
        policy p: AccessPolicy
    ) async throws -> String? {
        guard let binding else {
            if let stage, dpopRequired(stage: stage, pipeline: pipeline, policy: p) {
                let who = stage.requireDPoP ? "the stage '\(stage.name)'" : "the pipeline '\(pipeline ?? "")'"
                throw OAuthError.invalidDPoPProof(
                    "\(who) requires a DPoP-bound token (RFC 9449): send a DPoP proof header for POST "
                        + "\(tokenEndpoint) (stagepass request or stagepass token with --dpop-key-file FILE)"
                )
            }
            return nil
        }
        guard try await store.recordDPoPProof(key: binding.replayKey, expiresAt: binding.expiresAt, now: clock.now())
        else {
            throw OAuthError.invalidDPoPProof("this DPoP proof was already used: make a fresh proof (new jti)")
        }
        return binding.thumbprint
    }

    // MARK: policy checks

    /// Checks that `role` may reach `stage` and `audience` and, with `groups`, that their holder has the role
    /// (pipeline requests pass nil: the approving humans are checked when they approve).
    /// - Throws: `invalid_scope` (unknown role or stage, role not held, stage not reachable by the role),
    ///   `invalid_target` (unknown audience or one the role may not reach; RFC 8693 §2.2.2).
    func authorize(
        groups: [String]?,
        role: String,
        stage: String,
        audience: String,
        policy p: AccessPolicy
    )
        throws(OAuthError) -> (RolePolicy, StagePolicy)
    {
        guard let r = p.roles[role] else { throw .invalidScope("unknown role '\(role)'") }
        guard let s = p.stages[stage] else { throw .invalidScope("unknown stage '\(stage)'") }
        guard p.audiences[audience] != nil else { throw .invalidTarget("unknown audience '\(audience)'") }
        if let groups, r.groups.isDisjoint(with: groups) {
            throw .invalidScope("you do not hold the role '\(role)' (it belongs to groups \(r.groups.sorted()))")
        }
        guard r.stages.contains(stage) else {
            throw .invalidScope("the role '\(role)' cannot reach the stage '\(stage)'")
        }
        guard r.audiences.contains(audience) else {
            throw .invalidTarget("the role '\(role)' cannot reach the audience '\(audience)'")
        }
        return (r, s)
    }

    /// RFC 9470 §3: the session must hold a proof of a factor the stage counts, itself no older than the stage's
    /// `mfa_max_age`. Freshness is per factor: a fresh proof of a method the stage does not count proves nothing
    /// for it, and an old proof of a counted method is not refreshed by a fresh proof of another.
    /// - Returns: the proof that satisfied the rule (its time is the token's `auth_time`).
    func requireFresh(
        _ session: Session,
        stage s: StagePolicy,
        now: Int64,
        approving: Bool = false
    )
        throws(OAuthError) -> FreshProof
    {
        let kinds = approving ? s.factorsForApproval : s.factors
        let what = approving ? "approving runs of the stage" : "the stage"
        return try Self.requireFresh(
            session,
            kinds: kinds,
            maxAge: s.mfaMaxAge,
            now: now,
            what: "\(what) '\(s.name)'"
        )
    }

    /// The freshness rule: the most recent proof of one of `kinds`, at most `maxAge` seconds old.
    static func requireFresh(
        _ session: Session,
        kinds: Set<FactorKind>,
        maxAge: Int64?,
        now: Int64,
        what: String
    )
        throws(OAuthError) -> FreshProof
    {
        guard let proof = session.freshestProof(of: kinds) else {
            throw .insufficientUserAuthentication(
                "\(what) needs one of the factors \(kinds.map(\.rawValue).sorted()); step up with one",
                maxAge: maxAge,
                acrValues: ACR.values(for: kinds)
            )
        }
        if let maxAge, now - proof.at > maxAge {
            throw .insufficientUserAuthentication(
                "\(what) needs one of the factors \(kinds.map(\.rawValue).sorted()) proved within \(maxAge) s; "
                    + "step up with one and retry",
                maxAge: maxAge,
                acrValues: ACR.values(for: kinds)
            )
        }
        return proof
    }

    /// Why `session` does not (yet) satisfy `stage`'s factor and freshness rule, or nil when it does (pages use it
    /// to ask for a fresh factor right where the approval happens).
    public func freshnessProblem(_ session: Session, stage: String, approving: Bool = false) -> OAuthError? {
        guard let s = policy.current.stages[stage] else { return .invalidScope("unknown stage '\(stage)'") }
        do { _ = try requireFresh(session, stage: s, now: clock.now(), approving: approving) } catch {
            return error
        }
        return nil
    }

    /// Users other than `excluding` who hold `role` (and so may approve its runs).
    public func holders(ofRole role: String, excluding: Set<String>) async throws -> [String] {
        guard let r = policy.current.roles[role] else { return [] }
        return try await human.accounts.list()
            .filter { !$0.disabled && !r.groups.isDisjoint(with: $0.groups) && !excluding.contains($0.name) }
            .map(\.name)
    }

    /// Records a refusal in the audit log and returns the error to throw.
    func denied(
        _ e: OAuthError,
        action: String,
        actor: String?,
        factors: [String] = [],
        details: [String: String]
    ) async -> OAuthError {
        var d = details
        d["error"] = e.error
        try? await audit.record(
            AuditEvent(
                action: action,
                actor: actor,
                subject: actor,
                result: "denied",
                reason: e.errorDescription,
                factors: factors,
                details: d
            )
        )
        return e
    }

    // MARK: issuing

    /// The CI identity behind a grant: the CI token's issuer and its mapped claims.
    struct CIGrant: Sendable {
        var issuer: String
        var claims: [CIClaim: String]
    }

    struct Grant: Sendable {
        var userId: String
        var userName: String
        var sessionId: String?
        var amr: [String]
        var authTime: Int64
        var clientId: String?
        var role: String
        var stage: String
        var audience: String
        var lifetime: Int64
        var runId: String?
        var commit: String?
        var approvals: [String] = []
        var requestId: String?
        /// The delegation a direct exchange named a pipeline under (the token then carries `act`).
        var delegationId: String?
        /// The proof that satisfied the freshness rule (audited as `fresh_factor`).
        var freshFactor: String?
        var via: String
        /// For a pipeline authenticated by its CI token: what the token said (the token's `act` names it).
        var ci: CIGrant?
        /// `cnf.jkt` (RFC 9449 §6.1) when the token is DPoP-bound.
        var jkt: String? = nil
    }

    /// Signs a token for `g`. The ledger row and the `token.issue` audit record commit in one transaction before the
    /// token exists; with a request id, the request turns `issued` in that same transaction. That transaction is a
    /// group commit (``IssuanceCommitter``): it holds the rows of every issuance waiting at the time, and this one
    /// is signed only after it committed.
    func issue(_ g: Grant) async throws -> IssuedToken {
        // The key stays published (retiring) until this token has expired, plus leeway.
        let key = try await keys.signingKey(coveringLifetime: g.lifetime, requestedAt: .now)
        let now = clock.now()
        let jti = "tok_" + Base64URL.encode(try Crypto.randomBytes(16))
        let exp = now + g.lifetime
        var details: [String: String] = [
            "jti": jti, "kid": key.kid, "role": g.role, "stage": g.stage, "audience": g.audience,
            "exp": String(exp), "via": g.via,
        ]
        if let c = g.clientId { details["client"] = c }
        if let s = g.sessionId { details["session"] = s }
        if let r = g.runId { details["run_id"] = r }
        if let r = g.requestId { details["request"] = r }
        if !g.approvals.isEmpty { details["approvals"] = g.approvals.joined(separator: ",") }
        if let d = g.delegationId { details["delegation"] = d }
        if let f = g.freshFactor { details["fresh_factor"] = f }
        if let ci = g.ci {
            details["ci_issuer"] = ci.issuer
            for k in [CIClaim.repository, .repositoryId, .commit, .runId] {
                if let v = ci.claims[k] { details["ci_\(k.rawValue)"] = v }
            }
        }
        if let k = g.jkt { details["cnf_jkt"] = k }
        let entry = try audit.entry(
            AuditEvent(
                action: "token.issue",
                actor: g.userName,
                subject: g.userName,
                factors: g.amr,
                details: details
            )
        )
        let row = TokenRecord(
            jti: jti,
            kid: key.kid,
            userId: g.userId,
            userName: g.userName,
            sessionId: g.sessionId,
            clientId: g.clientId,
            role: g.role,
            stage: g.stage,
            audience: g.audience,
            requestId: g.requestId,
            issuedAt: now,
            expiresAt: exp
        )
        let layout = statusListLayout
        let listSize = policy.current.tokens.statusListSize
        // Group commit: the committer writes this row with every other one waiting, in one transaction.
        let record = try await issuance.commit(PendingToken(token: row, audit: entry, claimRequest: g.requestId))
        // The token's list exists (durably) before the token does; its size is fixed from then on. Only the first
        // token of a new list writes; the others find the list in the layout's cache.
        let list: StatusListRecord
        if let known = layout.known(seq: record.seq) {
            list = known
        } else {
            list = try await layout.place(seq: record.seq, size: listSize, at: now)
        }
        let idx = record.seq - list.firstSeq
        let uri = statusListURI(list.number)
        // RFC 9068 §2.2 and Specs/token-profile.md §3.
        var claims: [String: JSONValue] = [
            "iss": .string(issuer), "sub": .string(g.userName), "aud": .string(g.audience),
            "iat": .int(now), "nbf": .int(now), "exp": .int(exp), "jti": .string(jti),
            "role": .string(g.role), "stage": .string(g.stage), "scope": .string("\(g.role):\(g.stage)"),
            "amr": .array(g.amr.map { .string($0) }), "auth_time": .int(g.authTime),
            // draft-ietf-oauth-status-list §6.1: the referenced token's status claim.
            "status": .object(["status_list": .object(["idx": .int(idx), "uri": .string(uri)])]),
        ]
        if let s = g.sessionId { claims["sid"] = .string(s) }
        if let c = g.clientId { claims["client_id"] = .string(c) }
        if let r = g.runId { claims["run_id"] = .string(r) }
        if let c = g.commit { claims["commit"] = .string(c) }
        if !g.approvals.isEmpty { claims["approvals"] = .array(g.approvals.map { .string($0) }) }
        // RFC 7800 §3.1 / RFC 9449 §6.1: the confirmation claim binds the token to the proof's key.
        if let k = g.jkt { claims["cnf"] = .object(["jkt": .string(k)]) }
        if let c = g.clientId, g.requestId != nil || g.delegationId != nil {
            // RFC 8693 §4.1: the human (`sub`) approved; the pipeline acts.
            var act: [String: JSONValue] = ["sub": .string(c)]
            if let r = g.runId { act["run_id"] = .string(r) }
            if let ci = g.ci {
                // What the CI platform signed about the run (never what the job said): Specs/token-profile.md §3.
                act["ci_iss"] = .string(ci.issuer)
                let named: [(String, CIClaim)] = [
                    ("repository", .repository), ("repository_id", .repositoryId), ("commit", .commit),
                    ("workflow_ref", .workflowRef), ("ref", .ref), ("run_attempt", .runAttempt),
                ]
                for (name, claim) in named { if let v = ci.claims[claim] { act[name] = .string(v) } }
            }
            claims["act"] = .object(act)
        }
        // RFC 9068 §2.1: typ at+jwt; RFC 7515 §4.1.4: kid names the key (its RFC 7638 thumbprint).
        let jwt = try JWS.sign(
            claims: .object(claims),
            header: ["typ": .string("at+jwt"), "kid": .string(key.kid)],
            key: key.privateKey,
            alg: key.alg
        )
        return IssuedToken(
            accessToken: jwt,
            jti: jti,
            expiresIn: g.lifetime,
            record: record,
            statusURI: uri,
            statusIndex: idx,
            confirmationThumbprint: g.jkt
        )
    }

    /// The lifetime rule: the stage's `max_ttl`, the global cap and (for session-backed tokens) the session's
    /// remaining life, whichever is least.
    func lifetime(stage s: StagePolicy, policy p: AccessPolicy, sessionEnds: Int64?, now: Int64) -> Int64 {
        var l = min(s.maxTTL, p.tokens.maxTTL)
        if let end = sessionEnds { l = min(l, end - now) }
        return l
    }

    // MARK: token exchange (RFC 8693)

    /// RFC 8693 §2.1 token exchange: an MFA-verified session (`subject_token`) for a token scoped to one role,
    /// stage and audience, optionally naming the pipeline it is for (`client_id` claim). On a `delegated` stage a
    /// pipeline may be named only under a live delegation from this human for exactly that pipeline, role, stage and
    /// audience; the token then names the pipeline as the actor (`act`, RFC 8693 §4.1).
    /// - Throws: ``OAuthError`` (`invalid_grant`, `invalid_scope`, `invalid_target`, `unauthorized_client`,
    ///   `insufficient_user_authentication`); every refusal is audited with its reason.
    public func exchange(
        sessionToken: String,
        audience: String,
        role: String,
        stage: String,
        pipeline: String? = nil,
        dpopProof: String? = nil
    ) async throws -> IssuedToken {
        let binding = try checkDPoPProof(dpopProof)
        let grant = try await self.exchangeGrant(
            sessionToken: sessionToken,
            audience: audience,
            role: role,
            stage: stage,
            pipeline: pipeline,
            dpop: binding
        )
        do { return try await issue(grant) } catch let e as OAuthError {
            throw await denied(
                e,
                action: "token.deny",
                actor: grant.userName,
                factors: grant.amr,
                details: ["role": role, "stage": stage, "audience": audience, "session": grant.sessionId ?? ""]
            )
        }
    }

    /// Everything ``exchange(sessionToken:audience:role:stage:pipeline:)`` checks before it signs (synchronous
    /// storage reads); refusals are audited here.
    func exchangeGrant(
        sessionToken: String,
        audience: String,
        role: String,
        stage: String,
        pipeline: String?,
        dpop: DPoPBinding? = nil
    )
        async throws -> Grant
    {
        let session: Session
        do { session = try await human.sessions.requireMFA(token: sessionToken) } catch let f as StorageFault {
            throw f  // the store failed, not the session: 503, never invalid_grant
        } catch {
            // RFC 8693 §2.2.2: an unusable subject_token is invalid_grant (audited without naming anyone).
            throw await denied(
                .invalidGrant("subject_token is not a live session verified with a second factor"),
                action: "token.deny",
                actor: nil,
                details: ["role": role, "stage": stage, "audience": audience]
            )
        }
        let p = policy.current
        let now = clock.now()
        var details = ["role": role, "stage": stage, "audience": audience, "session": session.id]
        if let pipeline { details["client"] = pipeline }
        do {
            let (_, s) = try authorize(
                groups: session.groups,
                role: role,
                stage: stage,
                audience: audience,
                policy: p
            )
            var delegation: DelegationRecord?
            if let pipeline {
                try checkPipeline(pipeline, role: role, stage: stage, audience: audience, policy: p)
                guard try await store.client(named: pipeline) != nil else {
                    throw OAuthError.unauthorizedClient("no registered pipeline client '\(pipeline)'")
                }
                switch s.approval {
                case .perRun:
                    throw OAuthError.unauthorizedClient(
                        "the stage '\(stage)' needs per-run approval for pipelines: use `stagepass request`"
                    )
                case .delegated:
                    delegation = try await store.liveDelegations(
                        clientId: pipeline,
                        role: role,
                        stage: stage,
                        audience: audience,
                        now: now
                    ).first { $0.userId == session.userId }
                    guard delegation != nil else {
                        throw OAuthError.unauthorizedClient(
                            "the stage '\(stage)' is delegated: name the pipeline '\(pipeline)' only under a live "
                                + "delegation of yours for it (stagepass delegations grant)"
                        )
                    }
                case .session: break
                }
            }
            let fresh = try requireFresh(session, stage: s, now: now)
            let life = lifetime(stage: s, policy: p, sessionEnds: session.absoluteExpiresAt, now: now)
            guard life > 0 else { throw OAuthError.invalidGrant("the session is about to end; sign in again") }
            let jkt = try await recordDPoP(dpop, stage: s, pipeline: pipeline, policy: p)
            return Grant(
                userId: session.userId,
                userName: session.userName,
                sessionId: session.id,
                amr: session.amr,
                authTime: fresh.at,
                clientId: pipeline,
                role: role,
                stage: stage,
                audience: audience,
                lifetime: life,
                delegationId: delegation?.id,
                freshFactor: fresh.label,
                via: "token-exchange",
                jkt: jkt
            )
        } catch let e as OAuthError {
            throw await denied(e, action: "token.deny", actor: session.userName, factors: session.amr, details: details)
        }
    }

    /// A pipeline client may only ask for what the policy's `pipelines` entry allows.
    func checkPipeline(
        _ name: String,
        role: String,
        stage: String,
        audience: String,
        policy p: AccessPolicy
    )
        throws(OAuthError)
    {
        guard let pp = p.pipelines[name] else {
            throw .unauthorizedClient("the pipeline '\(name)' is not in the policy")
        }
        if !pp.roles.isEmpty && !pp.roles.contains(role) {
            throw .invalidScope("the pipeline '\(name)' may not use the role '\(role)'")
        }
        if !pp.stages.isEmpty && !pp.stages.contains(stage) {
            throw .invalidScope("the pipeline '\(name)' may not reach the stage '\(stage)'")
        }
        if !pp.audiences.isEmpty && !pp.audiences.contains(audience) {
            throw .invalidTarget("the pipeline '\(name)' may not reach the audience '\(audience)'")
        }
    }

    // MARK: administrators

    /// Admin actions need a session of an admin group holding a proof of one of the user's allowed factors made
    /// within `admin_mfa_max_age` (step-up).
    /// - Returns: the proof that satisfied the rule.
    /// - Throws: `forbidden` (not an admin), `insufficient_user_authentication` (no such proof, or too old).
    @discardableResult
    public func requireAdmin(_ s: Session) throws(OAuthError) -> FreshProof {
        let p = policy.current
        guard p.isAdmin(groups: s.groups) else { throw .forbidden("this needs an administrator") }
        return try Self.requireFresh(
            s,
            kinds: p.auth.allowedFactors(groups: s.groups),
            maxAge: p.tokens.adminMFAMaxAge,
            now: clock.now(),
            what: "administrator actions"
        )
    }
}
