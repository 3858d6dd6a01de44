import Testing

@testable import StagepassBroker

/// `ci_issuers`, `ci_guardrails` and a pipeline's `ci` rule (Specs/policy.md).
@Suite struct CIPolicyReaderTests {
    static let base = """
        audiences: {deploy-api: {}}
        stages:
          staging: {max_ttl: 30m, approval: delegated, max_window: 8h}
          production: {max_ttl: 5m, approval: per_run}
        roles:
          deployer: {groups: [release-managers], stages: [staging, production], audiences: [deploy-api]}
        ci_issuers:
          github:
            issuer: https://token.actions.githubusercontent.com
            audience: https://stagepass.example
            claims: github
          gitlab:
            issuer: https://gitlab.example.com
            audience: https://stagepass.example
            claims: gitlab
            max_token_lifetime: 2h
          buildkite:
            issuer: https://agent.buildkite.com
            audience: https://stagepass.example
            claims: buildkite
            jwks_file: /etc/stagepass/buildkite-jwks.json

        """

    @Test func issuersRulesAndGuardrailsReadIntoTheModel() async throws {
        let p = try AccessPolicy.load(
            yaml: Self.base + """
                ci_guardrails:
                  allowed_issuers: [github, gitlab]
                  protected_ref_stages: [production]
                pipelines:
                  web:
                    roles: [deployer]
                    ci:
                      issuer: github
                      repository: acme/web
                      repository_id: 123456
                      owner_id: "7890"
                      ref: [refs/heads/main, "refs/tags/v*"]
                      workflow_ref: "acme/web/.github/workflows/deploy.yml@*"
                  legacy:
                    ci: {issuer: gitlab, repository: "group/*", allow_names_only: true}

                """
        )
        #expect(p.ciIssuers["gitlab"]?.maxTokenLifetime == 7200)
        #expect(p.ciIssuers["buildkite"]?.jwksFile == "/etc/stagepass/buildkite-jwks.json")
        #expect(p.ciIssuers["github"]?.mapping == .github)
        #expect(p.ciGuardrails.allowedIssuers == ["github", "gitlab"])
        #expect(p.ciGuardrails.untrustedEvents == ["pull_request_target", "workflow_run"])
        #expect(p.ciGuardrails.protectedRefStages == ["production"])
        let rule = try #require(p.pipelines["web"]?.ci)
        #expect(rule.issuer == "github" && rule.claims[.repositoryId] == .exact("123456"))
        #expect(rule.claims[.ref] == .anyOf([.exact("refs/heads/main"), .glob("refs/tags/v*")]))
        #expect(p.pipelines["legacy"]?.ci?.allowNamesOnly == true)
    }

    struct Bad: Sendable, CustomTestStringConvertible {
        let name: String
        let yaml: String
        let line: Int
        /// Without the base policy (a section of its own).
        var alone = false
        let message: String
        var testDescription: String { name }
    }

    static let bad: [Bad] = [
        Bad(
            name: "names alone: the immutable ids are required",
            yaml: "pipelines:\n  web:\n    ci: {issuer: github, repository: acme/web}\n",
            line: 24,
            message: "repository_id is required for github"
        ),
        Bad(
            name: "an immutable id must be exact",
            yaml: "pipelines:\n  web:\n    ci: {issuer: github, repository_id: \"1*\", owner_id: \"2\"}\n",
            line: 24,
            message: "an immutable id must be exact"
        ),
        Bad(
            name: "unknown issuer",
            yaml: "pipelines:\n  web:\n    ci: {issuer: jenkins, repository: x}\n",
            line: 24,
            message: "unknown CI issuer 'jenkins'"
        ),
        Bad(
            name: "a claim the platform does not have",
            yaml:
                "pipelines:\n  web:\n    ci: {issuer: buildkite, repository_id: a, owner_id: b, actor: x}\n",
            line: 24,
            message: "has no such claim"
        ),
        Bad(
            name: "unknown claim vocabulary",
            yaml: "ci_issuers:\n  j: {issuer: https://j.example, audience: a, claims: jenkins}\n",
            line: 2,
            alone: true,
            message: "unknown claim vocabulary 'jenkins'"
        ),
        Bad(
            name: "plain http to a remote issuer",
            yaml: "ci_issuers:\n  j: {issuer: http://j.example, audience: a, claims: github}\n",
            line: 2,
            alone: true,
            message: "must be an https URL"
        ),
        Bad(
            name: "guardrail naming an unknown stage",
            yaml: "ci_guardrails: {protected_ref_stages: [prod]}\n",
            line: 22,
            message: "unknown stage 'prod'"
        ),
    ]

    @Test(arguments: bad) func errorsNameTheLine(_ c: Bad) async throws {
        do {
            _ = try AccessPolicy.load(yaml: (c.alone ? "" : Self.base) + c.yaml, source: "p.yaml")
            Issue.record("loaded")
        } catch let e as PolicyError {
            #expect(e.message.contains(c.message), "\(e.message)")
            #expect(e.line == c.line, "\(e)")
        }
    }
}
