import Foundation
public import StagepassJOSE

/// What a verified CI token says, in Stagepass's vocabulary (``CIClaim``). Built only from a token whose signature,
/// issuer, audience and times were checked (``TokenBroker/verifyCIToken(_:now:)``), or, for `stagepass policy
/// explain`, from claims an administrator supplies.
public struct CIIdentity: Sendable, Hashable {
    /// The policy's name for the issuer.
    public var issuerName: String
    /// The token's `iss`.
    public var issuer: String
    /// The token's `sub`.
    public var subject: String
    /// What the replay cache remembers: the token's `jti`, or (a token without one, as Buildkite's) `sha256:` and
    /// the hex SHA-256 of the whole token.
    public var replayKey: String
    /// The token's `exp`: the replay cache keeps the key until then (plus leeway).
    public var expiresAt: Int64
    /// The mapped claims that the token carries.
    public var claims: [CIClaim: String]

    public init(
        issuerName: String,
        issuer: String,
        subject: String,
        replayKey: String,
        expiresAt: Int64,
        claims: [CIClaim: String]
    ) {
        self.issuerName = issuerName
        self.issuer = issuer
        self.subject = subject
        self.replayKey = replayKey
        self.expiresAt = expiresAt
        self.claims = claims
    }

    /// Maps a token's claims object through `mapping`. Strings are taken as they are, integers in decimal and
    /// booleans as `true`/`false`; null, absent and other values leave the claim out.
    public static func mapped(_ raw: JSONValue, _ mapping: CIClaimMapping) -> [CIClaim: String] {
        var out: [CIClaim: String] = [:]
        for (claim, name) in mapping.claims {
            switch raw[name] {
            case .string(let s)?: out[claim] = s
            case .int(let i)?: out[claim] = String(i)
            case .bool(let b)?: out[claim] = b ? "true" : "false"
            default: break
            }
        }
        return out
    }

    /// The mapped claims as one canonical JSON object (sorted keys): stored with the approval request, covered by
    /// its binding, and audited.
    public var canonicalClaims: String { Self.canonical(claims) }

    static func canonical(_ claims: [CIClaim: String]) -> String {
        JSONValue.object(Dictionary(uniqueKeysWithValues: claims.map { ($0.key.rawValue, JSONValue.string($0.value)) }))
            .serialized()
    }

    /// Reads ``canonicalClaims`` back (unknown names are dropped).
    static func parseClaims(_ text: String) -> [CIClaim: String] {
        guard let obj = (try? JSONValue.parse(text))?.objectValue else { return [:] }
        var out: [CIClaim: String] = [:]
        for (k, v) in obj { if let c = CIClaim(rawValue: k), let s = v.stringValue { out[c] = s } }
        return out
    }
}

/// Why a CI identity was not accepted by one pipeline rule or by a guardrail.
public struct CIMismatch: Sendable, Hashable, CustomStringConvertible {
    /// The Stagepass claim that failed, nil for a reason that is not one claim (issuer, role, stage, audience).
    public var claim: CIClaim?
    /// The full reason, with what the rule expects (audit log, `stagepass policy explain`).
    public var reason: String
    /// The reason as the job may read it: the job's own claim value, never the rule's expected values.
    public var publicReason: String

    public init(claim: CIClaim?, reason: String, publicReason: String? = nil) {
        self.claim = claim
        self.reason = reason
        self.publicReason = publicReason ?? reason
    }

    public var description: String { reason }
}

/// The outcome of judging one CI identity against the policy for one role, stage and audience
/// (``CIPolicyEvaluator/evaluate(_:role:stage:audience:pipeline:policy:)``).
public struct CIEvaluation: Sendable, Hashable {
    /// A server-wide guardrail refused the identity before any rule was tried.
    public var guardrail: CIMismatch?
    /// Each pipeline rule tried, by pipeline name, in name order: nil where it matched.
    public var rules: [(pipeline: String, mismatch: CIMismatch?)]
    /// The pipeline whose rule matched (the first in name order).
    public var matched: String? { guardrail == nil ? rules.first { $0.mismatch == nil }?.pipeline : nil }

