import Foundation
import StagepassBroker
import Testing

/// The policy file (Specs/policy.md): the shipped example, every error class with its line, durations, and a full
/// custom policy read into the model.
@Suite("Policy file")
struct PolicyTests {
    // MARK: The shipped example

    @Test func exampleHasTheDocumentedProperties() async throws {
        let p = try AccessPolicy.example()
        #expect(p.audiences.keys.sorted() == ["deploy-api"])
        #expect(p.stages.keys.sorted() == ["build", "production", "staging"])

        let devs = p.roles(forGroups: ["developers"])
        #expect(devs.map(\.name) == ["builder"])
        #expect(devs.first?.stages == ["build", "staging"])
        #expect(devs.first?.audiences == ["deploy-api"])
        let managers = p.roles(forGroups: ["release-managers"])
        #expect(managers.map(\.name) == ["deployer"])
        #expect(managers.first?.stages == ["staging", "production"])
        #expect(managers.first?.audiences == ["deploy-api"])

        let production = try #require(p.stages["production"])
        #expect(production.approval == .perRun)
        #expect(production.mfaMaxAge == 300)
        #expect(production.maxTTL == 300)
        #expect(production.approvers >= 1)
        // Production approvals need a phishing-resistant factor (a security key).
        #expect(production.factorsForApproval == [.webauthn])
        #expect(p.auth.factors.contains(.webauthn))
        #expect(p.stages["staging"]?.approval == .delegated(maxWindow: 8 * 3600))
        #expect(p.stages["build"]?.approval == .session)

        #expect(p.isAdmin(groups: ["admins"]))
        #expect(!p.isAdmin(groups: ["developers", "release-managers"]))
        #expect(p.stages.values.allSatisfy { $0.maxTTL <= p.tokens.maxTTL })
        // The sign-in part is today's default, so serving without --policy keeps sign-in behaviour.
        #expect(p.auth == .default)
    }

    @Test func exampleIsWhatTheDocsShow() async throws {
        // Specs/policy.md embeds the example verbatim; keep them in step.
        let spec = try String(contentsOf: Self.repoRoot.appendingPathComponent("Specs/policy.md"), encoding: .utf8)
        #expect(spec.contains(AccessPolicy.exampleYAML.trimmingCharacters(in: .newlines)))
    }

    @Test func exampleIsTheShippedResourceFile() async throws {
        // Compiled into the module from Sources/StagepassBroker/Resources, byte for byte.
        let path = "Sources/StagepassBroker/Resources/example-policy.yaml"
        let file = try String(contentsOf: Self.repoRoot.appendingPathComponent(path), encoding: .utf8)
        #expect(AccessPolicy.exampleYAML == file)
        #expect(AccessPolicy.exampleYAML.hasPrefix("# Stagepass example policy"))
        #expect(try AccessPolicy.load(yaml: file) == AccessPolicy.example())
    }

    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    // MARK: A full custom policy

