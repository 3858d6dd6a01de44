public import StagepassJOSE
import StagepassVerify

/// The one claim vocabulary CI identities are judged in: each trusted CI issuer maps its own claims onto these
/// names (``CIClaimMapping``), and pipeline rules (``CIRule``) and guardrails speak only these.
public enum CIClaim: String, Sendable, Hashable, CaseIterable, Comparable {
    /// The repository (GitHub `repository`, GitLab `project_path`, Buildkite `pipeline_slug`).
    case repository
    /// The repository's immutable id (GitHub `repository_id`, GitLab `project_id`, Buildkite `pipeline_id`).
    case repositoryId = "repository_id"
    /// The owner (GitHub `repository_owner`, GitLab `namespace_path`, Buildkite `organization_slug`).
    case owner
    /// The owner's immutable id (GitHub `repository_owner_id`, GitLab `namespace_id`, Buildkite `organization_id`).
    case ownerId = "owner_id"
    /// The git ref the run builds (GitHub `ref`, GitLab `ref`, Buildkite `build_branch`).
    case ref
    /// Whether the platform protects that ref: `true` or `false` (GitHub and GitLab `ref_protected`).
    case refProtected = "ref_protected"
    /// The commit (GitHub and GitLab `sha`, Buildkite `build_commit`).
    case commit
    /// The workflow definition and its ref (GitHub `workflow_ref`, GitLab `ci_config_ref_uri`, Buildkite `step_key`).
    case workflowRef = "workflow_ref"
    /// The deployment environment (GitHub and GitLab `environment`).
    case environment
    /// What started the run (GitHub `event_name`, GitLab `pipeline_source`).
    case event
    /// The run (GitHub `run_id`, GitLab `pipeline_id`, Buildkite `build_number`).
    case runId = "run_id"
    /// The attempt of the run (GitHub `run_attempt`, GitLab `job_id`, Buildkite `job_id`).
    case runAttempt = "run_attempt"
    /// The platform user who started the run (GitHub `actor`, GitLab `user_login`).
    case actor

    public static func < (a: CIClaim, b: CIClaim) -> Bool { a.rawValue < b.rawValue }

    /// The claims that name something a third party could register again (a repository or an owner renamed or
    /// deleted, then taken): a rule on one of these must also pin the matching immutable id (``immutableId``).
    public var immutableId: CIClaim? {
        switch self {
        case .repository: .repositoryId
        case .owner: .ownerId
        default: nil
        }
    }
}

/// How one CI platform's token claims map onto ``CIClaim``: for each Stagepass claim, the platform's claim name.
public struct CIClaimMapping: Sendable, Hashable {
    /// The preset's name (`github`, `gitlab`, `buildkite`), or `custom`.
    public var name: String
    public var claims: [CIClaim: String]
    /// The immutable ids a pipeline rule must pin unless it opts out (`allow_names_only`).
    public var requiredIds: [CIClaim]

    public init(name: String, claims: [CIClaim: String], requiredIds: [CIClaim]) {
        self.name = name
        self.claims = claims
        self.requiredIds = requiredIds
    }

    /// GitHub Actions (docs.github.com, "About security hardening with OpenID Connect": the claims of the OIDC token).
    public static let github = CIClaimMapping(
        name: "github",
        claims: [
            .repository: "repository", .repositoryId: "repository_id", .owner: "repository_owner",
            .ownerId: "repository_owner_id", .ref: "ref", .refProtected: "ref_protected", .commit: "sha",
            .workflowRef: "workflow_ref", .environment: "environment", .event: "event_name", .runId: "run_id",
            .runAttempt: "run_attempt", .actor: "actor",
        ],
        requiredIds: [.repositoryId, .ownerId]
    )

    /// GitLab CI/CD (docs.gitlab.com, "OpenID Connect (OIDC) Authentication Using ID Tokens": token payload).
    public static let gitlab = CIClaimMapping(
        name: "gitlab",
        claims: [
            .repository: "project_path", .repositoryId: "project_id", .owner: "namespace_path",
            .ownerId: "namespace_id", .ref: "ref", .refProtected: "ref_protected", .commit: "sha",
            .workflowRef: "ci_config_ref_uri", .environment: "environment", .event: "pipeline_source",
            .runId: "pipeline_id", .runAttempt: "job_id", .actor: "user_login",
        ],
        requiredIds: [.repositoryId, .ownerId]
    )

    /// Buildkite (buildkite.com/docs, "OIDC with Buildkite": the token's claims; `organization_id` and
    /// `pipeline_id` are the optional claims `buildkite-agent oidc request-token --claim organization_id,pipeline_id`
    /// adds, and `stagepass request` asks for them).
    public static let buildkite = CIClaimMapping(
        name: "buildkite",
        claims: [
            .repository: "pipeline_slug", .repositoryId: "pipeline_id", .owner: "organization_slug",
            .ownerId: "organization_id", .ref: "build_branch", .commit: "build_commit", .workflowRef: "step_key",
            .runId: "build_number", .runAttempt: "job_id",
        ],
        requiredIds: [.repositoryId, .ownerId]
    )