    public static func == (a: CIEvaluation, b: CIEvaluation) -> Bool {
        a.guardrail == b.guardrail && a.rules.map(\.pipeline) == b.rules.map(\.pipeline)
            && a.rules.map(\.mismatch) == b.rules.map(\.mismatch)
    }

    public func hash(into h: inout Hasher) {
        h.combine(guardrail)
        for r in rules {
            h.combine(r.pipeline)
            h.combine(r.mismatch)
        }
    }

    /// Every reason, one line each, with the rules' expected values: for the audit record and `policy explain`.
    public var explanation: String {
        if let guardrail { return "refused by a guardrail: \(guardrail.reason)" }
        if let matched { return "matched the pipeline '\(matched)'" }
        if rules.isEmpty { return "no pipeline is authenticated by CI tokens" }
        return rules.compactMap { r in r.mismatch.map { "pipeline '\(r.pipeline)': \($0.reason)" } }
            .joined(separator: "; ")
    }

    /// The reasons the job is told: a guardrail's; for a pipeline it named, that rule's first mismatch; otherwise
    /// only the reasons of rules about the job's own repository and owner (a rule that failed on the repository,
    /// its owner or their ids is about someone else's and is only counted). Expected values are never included.
    public var publicExplanation: String {
        if let guardrail { return guardrail.publicReason }
        let identityClaims: Set<CIClaim> = [.repository, .repositoryId, .owner, .ownerId]
        var own: [String] = []
        var others = 0
        for r in rules {
            guard let m = r.mismatch else { continue }
            if rules.count > 1, m.claim.map({ identityClaims.contains($0) }) ?? m.reason.hasPrefix("issued by") {
                others += 1
            } else {
                own.append("pipeline '\(r.pipeline)': \(m.publicReason)")
            }
        }
        if rules.isEmpty { return "no pipeline of the policy is authenticated by CI tokens" }
        if own.isEmpty { return "no pipeline rule of the policy matches this CI token's repository" }
        return own.joined(separator: "; ") + (others > 0 ? " (\(others) other rules are for other repositories)" : "")
    }
}

/// Judges CI identities against the policy: pure, so every refusal reason is unit-tested.
public enum CIPolicyEvaluator {
    /// Guardrails first (allowed issuer, never-trusted event, protected ref for the stage), then every pipeline rule
    /// (only `pipeline`'s when it is named): the issuer, each claim condition in vocabulary order, then the
    /// pipeline's roles, stages and audiences.
    public static func evaluate(
        _ id: CIIdentity,
        role: String,
        stage: String,
        audience: String,
        pipeline: String?,
        policy p: AccessPolicy
    ) -> CIEvaluation {
        if let g = guardrail(id, stage: stage, policy: p) { return CIEvaluation(guardrail: g, rules: []) }
        var rules: [(pipeline: String, mismatch: CIMismatch?)] = []
        for name in p.pipelines.keys.sorted() {
            guard let pp = p.pipelines[name], let rule = pp.ci else { continue }
            if let pipeline, pipeline != name { continue }
            var m = mismatch(id, rule: rule, pipeline: pp, role: role, stage: stage, audience: audience)
            if m == nil, p.ciGuardrails.protectedRefStages.contains(stage),
                p.ciIssuers[id.issuerName]?.mapping.claims[.refProtected] == nil,
                rule.claims[.ref].map({ !$0.isExact }) ?? true
            {
                // The platform does not say whether a ref is protected: the rule itself must name the refs exactly.
                m = CIMismatch(
                    claim: .ref,
                    reason: "the stage '\(stage)' needs a protected ref, and \(id.issuerName) tokens do not say "
                        + "whether a ref is protected: the pipeline's rule must pin ref to exact values"
                )
            }
            rules.append((name, m))
        }
        if let pipeline, rules.isEmpty {
            let why =
                p.pipelines[pipeline] == nil
                ? "the pipeline '\(pipeline)' is not in the policy"
                : "the pipeline '\(pipeline)' is not authenticated by CI tokens (it has no ci rule)"
            return CIEvaluation(guardrail: CIMismatch(claim: nil, reason: why), rules: [])
        }
        return CIEvaluation(guardrail: nil, rules: rules)
    }