    @Test func fullCustomPolicyReadsIntoTheModel() async throws {
        let yaml = """
            tokens:
              max_ttl: 2h
              status_list_ttl: 30
              status_list_lifetime: 30m
              status_list_size: 65536
              request_lifetime: 15m
              poll_interval: 10s
              admin_mfa_max_age: 2m
              admin_groups: [ops, security]
            mfa:
              exempt_groups: [robots]
              factors: [totp, backup, webauthn]
              group_factors:
                ops: [totp, webauthn]
              first_enrolment_with_password: true
            sessions: {idle_seconds: 15m, absolute_seconds: 8h, pending_seconds: 120}
            throttle:
              free_failures: 0
              base_delay_seconds: 1
              max_delay_seconds: 1h
              lockout_after_factor_failures: 5
              global_failures: 200
              global_window_seconds: 5m
              hash_queue_per_worker: 2
              hash_max_wait_seconds: 3s
            audiences:
              deploy-api: {description: "Deploy API"}
              https://registry.example/v2: {}
              metrics:
            stages:
              build: {max_ttl: 1h, approval: session}
              staging: {max_ttl: 30m, mfa_max_age: 12h, approval: delegated, max_window: 8h}
              production:
                max_ttl: 5m
                mfa_max_age: 5m
                factors: [totp, webauthn]
                approval: per_run
                approvers: 2
                allow_self_approval: false
              canary: {approval: per_run}
            roles:
              builder: {groups: [developers], stages: [build, staging], audiences: [deploy-api, metrics]}
              deployer:
                groups: [release-managers, ops]
                stages: [staging, production, canary]
                audiences: [deploy-api, https://registry.example/v2]
            pipelines:
              acme-web: {roles: [builder, deployer]}
              acme-api: {roles: [deployer], stages: [production], audiences: [deploy-api]}
              any:
            """
        let p = try AccessPolicy.load(yaml: yaml, source: "custom.yaml")
        let expected = AccessPolicy(
            auth: AuthPolicy(
                exemptGroups: ["robots"],
                factors: [.totp, .backup, .webauthn],
                groupFactors: ["ops": [.totp, .webauthn]],
                idleSeconds: 900,
                absoluteSeconds: 8 * 3600,
                pendingSeconds: 120,
                throttle: .init(
                    freeFailures: 0,
                    baseDelay: 1,
                    maxDelay: 3600,
                    lockoutAfterFactorFailures: 5,
                    globalFailures: 200,
                    globalWindow: 300,
                    hashQueuePerWorker: 2,
                    hashMaxWait: 3
                ),
                firstEnrolmentWithPassword: true
            ),
            tokens: TokenSettings(
                maxTTL: 7200,
                statusListTTL: 30,
                statusListLifetime: 1800,
                statusListSize: 65536,
                requestLifetime: 900,
                pollInterval: 10,
                adminMFAMaxAge: 120,
                adminGroups: ["ops", "security"]
            ),
            roles: [
                "builder": RolePolicy(
                    name: "builder",
                    groups: ["developers"],
                    stages: ["build", "staging"],
                    audiences: ["deploy-api", "metrics"]
                ),
                "deployer": RolePolicy(
                    name: "deployer",
                    groups: ["release-managers", "ops"],
                    stages: ["staging", "production", "canary"],
                    audiences: ["deploy-api", "https://registry.example/v2"]
                ),
            ],
            stages: [
                "build": StagePolicy(name: "build", maxTTL: 3600, approval: .session),
                "staging": StagePolicy(
                    name: "staging",
                    maxTTL: 1800,
                    mfaMaxAge: 12 * 3600,
                    approval: .delegated(maxWindow: 8 * 3600)
                ),
                "production": StagePolicy(
                    name: "production",
                    maxTTL: 300,
                    mfaMaxAge: 300,
                    factors: [.totp, .webauthn],
                    approval: .perRun,
                    approvers: 2,
                    allowSelfApproval: false
                ),
                // Defaults: max_ttl = tokens.max_ttl, every factor kind, one approver, self-approval allowed.
                "canary": StagePolicy(name: "canary", maxTTL: 7200, approval: .perRun),
            ],
            audiences: [
                "deploy-api": AudiencePolicy(name: "deploy-api", description: "Deploy API"),
                "https://registry.example/v2": AudiencePolicy(name: "https://registry.example/v2"),
                "metrics": AudiencePolicy(name: "metrics"),
            ],
            pipelines: [
                "acme-web": PipelinePolicy(name: "acme-web", roles: ["builder", "deployer"]),
                "acme-api": PipelinePolicy(
                    name: "acme-api",
                    roles: ["deployer"],
                    stages: ["production"],
                    audiences: ["deploy-api"]
                ),
                "any": PipelinePolicy(name: "any"),
            ]
        )
        #expect(p == expected)
    }

    @Test func omittedSectionsTakeTheDefaults() async throws {
        let p = try AccessPolicy.load(yaml: "stages: {build: {approval: session}}\nroles:\npipelines: {}\n")
        #expect(p.tokens == TokenSettings())
        #expect(p.auth == .default)
        #expect(p.stages["build"] == StagePolicy(name: "build", maxTTL: TokenSettings().maxTTL, approval: .session))
        #expect(p.roles.isEmpty && p.pipelines.isEmpty && p.audiences.isEmpty)
    }

    // MARK: Durations

    @Test(
        arguments: [
            ("300", 300), ("300s", 300), ("5m", 300), ("8h", 28_800), ("1d", 86_400), ("1h30m", 5400), ("2m5s", 125),
            ("0", 0), ("3650d", 3650 * 86_400),
        ] as [(String, Int64)]
    )
    func durationsParse(text: String, seconds: Int64) {
        #expect(PolicyDuration.parse(text) == seconds)
    }

    @Test(arguments: ["", "-5m", "1.5h", "5 m", "5M", "m", "5w", "h1", "3651d", "99999999999999999999", "5m5"])
    func malformedDurationsDoNotParse(text: String) {
        #expect(PolicyDuration.parse(text) == nil)
    }

