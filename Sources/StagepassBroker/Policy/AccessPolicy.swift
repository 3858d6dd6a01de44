import Foundation
import Synchronization

/// How pipeline requests for a stage are authorised (the stage's `approval` member).
public enum ApprovalMode: Sendable, Hashable {
    /// Every pipeline run needs `approvers` distinct humans to approve that one run (RFC 8628 device-grant shape).
    /// A direct token exchange naming a pipeline is refused for such a stage.
    case perRun
    /// A human may grant a standing delegation (pipeline, stage) for at most `maxWindow` seconds; runs inside a
    /// live delegation are approved by it. Without one, runs need per-run approval.
    case delegated(maxWindow: Int64)
    /// An MFA session that satisfies the stage is enough: a direct exchange may name a pipeline, and pipeline runs
    /// still need one approval (or more, `approvers`).
    case session

    /// The YAML spelling: `per_run`, `delegated`, `session`.
    public var name: String {
        switch self {
        case .perRun: return "per_run"
        case .delegated: return "delegated"
        case .session: return "session"
        }
    }
}

/// A role: which groups hold it, and which stages and audiences it may reach.
public struct RolePolicy: Sendable, Hashable {
    public var name: String
    /// A user holds the role when they are in at least one of these groups.
    public var groups: Set<String>
    public var stages: Set<String>
    public var audiences: Set<String>

    public init(name: String, groups: Set<String>, stages: Set<String>, audiences: Set<String>) {
        self.name = name
        self.groups = groups
        self.stages = stages
        self.audiences = audiences
    }
}

/// A stage (build, staging, production, …) and the rules for tokens that name it.
public struct StagePolicy: Sendable, Hashable {
    public var name: String
    /// Largest token lifetime for this stage, seconds.
    public var maxTTL: Int64
    /// The second factor must have been proved at most this many seconds ago (RFC 9470 `max_age`); nil: any age
    /// within the session.
    public var mfaMaxAge: Int64?
    /// The factor kinds whose use counts for this stage (the session's `amr` must contain one of them).
    public var factors: Set<FactorKind>
    /// The factor kinds that count when a human approves a pipeline run for this stage (default: ``factors``).
    /// `[webauthn]` makes approvals phishing-resistant (a security key bound to the request).
    public var approvalFactors: Set<FactorKind>?
    public var approval: ApprovalMode
    /// Distinct humans who must approve a pipeline run (at least 1).
    public var approvers: Int
    /// Whether the human who triggered a run (the request's `triggered_by`) may approve it.
    public var allowSelfApproval: Bool
    /// Whether every token for this stage must be sender-constrained (DPoP, RFC 9449): a token request without a
    /// valid `DPoP` proof is refused `invalid_dpop_proof`.
    public var requireDPoP: Bool

    /// The factors that count for approving a run.
    public var factorsForApproval: Set<FactorKind> { approvalFactors ?? factors }

    public init(
        name: String,
        maxTTL: Int64,
        mfaMaxAge: Int64? = nil,
        factors: Set<FactorKind> = [.totp, .backup, .webauthn],
        approval: ApprovalMode = .session,
        approvers: Int = 1,
        allowSelfApproval: Bool = true,
        requireDPoP: Bool = false
    ) {
        self.name = name
        self.maxTTL = maxTTL
        self.mfaMaxAge = mfaMaxAge
        self.factors = factors
        self.approval = approval
        self.approvers = approvers
        self.allowSelfApproval = allowSelfApproval
        self.requireDPoP = requireDPoP
    }
}

/// A deploy endpoint tokens may be issued for (the `aud` claim).
public struct AudiencePolicy: Sendable, Hashable {
    public var name: String
    public var description: String?

    public init(name: String, description: String? = nil) {
        self.name = name
        self.description = description
    }
}

/// A registered pipeline client, as the policy allows it (its secret lives in the store, see `stagepass clients`).
/// Empty sets mean "whatever the role allows".
public struct PipelinePolicy: Sendable, Hashable {
    public var name: String
    public var roles: Set<String>
    public var stages: Set<String>
    public var audiences: Set<String>
    /// Whether every token this pipeline gets must be sender-constrained (DPoP, RFC 9449), whatever the stage.
    public var requireDPoP: Bool

    public init(
        name: String,
        roles: Set<String> = [],
        stages: Set<String> = [],
        audiences: Set<String> = [],
        requireDPoP: Bool = false
    ) {
        self.name = name
        self.roles = roles
        self.stages = stages
        self.audiences = audiences
        self.requireDPoP = requireDPoP
    }
}