    /// The server-wide guardrails (``CIGuardrails``).
    static func guardrail(_ id: CIIdentity, stage: String, policy p: AccessPolicy) -> CIMismatch? {
        let g = p.ciGuardrails
        if let allowed = g.allowedIssuers, !allowed.contains(id.issuerName) {
            return CIMismatch(
                claim: nil,
                reason: "the CI issuer '\(id.issuerName)' is not allowed on this server (ci_guardrails.allowed_issuers)"
            )
        }
        if let event = id.claims[.event], g.untrustedEvents.contains(event) {
            return CIMismatch(
                claim: .event,
                reason: "runs started by the event '\(event)' are never trusted (ci_guardrails.untrusted_events)"
            )
        }
        // An issuer whose tokens cannot say whether a ref is protected is judged by the rule instead (``mismatch``).
        let saysProtection = p.ciIssuers[id.issuerName]?.mapping.claims[.refProtected] != nil
        if g.protectedRefStages.contains(stage), saysProtection {
            let value = id.claims[.refProtected]
            guard value == "true" else {
                let ref = id.claims[.ref].map { "'\($0)'" } ?? "the run's ref"
                return CIMismatch(
                    claim: .refProtected,
                    reason: "the stage '\(stage)' needs a run on a protected ref, and \(ref) is "
                        + (value == nil ? "not known to be protected (no ref_protected claim)" : "not protected")
                )
            }
        }
        return nil
    }

    /// One rule's first mismatch, or nil when it matches.
    static func mismatch(
        _ id: CIIdentity,
        rule: CIRule,
        pipeline pp: PipelinePolicy,
        role: String,
        stage: String,
        audience: String
    ) -> CIMismatch? {
        guard rule.issuer == id.issuerName else {
            return CIMismatch(
                claim: nil,
                reason: "issued by '\(id.issuerName)', the rule trusts '\(rule.issuer)'",
                publicReason: "issued by '\(id.issuerName)', which this pipeline does not trust"
            )
        }
        for claim in CIClaim.allCases {
            guard let m = rule.claims[claim] else { continue }
            guard let value = id.claims[claim] else {
                return CIMismatch(
                    claim: claim,
                    reason: "the token has no \(claim.rawValue) claim, the rule needs \(m)",
                    publicReason: "the token has no \(claim.rawValue) claim"
                )
            }
            guard m.matches(value) else {
                let what = [CIClaim.repositoryId, .ownerId].contains(claim) ? "immutable id " : ""
                return CIMismatch(
                    claim: claim,
                    reason: "\(what)\(claim.rawValue) is '\(value)', the rule needs \(m)",
                    publicReason: "\(what)\(claim.rawValue) '\(value)' does not match the pipeline's rule"
                )
            }
        }
        if !pp.roles.isEmpty && !pp.roles.contains(role) {
            return CIMismatch(claim: nil, reason: "the pipeline may not use the role '\(role)'")
        }
        if !pp.stages.isEmpty && !pp.stages.contains(stage) {
            return CIMismatch(claim: nil, reason: "the pipeline may not reach the stage '\(stage)'")
        }
        if !pp.audiences.isEmpty && !pp.audiences.contains(audience) {
            return CIMismatch(claim: nil, reason: "the pipeline may not reach the audience '\(audience)'")
        }
        return nil
    }
}