    @Test func durationsFormatShortest() async {
        #expect(PolicyDuration.format(300) == "5m")
        #expect(PolicyDuration.format(5400) == "1h30m")
        #expect(PolicyDuration.format(86_461) == "1d1m1s")
        #expect(PolicyDuration.format(0) == "0s")
    }

    @Test func durationFormsAreEquivalentInAFile() async throws {
        for form in ["300", "300s", "5m", "\"5m\"", "'300'"] {
            let p = try AccessPolicy.load(yaml: "stages:\n  s: {max_ttl: \(form), approval: session}\n")
            #expect(p.stages["s"]?.maxTTL == 300, "\(form)")
        }
    }

    // MARK: Errors name the line

    struct Bad: Sendable, CustomTestStringConvertible {
        let name: String
        let yaml: String
        let line: Int
        let says: String
        var testDescription: String { name }
    }

    static let bad: [Bad] = [
        Bad(
            name: "malformed YAML",
            yaml: "stages:\n  build: {approval: session\nroles: {}\n",
            line: 3,
            says: "malformed YAML"
        ),
        Bad(name: "tab indentation", yaml: "stages:\n\tbuild: {}\n", line: 2, says: "malformed YAML"),
        Bad(name: "duplicate key", yaml: "audiences:\n  a: {}\n  b: {}\n  a: {}\n", line: 2, says: "duplicate key 'a'"),
        Bad(name: "empty document", yaml: "# only a comment\n", line: 1, says: "empty"),
        Bad(name: "not a mapping", yaml: "- stages\n", line: 1, says: "must be a mapping of sections"),
        Bad(
            name: "unknown section",
            yaml: "tokens: {}\n\nrolse:\n  a: {}\n",
            line: 3,
            says: "unknown section 'rolse'; did you mean 'roles'?"
        ),
        Bad(
            name: "unknown token key",
            yaml: "tokens:\n  max_ttl: 1h\n  maxttl: 1h\n",
            line: 3,
            says: "unknown key 'maxttl' in tokens"
        ),
        Bad(name: "unknown mfa key", yaml: "mfa:\n  exempt: [robots]\n", line: 2, says: "unknown key 'exempt' in mfa"),
        Bad(
            name: "unknown stage key",
            yaml: "stages:\n  build:\n    approval: session\n    max_tll: 1h\n",
            line: 4,
            says: "did you mean 'max_ttl'"
        ),
        Bad(
            name: "unknown pipeline key",
            yaml: "pipelines:\n  p:\n    role: [x]\n",
            line: 3,
            says: "unknown key 'role' in pipelines.p"
        ),
        Bad(
            name: "section of the wrong type",
            yaml: "stages: [build]\n",
            line: 1,
            says: "stages: expected a mapping, found a list"
        ),
        Bad(
            name: "stage of the wrong type",
            yaml: "stages:\n  build: 5\n",
            line: 2,
            says: "stages.build: expected a mapping"
        ),
        Bad(
            name: "duration of the wrong type",
            yaml: "tokens:\n  max_ttl: [1h]\n",
            line: 2,
            says: "expected a duration"
        ),
        Bad(name: "empty duration", yaml: "tokens:\n  max_ttl:\n  poll_interval: 5s\n", line: 2, says: "found nothing"),
        Bad(name: "malformed duration", yaml: "tokens:\n  max_ttl: 1.5h\n", line: 2, says: "found '1.5h'"),
        Bad(name: "zero duration", yaml: "sessions:\n  idle_seconds: 0\n", line: 2, says: "must be positive"),
        Bad(name: "negative duration", yaml: "tokens:\n  poll_interval: -5s\n", line: 2, says: "must be positive"),
        Bad(name: "huge duration", yaml: "tokens:\n  max_ttl: 100000d\n", line: 2, says: "too long"),
        Bad(
            name: "quoted integer",
            yaml: "throttle:\n  free_failures: \"3\"\n",
            line: 2,
            says: "expected an integer, found the string '3'"
        ),
        Bad(name: "negative integer", yaml: "throttle:\n  free_failures: -1\n", line: 2, says: "must be at least 0"),
        Bad(name: "no global budget", yaml: "throttle:\n  global_failures: 0\n", line: 2, says: "must be at least 1"),
        Bad(
            name: "negative hash queue",
            yaml: "throttle:\n  hash_queue_per_worker: -1\n",
            line: 2,
            says: "must be at least 0"
        ),
        Bad(
            name: "lockout zero",
            yaml: "throttle:\n  lockout_after_factor_failures: 0\n",
            line: 2,
            says: "must be at least 1"
        ),
        Bad(
            name: "yes is not a boolean",
            yaml: "mfa:\n  first_enrolment_with_password: yes\n",
            line: 2,
            says: "expected true or false"
        ),
        Bad(
            name: "list of the wrong type",
            yaml: "tokens:\n  admin_groups: admins\n",
            line: 2,
            says: "expected a list of group names"
        ),
        Bad(
            name: "invalid group name",
            yaml: "tokens:\n  admin_groups:\n    - admins\n    - release managers\n",
            line: 4,
            says: "not a valid group name"
        ),
        Bad(
            name: "unknown factor (block list item)",
            yaml: "mfa:\n  factors:\n    - totp\n    - sms\n",
            line: 4,
            says: "unknown factor 'sms'"
        ),
        Bad(name: "no factor", yaml: "mfa:\n  factors: []\n", line: 2, says: "at least one factor"),
        Bad(
            name: "group factors outside mfa.factors",
            yaml: "mfa:\n  factors: [totp]\n  group_factors:\n    ops: [backup]\n",
            line: 4,
            says: "members of 'ops' could never sign in"
        ),
        Bad(
            name: "status list ttl over lifetime",
            yaml: "tokens:\n  status_list_lifetime: 1m\n  status_list_ttl: 2m\n",
            line: 3,
            says: "must not exceed"
        ),
        Bad(
            name: "status list size not a power of two",
            yaml: "tokens:\n  max_ttl: 1h\n  status_list_size: 1000000\n",
            line: 3,
            says: "tokens.status_list_size: must be a power of two from 1024 (2^10) to 16777216 (2^24), found 1000000"
        ),
        Bad(
            name: "status list size too small",
            yaml: "tokens:\n  status_list_size: 512\n",
            line: 2,
            says: "must be a power of two from 1024"
        ),
        Bad(
            name: "status list size too large",
            yaml: "tokens:\n  status_list_size: 33554432\n",
            line: 2,
            says: "found 33554432"
        ),
        Bad(
            name: "status list size not an integer",
            yaml: "tokens:\n  status_list_size: 2^20\n",
            line: 2,
            says: "tokens.status_list_size: expected an integer"
        ),
        Bad(
            name: "poll interval over request lifetime",
            yaml: "tokens:\n  poll_interval: 11m\n",
            line: 2,
            says: "must not exceed tokens.request_lifetime (10m)"
        ),
        Bad(
            name: "throttle max below base",
            yaml: "throttle:\n  base_delay_seconds: 1m\n  max_delay_seconds: 30s\n",
            line: 3,
            says: "must not be shorter"
        ),
        Bad(
            name: "stage without approval",
            yaml: "tokens: {}\nstages:\n  build:\n    max_ttl: 1h\n",
            line: 3,
            says: "stages.build: missing 'approval'"
        ),
        Bad(
            name: "unknown approval mode",
            yaml: "stages:\n  build:\n    max_ttl: 1h\n    approval: weekly\n",
            line: 4,
            says: "unknown approval mode 'weekly'"
        ),
        Bad(
            name: "delegated without max_window",
            yaml: "stages:\n  staging:\n    approval: delegated\n",
            line: 3,
            says: "needs 'max_window'"
        ),
        Bad(
            name: "max_window without delegated",
            yaml: "stages:\n  build:\n    approval: per_run\n    max_window: 8h\n",
            line: 4,
            says: "only meaningful with approval: delegated"
        ),
        Bad(
            name: "non-positive max_window",
            yaml: "stages:\n  s:\n    approval: delegated\n    max_window: 0\n",
            line: 4,
            says: "must be positive"
        ),
        Bad(
            name: "approvers below 1",
            yaml: "stages:\n  p:\n    approval: per_run\n    approvers: 0\n",
            line: 4,
            says: "must be at least 1"
        ),
        Bad(
            name: "stage max_ttl over tokens.max_ttl",
            yaml: "tokens: {max_ttl: 10m}\nstages:\n  p:\n    max_ttl: 1h\n    approval: per_run\n",
            line: 4,
            says: "exceeds tokens.max_ttl (10m)"
        ),
        Bad(
            name: "stage factors outside mfa.factors",
            yaml: "mfa: {factors: [totp]}\nstages:\n  p:\n    approval: per_run\n    factors: [webauthn]\n",
            line: 5,
            says: "no one could reach stage 'p'"
        ),
        Bad(
            name: "approval factors outside mfa.factors",
            yaml: "mfa: {factors: [totp]}\nstages:\n  p:\n    approval: per_run\n    approval_factors: [webauthn]\n",
            line: 5,
            says: "no one could approve stage 'p'"
        ),
        Bad(
            name: "role naming an unknown stage",
            yaml: Self.base
                + "roles:\n  r:\n    groups: [g]\n    stages:\n      - build\n      - prod\n    audiences: [api]\n",
            line: 12,
            says: "roles.r.stages: unknown stage 'prod' (defined: build, production)"
        ),
        Bad(
            name: "role naming an unknown audience",
            yaml: Self.base + "roles:\n  r: {groups: [g], stages: [build], audiences: [web]}\n",
            line: 8,
            says: "unknown audience 'web'"
        ),
        Bad(
            name: "role without groups",
            yaml: Self.base + "roles:\n  r:\n    stages: [build]\n    audiences: [api]\n",
            line: 8,
            says: "roles.r: missing 'groups'"
        ),
        Bad(
            name: "role with no stage",
            yaml: Self.base + "roles:\n  r:\n    groups: [g]\n    stages: []\n    audiences: [api]\n",
            line: 10,
            says: "must name at least one stage"
        ),
        Bad(
            name: "pipeline naming an unknown role",
            yaml: Self.base + Self.roles + "pipelines:\n  p:\n    roles: [builder, admin]\n",
            line: 13,
            says: "unknown role 'admin'"
        ),
        Bad(
            name: "pipeline naming an unknown stage",
            yaml: Self.base + Self.roles + "pipelines:\n  p:\n    stages: [qa]\n",
            line: 13,
            says: "unknown stage 'qa'"
        ),
        Bad(
            name: "pipeline naming an unknown audience",
            yaml: Self.base + Self.roles + "pipelines:\n  p: {audiences: [web]}\n",
            line: 12,
            says: "unknown audience 'web'"
        ),
        Bad(
            name: "pipeline stage its roles cannot reach",
            yaml: Self.base + Self.roles + "pipelines:\n  p:\n    roles: [builder]\n    stages: [production]\n",
            line: 14,
            says: "stage 'production' is not reachable by its roles (builder)"
        ),
        Bad(
            name: "pipeline of the wrong type",
            yaml: Self.base + Self.roles + "pipelines:\n  p: [builder]\n",
            line: 12,
            says: "pipelines.p: expected a mapping"
        ),
    ]