/// Global token settings (the `tokens` section).
public struct TokenSettings: Sendable, Hashable {
    /// The global lifetime cap, seconds (every token lives at most this long, whatever the stage says).
    public var maxTTL: Int64
    /// Status list tokens: `ttl` claim (how long a verifier may cache a list), seconds.
    public var statusListTTL: Int64
    /// Status list tokens: `exp` = `iat` + this, seconds.
    public var statusListLifetime: Int64
    /// Entries (one bit each) of every status list created from now on: a power of two within
    /// ``statusListSizeBounds``. Lists keep the size they were created with (``StatusListRecord``).
    public var statusListSize: Int64
    /// Lifetime of a pipeline approval request (`device_code` / `user_code`), seconds (RFC 8628 §3.2 `expires_in`).
    public var requestLifetime: Int64
    /// Minimum seconds between two polls of one request (RFC 8628 §3.2 `interval`).
    public var pollInterval: Int64
    /// Admin actions need a factor proved at most this many seconds ago (step-up).
    public var adminMFAMaxAge: Int64
    /// Groups whose members are administrators.
    public var adminGroups: Set<String>

    public init(
        maxTTL: Int64 = 3600,
        statusListTTL: Int64 = 60,
        statusListLifetime: Int64 = 3600,
        statusListSize: Int64 = 1 << 20,
        requestLifetime: Int64 = 600,
        pollInterval: Int64 = 5,
        adminMFAMaxAge: Int64 = 300,
        adminGroups: Set<String> = ["admins"]
    ) {
        self.maxTTL = maxTTL
        self.statusListTTL = statusListTTL
        self.statusListLifetime = statusListLifetime
        self.statusListSize = statusListSize
        self.requestLifetime = requestLifetime
        self.pollInterval = pollInterval
        self.adminMFAMaxAge = adminMFAMaxAge
        self.adminGroups = adminGroups
    }

    /// The sizes `tokens.status_list_size` may take: 2^10 (128 bytes of bits) to 2^24 (2 MiB, the largest list a
    /// Stagepass verifier inflates).
    public static let statusListSizeBounds: ClosedRange<Int64> = (1 << 10)...(1 << 24)
}

/// The whole policy file: authentication (``AuthPolicy``: `mfa`, `sessions`, `throttle`), `tokens`, `roles`,
/// `stages`, `audiences` and `pipelines`. See `Specs/policy.md` for the YAML form.
public struct AccessPolicy: Sendable, Hashable {
    public var auth: AuthPolicy
    public var tokens: TokenSettings
    public var roles: [String: RolePolicy]
    public var stages: [String: StagePolicy]
    public var audiences: [String: AudiencePolicy]
    public var pipelines: [String: PipelinePolicy]
    /// CI identities mapped to users (`identities`), keyed by the normalised identity (``Identity/normalize(_:)``).
    public var identities: [String: String]

    public init(
        auth: AuthPolicy = .default,
        tokens: TokenSettings = .init(),
        roles: [String: RolePolicy] = [:],
        stages: [String: StagePolicy] = [:],
        audiences: [String: AudiencePolicy] = [:],
        pipelines: [String: PipelinePolicy] = [:],
        identities: [String: String] = [:]
    ) {
        self.identities = identities
        self.auth = auth
        self.tokens = tokens
        self.roles = roles
        self.stages = stages
        self.audiences = audiences
        self.pipelines = pipelines
    }

    /// The roles a user in `groups` holds.
    public func roles(forGroups groups: [String]) -> [RolePolicy] {
        roles.values.filter { !$0.groups.isDisjoint(with: groups) }.sorted { $0.name < $1.name }
    }

    /// Whether a user in `groups` is an administrator.
    public func isAdmin(groups: [String]) -> Bool { !tokens.adminGroups.isDisjoint(with: groups) }
}

/// The policy in force, replaceable at run time (`policy reload`) without restarting. It is the one owner of the
/// policy: sign-in, throttles, token exchange, approvals and pages all read ``current`` per call, so a reload applies
/// every section at once.
public final class PolicyHolder: Sendable {
    private let value: Mutex<AccessPolicy>
    /// The file the policy was read from (nil: the shipped example).
    public let file: String?

    public init(_ policy: AccessPolicy, file: String? = nil) {
        value = Mutex(policy)
        self.file = file
    }

    public var current: AccessPolicy { value.withLock { $0 } }
    public func replace(_ p: AccessPolicy) { value.withLock { $0 = p } }
}

/// Who is who across systems: user names and CI identities are compared after one normalisation.
public enum Identity {
    /// Unicode NFC, surrounding white space removed, lower case: `" Rita"`, `"rita "` and `"RITA"` are one person.
    public static func normalize(_ s: String) -> String {
        s.precomposedStringWithCanonicalMapping.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
    }
}
