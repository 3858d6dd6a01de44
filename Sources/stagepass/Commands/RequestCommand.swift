import ArgumentParser
import Foundation
import StagepassJOSE

/// `stagepass request`: a pipeline asks for a token for one run (RFC 8628 device grant), waits for approval, and
/// prints only the JWT on stdout. The approval link and code go to stderr.
struct RequestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "request",
        abstract: "Request a token for one pipeline run and wait for human approval (prints only the JWT).",
        discussion: """
            Without --client-secret-env the job proves who it is with its CI platform's OIDC token (no stored \
            secret): --ci-token-file, else GitHub Actions (ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN, needs \
            `permissions: id-token: write`), GitLab CI (the id_tokens variable named by --ci-token-env), or Buildkite \
            (`buildkite-agent oidc request-token`). The run id, commit and actor then come from the signed token.
            Exit status: 0 token printed; 1 denied, expired or refused; 2 usage or configuration error.
            """
    )
    @Option(help: "Broker base URL.") var broker: String
    @Option(help: "The pipeline's name in the policy (with a CI token: optional, the broker finds the matching rule).")
    var client: String?
    @Option(name: .customLong("client-secret-env"), help: "Environment variable holding the client secret.")
    var clientSecretEnv: String?
    @Option(name: .customLong("ci-token-file"), help: "A file holding the CI platform's OIDC token for this job.")
    var ciTokenFile: String?
    @Option(
        name: .customLong("ci-token-env"),
        help: "GitLab: the variable the job's id_tokens entry defines (default STAGEPASS_ID_TOKEN)."
    )
    var ciTokenEnv: String = "STAGEPASS_ID_TOKEN"
    @Option(
        name: .customLong("ci-audience"),
        help: "The audience to ask the CI platform for (the policy's ci_issuers audience; default: the broker URL)."
    )
    var ciAudience: String?
    @Option(help: "The deploy endpoint (aud).") var audience: String
    @Option(help: "The role.") var role: String
    @Option(help: "The stage.") var stage: String
    @Option(name: .customLong("run-id"), help: "The CI run id (with a client secret; a CI token carries its own).")
    var runId: String?
    @Option(help: "The commit the run builds.") var commit: String?
    @Option(
        name: .customLong("triggered-by"),
        help: "The user who triggered the run (default: $GITHUB_ACTOR, $GITLAB_USER_LOGIN or $BUILD_USER_ID)."
    )
    var triggeredBy: String?
    @Option(help: "Give up after this many seconds (default: when the request expires).") var timeout: Int64?
    @OptionGroup var dpop: DPoPOptions

    func validate() throws {
        if clientSecretEnv != nil {
            guard client != nil else { throw ValidationError("--client-secret-env needs --client") }
            guard runId != nil else { throw ValidationError("--run-id is required with --client-secret-env") }
        } else if runId != nil || commit != nil || triggeredBy != nil {
            throw ValidationError(
                "with a CI token the run id, commit and trigger come from the token: drop --run-id, --commit and "
                    + "--triggered-by, or authenticate with --client-secret-env"
            )
        }
    }

    func run() async throws {
        let env = ProcessInfo.processInfo.environment
        let api = BrokerClient(base: broker)
        let key = try dpop.makeKey()
        var fields = [("audience", audience), ("role", role), ("stage", stage)]
        // How the pipeline authenticates: its client secret, or its CI token (RFC 7523 §2.2 client assertion).
        var basic: (String, String)?
        if let clientSecretEnv {
            guard let client, let runId else {
                throw ValidationError("--client-secret-env needs --client and --run-id")
            }
            guard let secret = env[clientSecretEnv], !secret.isEmpty else {
                throw ValidationError("the environment variable \(clientSecretEnv) is empty or unset")
            }
            basic = (client, secret)
            let trigger = triggeredBy ?? env["GITHUB_ACTOR"] ?? env["GITLAB_USER_LOGIN"] ?? env["BUILD_USER_ID"]
            fields.append(("run_id", runId))
            if let commit { fields.append(("commit", commit)) }
            if let trigger, !trigger.isEmpty { fields.append(("triggered_by", trigger)) }
        } else {
            let token = try await CIToken.find(
                file: ciTokenFile,
                gitlabVariable: ciTokenEnv,
                audience: ciAudience ?? broker,
                environment: env
            )
            fields += [
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", token.value),
            ]
            if let client { fields.append(("client_id", client)) }
            printError("authenticating with the CI token from \(token.source)")
        }
        let (s1, j1) = try await api.postForm("/v1/device_authorization", fields, basic: basic)
        guard s1 == 200, let deviceCode = j1?["device_code"]?.stringValue,
            let userCode = j1?["user_code"]?.stringValue
        else {
            reportRefusal(s1, j1)
            throw ExitCode(1)
        }
        let pipeline = client ?? j1?["client_id"]?.stringValue ?? ""
        let run = runId ?? j1?["run_id"]?.stringValue ?? "?"
        var interval = max(1, j1?["interval"]?.intValue ?? 5)
        let expiresIn = j1?["expires_in"]?.intValue ?? 600
        if j1?["pre_approved"]?.boolValue == true {
            printError("approved by a standing delegation")
        } else {
            let link = j1?["verification_uri_complete"]?.stringValue ?? ""
            printError("Approval needed for \(role)@\(stage) (\(audience)), pipeline \(pipeline), run \(run).")
            printError("  code: \(userCode)")
            printError("  approve: stagepass approve \(userCode)   or open \(link)")
            printError("waiting up to \(timeout ?? expiresIn) s …")
        }
        let deadline = Date().addingTimeInterval(TimeInterval(timeout ?? expiresIn + 5))
        while true {
            var poll = [("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("device_code", deviceCode)]
            // A CI-authenticated request is polled by its device code and the public client_id (RFC 8628 §3.4).
            if basic == nil { poll.append(("client_id", pipeline)) }
            let (s2, j2) = try await api.postForm(
                "/v1/token",
                poll,
                basic: basic,
                // RFC 9449 §4.1: a fresh proof (new jti) for every token request, polls included.
                headers: try tokenRequestProof(key, base: broker)
            )
            if s2 == 200, let jwt = j2?["access_token"]?.stringValue {
                print(jwt)
                return
            }
            // RFC 8628 §3.5.
            switch j2?["error"]?.stringValue {
            case "authorization_pending": break
            case "slow_down": interval += 5
            default:
                reportRefusal(s2, j2)
                throw ExitCode(1)
            }
            guard Date().addingTimeInterval(TimeInterval(interval)) < deadline else {
                printError("error: timeout: no decision within the time allowed")
                throw ExitCode(1)
            }
            try await Task.sleep(for: .seconds(interval))
        }
    }
}
