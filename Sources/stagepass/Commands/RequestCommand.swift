import ArgumentParser
import Foundation
import StagepassJOSE

/// `stagepass request`: a pipeline asks for a token for one run (RFC 8628 device grant), waits for approval, and
/// prints only the JWT on stdout. The approval link and code go to stderr.
struct RequestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "request",
        abstract: "Request a token for one pipeline run and wait for human approval (prints only the JWT).",
        discussion: "Exit status: 0 token printed; 1 denied, expired or refused; 2 usage or configuration error."
    )
    @Option(help: "Broker base URL.") var broker: String
    @Option(help: "The registered pipeline client name.") var client: String
    @Option(name: .customLong("client-secret-env"), help: "Environment variable holding the client secret.")
    var clientSecretEnv: String
    @Option(help: "The deploy endpoint (aud).") var audience: String
    @Option(help: "The role.") var role: String
    @Option(help: "The stage.") var stage: String
    @Option(name: .customLong("run-id"), help: "The CI run id.") var runId: String
    @Option(help: "The commit the run builds.") var commit: String?
    @Option(
        name: .customLong("triggered-by"),
        help: "The user who triggered the run (default: $GITHUB_ACTOR, $GITLAB_USER_LOGIN or $BUILD_USER_ID)."
    )
    var triggeredBy: String?
    @Option(help: "Give up after this many seconds (default: when the request expires).") var timeout: Int64?
    @OptionGroup var dpop: DPoPOptions

    func run() async throws {
        let env = ProcessInfo.processInfo.environment
        guard let secret = env[clientSecretEnv], !secret.isEmpty else {
            throw ValidationError("the environment variable \(clientSecretEnv) is empty or unset")
        }
        let trigger = triggeredBy ?? env["GITHUB_ACTOR"] ?? env["GITLAB_USER_LOGIN"] ?? env["BUILD_USER_ID"]
        let api = BrokerClient(base: broker)
        let key = try dpop.makeKey()
        var fields = [("audience", audience), ("role", role), ("stage", stage), ("run_id", runId)]
        if let commit { fields.append(("commit", commit)) }
        if let trigger, !trigger.isEmpty { fields.append(("triggered_by", trigger)) }
        let (s1, j1) = try await api.postForm("/v1/device_authorization", fields, basic: (client, secret))
        guard s1 == 200, let deviceCode = j1?["device_code"]?.stringValue,
            let userCode = j1?["user_code"]?.stringValue
        else {
            reportRefusal(s1, j1)
            throw ExitCode(1)
        }
        var interval = max(1, j1?["interval"]?.intValue ?? 5)
        let expiresIn = j1?["expires_in"]?.intValue ?? 600
        if j1?["pre_approved"]?.boolValue == true {
            printError("approved by a standing delegation")
        } else {
            let link = j1?["verification_uri_complete"]?.stringValue ?? ""
            printError("Approval needed for \(role)@\(stage) (\(audience)), run \(runId).")
            printError("  code: \(userCode)")
            printError("  approve: stagepass approve \(userCode)   or open \(link)")
            printError("waiting up to \(timeout ?? expiresIn) s …")
        }
        let deadline = Date().addingTimeInterval(TimeInterval(timeout ?? expiresIn + 5))
        while true {
            let (s2, j2) = try await api.postForm(
                "/v1/token",
                [("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("device_code", deviceCode)],
                basic: (client, secret),
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
