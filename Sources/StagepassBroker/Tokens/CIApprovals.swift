import Foundation
import StagepassJOSE

/// Pipelines authenticated by their CI platform's OIDC token instead of a client secret.
///
/// The job presents the token its platform signed for it (RFC 7523 §2.2 client assertion on the device authorization
/// request, or RFC 8693 §2.1 `subject_token` of type `urn:ietf:params:oauth:token-type:id_token`). The broker
/// verifies it offline (``verifyCIToken(_:now:)``), judges it against the guardrails and the pipelines' `ci` rules
/// (``CIPolicyEvaluator``), accepts it once (``CITokenStore``), and takes the run id, commit and actor from it: the
/// job's own words about them are never asked for.
extension TokenBroker {
    /// How a refusal is reported on the endpoint at hand.
    enum CIEndpoint {
        /// The device authorization request (RFC 7523 §3.2: a refused client assertion is `invalid_client`).
        case clientAssertion
        /// The token exchange (RFC 8693 §2.2.2; Stagepass answers an unusable subject token with `invalid_grant`).
        case subjectToken

        func refusal(_ description: String) -> OAuthError {
            switch self {
            case .clientAssertion: OAuthError(.invalidClient, description)
            case .subjectToken: OAuthError(.invalidGrant, description)
            }
        }
    }

    /// What the audit log records about a CI identity: issuer, subject, the replay key (`jti`, or the token's hash)
    /// and the mapped claims used; never the token.
    static func ciAuditDetails(_ ci: CIIdentity) -> [String: String] {
        ["ci_issuer": ci.issuer, "ci_subject": ci.subject, "ci_jti": ci.replayKey, "ci_claims": ci.canonicalClaims]
    }

    /// Verifies the CI token; a refusal is audited (`action`) and returned as the endpoint's error.
    func acceptCIToken(
        _ token: String,
        now: Int64,
        endpoint: CIEndpoint,
        action: String,
        details: [String: String]
    ) async throws -> CIIdentity {
        do {
            return try await verifyCIToken(token, now: now)
        } catch {
            var d = details
            d["ci_refusal"] = error.code
            if error.code == "issuer_unavailable" {
                var unavailable = OAuthError(.temporarilyUnavailable, "CI token not checked: \(error.detail)")
                unavailable.retryAfter = 30
                let e = unavailable
                let audited = d
                throw await self.denied(e, action: action, actor: nil, details: audited)
            }
            let e = endpoint.refusal("CI token refused: \(error.code): \(error.detail)")
            let audited = d
            throw await self.denied(e, action: action, actor: nil, details: audited)
        }
    }

    /// The pipeline whose rule the identity matches for this role, stage and audience, after the guardrails.
    /// - Throws: the endpoint's refusal, naming the reasons the job may read; the audit record has them all.
    func matchCIPipeline(
        _ ci: CIIdentity,
        pipeline: String?,
        role: String,
        stage: String,
        audience: String,
        endpoint: CIEndpoint,
        action: String
    ) async throws -> String {
        let evaluation = CIPolicyEvaluator.evaluate(
            ci,
            role: role,
            stage: stage,
            audience: audience,
            pipeline: pipeline,
            policy: policy.current
        )
        if let matched = evaluation.matched { return matched }
        var d = Self.ciAuditDetails(ci)
        d.merge(["role": role, "stage": stage, "audience": audience, "ci_explanation": evaluation.explanation]) {
            a,
            _ in
            a
        }
        if let pipeline { d["client"] = pipeline }
        let e = endpoint.refusal("the CI token matches no pipeline rule: \(evaluation.publicExplanation)")
        throw await denied(e, action: action, actor: pipeline, details: d)
    }

    /// Accepts the CI token once (the replay cache survives restarts and is shared by replicas).
    func consumeCIToken(
        _ ci: CIIdentity,
        issuer: CIIssuerPolicy?,
        now: Int64,
        endpoint: CIEndpoint,
        action: String
    )
        async throws
    {
        let keepUntil = ci.expiresAt + (issuer?.leeway ?? 30)
        guard try await store.useCIToken(issuer: ci.issuer, key: ci.replayKey, expiresAt: keepUntil, now: now) else {
            var d = Self.ciAuditDetails(ci)
            d["ci_refusal"] = "replayed"
            let e = endpoint.refusal(
                "CI token refused: replayed: this CI token was already used (each is accepted once)"
            )
            throw await denied(e, action: action, actor: nil, details: d)
        }
    }

    // MARK: device authorization with a CI token (RFC 8628 §3.1 + RFC 7523 §2.2)