    public static let presets: [String: CIClaimMapping] = [
        "github": .github, "gitlab": .gitlab, "buildkite": .buildkite,
    ]
}

/// A CI platform whose OIDC tokens Stagepass accepts as a pipeline's identity (the `ci_issuers` section).
public struct CIIssuerPolicy: Sendable, Hashable {
    /// The policy's name for the issuer (`github`).
    public var name: String
    /// The exact `iss` of its tokens; the discovery document is read from `issuer/.well-known/openid-configuration`.
    public var issuer: String
    /// The `aud` its tokens must carry for Stagepass (what the job asks its platform for).
    public var audience: String
    public var mapping: CIClaimMapping
    /// A pinned JWKS file (air-gapped): no discovery, no fetch; the file is re-read when a token names an unknown kid.
    public var jwksFile: String?
    /// Clock skew tolerated on `exp`, `nbf`, `iat` (seconds).
    public var leeway: Int64
    /// Longest accepted `exp - iat` (seconds): GitLab ties a token to the job's timeout.
    public var maxTokenLifetime: Int64
    /// Bound on every discovery or JWKS fetch (seconds).
    public var fetchTimeout: Int64
    /// The algorithm of RSA keys whose JWK carries no `alg`.
    public var rsaAlgorithm: JWSAlgorithm

    public init(
        name: String,
        issuer: String,
        audience: String,
        mapping: CIClaimMapping,
        jwksFile: String? = nil,
        leeway: Int64 = 30,
        maxTokenLifetime: Int64 = 3 * 3600,
        fetchTimeout: Int64 = 5,
        rsaAlgorithm: JWSAlgorithm = .RS256
    ) {
        self.name = name
        self.issuer = issuer
        self.audience = audience
        self.mapping = mapping
        self.jwksFile = jwksFile
        self.leeway = leeway
        self.maxTokenLifetime = maxTokenLifetime
        self.fetchTimeout = fetchTimeout
        self.rsaAlgorithm = rsaAlgorithm
    }
}

/// One condition of a pipeline rule on a mapped claim.
public enum CIMatcher: Sendable, Hashable, CustomStringConvertible {
    /// The claim must be exactly this value.
    case exact(String)
    /// The claim must match this glob: `*` is any run of characters (also none), everything else matches itself.
    case glob(String)
    /// The claim must be one of these values (each exact or a glob).
    case anyOf([CIMatcher])

    public func matches(_ value: String) -> Bool {
        switch self {
        case .exact(let v): return v == value
        case .glob(let p): return globMatch(p, value)
        case .anyOf(let all): return all.contains { $0.matches(value) }
        }
    }

    public var isExact: Bool {
        switch self {
        case .exact: true
        case .glob: false
        case .anyOf(let all): all.allSatisfy(\.isExact)
        }
    }

    public var description: String {
        switch self {
        case .exact(let v): "'\(v)'"
        case .glob(let p): "the glob '\(p)'"
        case .anyOf(let all): "one of [" + all.map(\.description).joined(separator: ", ") + "]"
        }
    }
}

/// How a pipeline is authenticated by its CI platform's token instead of a client secret (a pipeline's `ci`
/// member): the issuer, and a condition on each mapped claim named. Every named claim must be present and match.
public struct CIRule: Sendable, Hashable {
    /// The ``CIIssuerPolicy/name`` of the issuer.
    public var issuer: String
    public var claims: [CIClaim: CIMatcher]
    /// Opt-out of the immutable-id requirement (`allow_names_only: true`): names alone then identify the pipeline.
    public var allowNamesOnly: Bool

    public init(issuer: String, claims: [CIClaim: CIMatcher], allowNamesOnly: Bool = false) {
        self.issuer = issuer
        self.claims = claims
        self.allowNamesOnly = allowNamesOnly
    }
}

/// Server-wide limits on CI identities, whatever a pipeline rule says (the `ci_guardrails` section).
public struct CIGuardrails: Sendable, Hashable {
    /// The issuers whose tokens are accepted at all (nil: every issuer of `ci_issuers`).
    public var allowedIssuers: Set<String>?
    /// Values of the `event` claim that are never trusted: GitHub's `pull_request_target` and `workflow_run` run
    /// with the base repository's rights on behalf of code from elsewhere.
    public var untrustedEvents: Set<String>
    /// Stages whose tokens need a run on a ref its platform protects (`ref_protected` is `true`).
    public var protectedRefStages: Set<String>

    public init(
        allowedIssuers: Set<String>? = nil,
        untrustedEvents: Set<String> = CIGuardrails.defaultUntrustedEvents,
        protectedRefStages: Set<String> = []
    ) {
        self.allowedIssuers = allowedIssuers
        self.untrustedEvents = untrustedEvents
        self.protectedRefStages = protectedRefStages
    }

    public static let defaultUntrustedEvents: Set<String> = ["pull_request_target", "workflow_run"]
}
