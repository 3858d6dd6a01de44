import ArgumentParser
import Foundation
import StagepassJOSE

/// `stagepass approve CODE`: shows the run and approves it with the saved session (stepping up with `--code` or
/// a prompt when the stage needs a fresher factor).
struct ApproveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approve",
        abstract: "Approve a pipeline run by its code."
    )
    @OptionGroup var session: SessionOptions
    @Argument(help: "The user code, e.g. BCDF-GHJK.") var userCode: String
    @Option(help: "A TOTP or backup code proving a fresh factor for this approval.") var code: String?

    func run() async throws {
        let (client, token) = try session.load()
        let path = "/v1/approvals/" + formEncode(userCode)
        let (s0, j0) = try await client.send("GET", path, token: token, body: nil)
        guard s0 == 200, let r = j0 else {
            reportRefusal(s0, j0)
            throw ExitCode(1)
        }
        printError(describeRequest(r))
        let page = r["approve_url"]?.stringValue ?? client.base + "/approve?code=" + formEncode(userCode)
        var body: JSONValue? = code.map(proofJSON)
        var (status, json) = try await client.post(path + "/approve", token: token, body: body)
        let keyOnly = needsSecurityKeyOnly(json?["acr_values"]?.stringValue ?? "")
        if status == 401, json?["code"]?.stringValue == "insufficient_user_authentication", code == nil,
            !keyOnly, isatty(0) == 1
        {
            reportRefusal(status, json)
            body = proofJSON(try promptLine("Code (TOTP or backup): "))
            (status, json) = try await client.post(path + "/approve", token: token, body: body)
        }
        guard status == 200 else {
            reportRefusal(status, json)
            if status == 401, needsSecurityKeyOnly(json?["acr_values"]?.stringValue ?? "") {
                printError("  approving this run needs your security key: open \(page)")
            }
            throw ExitCode(1)
        }
        let n = json?["approvals"]?.intValue ?? 0
        let needed = json?["approvers_needed"]?.intValue ?? 1
        print(
            json?["state"]?.stringValue == "approved"
                ? "approved (\(n)/\(needed)): the pipeline receives its token"
                : "approval recorded (\(n)/\(needed)); waiting for more approvers"
        )
    }
}

func describeRequest(_ r: JSONValue) -> String {
    func f(_ k: String) -> String { r[k]?.stringValue ?? "-" }
    return """
        request \(f("request_id")) [\(f("state"))]
          pipeline: \(f("client"))   run: \(f("run_id"))   commit: \(f("commit"))   triggered by: \(f("triggered_by"))
          wants:    role \(f("role")) for stage \(f("stage")) at \(f("audience"))
          approvals: \(r["approvals"]?.arrayValue?.count ?? 0) of \(r["approvers_needed"]?.intValue ?? 1)
        """ + ciLines(r)
}

/// The CI platform's signed claims of a run authenticated by its CI token.
private func ciLines(_ r: JSONValue) -> String {
    guard let issuer = r["ci_issuer"]?.stringValue, let claims = r["ci_claims"]?.objectValue else { return "" }
    let shown = claims.keys.sorted().map { "\($0)=\(claims[$0]?.stringValue ?? "")" }.joined(separator: " ")
    return "\n  signed by CI: \(issuer)\n    \(shown)"
}

/// `stagepass deny CODE`.
struct DenyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "deny", abstract: "Deny a pipeline run by its code.")
    @OptionGroup var session: SessionOptions
    @Argument(help: "The user code.") var userCode: String
    @Option(help: "Why (recorded in the audit log and told to the pipeline).") var reason: String?

    func run() async throws {
        let (client, token) = try session.load()
        let body: JSONValue = .object(reason.map { ["reason": .string($0)] } ?? [:])
        let (status, json) = try await client.post(
            "/v1/approvals/" + formEncode(userCode) + "/deny",
            token: token,
            body: body
        )
        guard status == 200 else {
            reportRefusal(status, json)
            throw ExitCode(1)
        }
        print("denied")
    }
}