    /// Lines 1–6: two stages and one audience.
    static let base = """
        stages:
          build: {approval: session}
          production: {approval: per_run, max_ttl: 5m}
        audiences:
          api: {}
          # spare line

        """
    /// Lines 7–10 (after ``base``): roles `builder` (build) and `deployer` (production).
    static let roles = """
        roles:
          builder: {groups: [dev], stages: [build], audiences: [api]}
          deployer: {groups: [ops], stages: [production], audiences: [api]}
          # spare line

        """

    @Test(arguments: bad)
    func errorNamesTheLine(_ c: Bad) throws {
        do {
            _ = try AccessPolicy.load(yaml: c.yaml, source: "p.yaml")
            Issue.record("accepted: \(c.name)")
        } catch let error as PolicyError {
            #expect(error.file == "p.yaml")
            #expect(error.line == c.line, "\(error)")
            #expect(error.message.contains(c.says), "\(error)")
            #expect(error.description.hasPrefix("p.yaml:\(c.line): "))
        }
    }

    @Test func fileErrorsNameTheFile() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("policy.yaml").path
        try Data("stages:\n  build: {approval: sometimes}\n".utf8).write(to: URL(fileURLWithPath: path))
        #expect(
            throws: PolicyError(
                file: path,
                line: 2,
                message:
                    "stages.build.approval: unknown approval mode 'sometimes' (expected one of: per_run, delegated, session)"
            )
        ) {
            try AccessPolicy.load(file: path)
        }
        let missing = dir.appendingPathComponent("missing.yaml").path
        do {
            _ = try AccessPolicy.load(file: missing)
            Issue.record("a missing file loaded")
        } catch let error as PolicyError {
            #expect(error.file == missing && error.line == nil)
        }
    }

    @Test func authPolicyLoadKeepsItsErrorTypeAndNamesTheLine() async throws {
        #expect(try AuthPolicy.load(yaml: "sessions:\n  idle_seconds: 10m\n").idleSeconds == 600)
        do {
            _ = try AuthPolicy.load(yaml: "mfa:\n  factors: [totp]\n  exempt_groupz: []\n")
            Issue.record("accepted a misspelt key")
        } catch let error as BrokerError {
            #expect(error == .invalidRequest)
            #expect(error.detail.contains(":3: unknown key 'exempt_groupz' in mfa"), "\(error.detail)")
        }
    }
}