    /// A job asks for a token for its run, authenticated by its CI token: the request names the role, stage and
    /// audience (and optionally the pipeline); the run id, commit and actor come from the signed token, and the
    /// approval binding covers the token's issuer and mapped claims. Polled with the device code alone
    /// (``poll(client:secret:deviceCode:)`` with `secret` nil).
    /// - Throws: ``OAuthError``: `invalid_client` (the token, its replay, or no matching rule, with the reasons the
    ///   job may read), `temporarily_unavailable` (the issuer's keys cannot be had), and the policy errors of
    ///   ``startRequest(client:secret:audience:role:stage:runId:commit:triggeredBy:)``.
    public func startCIRequest(
        ciToken: String,
        pipeline: String?,
        audience: String,
        role: String,
        stage: String
    ) async throws -> DeviceAuthorization {
        let now = clock.now()
        let base = ["role": role, "stage": stage, "audience": audience]
        let ci = try await acceptCIToken(
            ciToken,
            now: now,
            endpoint: .clientAssertion,
            action: "request.deny",
            details: base
        )
        let name = try await self.matchCIPipeline(
            ci,
            pipeline: pipeline,
            role: role,
            stage: stage,
            audience: audience,
            endpoint: .clientAssertion,
            action: "request.deny"
        )
        guard let runId = ci.claims[.runId], !runId.isEmpty else {
            let e = OAuthError.invalidRequest("the CI token carries no run id (\(ci.issuerName))")
            throw await self.denied(e, action: "request.deny", actor: name, details: Self.ciAuditDetails(ci))
        }
        let issuer = self.policy.current.ciIssuers[ci.issuerName]
        try await self.consumeCIToken(ci, issuer: issuer, now: now, endpoint: .clientAssertion, action: "request.deny")
        return try await self.openRequest(
            client: name,
            audience: audience,
            role: role,
            stage: stage,
            runId: String(runId.prefix(200)),
            commit: ci.claims[.commit].map { String($0.prefix(100)) },
            triggeredBy: ci.claims[.actor].map { String($0.prefix(256)) },
            ci: ci
        )
    }

    // MARK: token exchange with a CI token (RFC 8693 §2.1)

    /// RFC 8693 token exchange of a CI token: allowed only where no human needs to approve this run, that is on a
    /// `delegated` stage with one approver and a live delegation for the matched pipeline (whose delegator still
    /// stands, and is not the run's actor where the stage forbids self-approval). Everywhere else the job must open
    /// an approval request (``startCIRequest(ciToken:pipeline:audience:role:stage:)``).
    /// - Throws: ``OAuthError``: `invalid_grant` (the token, its replay, no matching rule), `unauthorized_client`
    ///   (the stage needs a human for this run), `temporarily_unavailable`, and the policy errors.
    public func exchangeCI(
        ciToken: String,
        pipeline: String?,
        audience: String,
        role: String,
        stage: String,
        dpopProof: String? = nil
    ) async throws -> IssuedToken {
        // RFC 9449 §4.3: the proof's own checks first; whether one is required is decided with the grant.
        let binding = try checkDPoPProof(dpopProof)
        let now = clock.now()
        let ci = try await acceptCIToken(
            ciToken,
            now: now,
            endpoint: .subjectToken,
            action: "token.deny",
            details: ["role": role, "stage": stage, "audience": audience]
        )
        let grant = try await self.ciExchangeGrant(
            ci,
            pipeline: pipeline,
            audience: audience,
            role: role,
            stage: stage,
            dpop: binding,
            now: now
        )
        return try await issue(grant)
    }

    func ciExchangeGrant(
        _ ci: CIIdentity,
        pipeline: String?,
        audience: String,
        role: String,
        stage: String,
        dpop: DPoPBinding? = nil,
        now: Int64
    ) async throws -> Grant {
        let name = try await matchCIPipeline(
            ci,
            pipeline: pipeline,
            role: role,
            stage: stage,
            audience: audience,
            endpoint: .subjectToken,
            action: "token.deny"
        )
        let p = policy.current
        var details = Self.ciAuditDetails(ci)
        details.merge(["client": name, "role": role, "stage": stage, "audience": audience]) { a, _ in a }
        let grant: Grant
        do {
            let s = try authorize(groups: nil, role: role, stage: stage, audience: audience, policy: p).1
            guard case .delegated = s.approval, s.approvers == 1 else {
                throw OAuthError.unauthorizedClient(
                    "the stage '\(stage)' needs a human's approval of this run: open an approval request "
                        + "(stagepass request, or the device authorization endpoint with the CI token)"
                )
            }
            var triggers: Set<String> = []
            if !s.allowSelfApproval {
                triggers = try await triggeringUsers(ci.claims[.actor], stage: s, policy: p, ciIssuer: ci.issuer)
            }
            guard
                let d = try await firstStandingDelegation(
                    clientId: name,
                    role: role,
                    stage: stage,
                    audience: audience,
                    excluding: triggers,
                    now: now,
                    policy: p
                )
            else {
                throw OAuthError.unauthorizedClient(
                    "no live delegation approves the pipeline '\(name)' for \(role)@\(stage): open an approval request"
                )
            }
            // A stage or pipeline that requires DPoP requires it on this path too (before the CI token is spent,
            // so the job can retry with a proof).
            let jkt = try await recordDPoP(dpop, stage: s, pipeline: name, policy: p)
            grant = Grant(
                userId: d.userId,
                userName: d.userName,
                sessionId: d.sessionId,
                amr: d.amr,
                authTime: d.authTime,
                clientId: name,
                role: role,
                stage: stage,
                audience: audience,
                lifetime: lifetime(stage: s, policy: p, sessionEnds: nil, now: now),
                runId: ci.claims[.runId],
                commit: ci.claims[.commit],
                delegationId: d.id,
                via: "token-exchange+ci",
                ci: CIGrant(issuer: ci.issuer, claims: ci.claims),
                jkt: jkt
            )
        } catch let e as OAuthError {
            throw await denied(e, action: "token.deny", actor: name, details: details)
        }
        try await consumeCIToken(
            ci,
            issuer: p.ciIssuers[ci.issuerName],
            now: now,
            endpoint: .subjectToken,
            action: "token.deny"
        )
        return grant
    }
}
