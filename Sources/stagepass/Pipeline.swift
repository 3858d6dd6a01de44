import ArgumentParser
import Foundation
import StagepassBroker
import StagepassJOSE

/// The saved session and broker for human commands: `--session-file` (default: the `stagepass login` file) and an
/// optional `--broker` overriding the one saved with the session.
struct SessionOptions: ParsableArguments {
    @Option(help: "Broker base URL (default: the one saved by stagepass login).") var broker: String?
    @Option(help: "The session file written by stagepass login.") var sessionFile: String?

    func load() throws -> (BrokerClient, String) {
        let saved = try SessionFile.read(path: sessionFile ?? SessionFile.defaultPath())
        return (BrokerClient(base: broker ?? saved.broker), saved.token)
    }
}


/// Prints an OAuth error response (RFC 6749 §5.2) or a problem, naming what to do on a step-up demand (RFC 9470).
func reportRefusal(_ status: Int, _ json: JSONValue?) {
    let code = json?["error"]?.stringValue ?? json?["code"]?.stringValue ?? "http_\(status)"
    let detail = json?["error_description"]?.stringValue ?? json?["detail"]?.stringValue ?? ""
    printError("error: \(code): \(detail)")
    if code == "insufficient_user_authentication" {
        let age = json?["max_age"]?.intValue.map { "within \($0) s" } ?? ""
        let acr = json?["acr_values"]?.stringValue ?? ""
        if needsSecurityKeyOnly(acr) {
            // The CLI cannot prove a security key: only a browser can.
            printError("  a security key proved \(age) is needed; the CLI cannot prove one: use the pages")
        } else {
            printError("  a fresh second factor is needed \(age) (accepted: \(acr)); run: stagepass step-up")
        }
    }
}

/// Whether an RFC 9470 `acr_values` list accepts only a security key (nothing the CLI can prove).
func needsSecurityKeyOnly(_ acrValues: String) -> Bool {
    let accepted = Set(acrValues.split(separator: " ").map(String.init))
    let typed: Set<String> = [ACR.value(for: .totp), ACR.value(for: .backup)]
    return !accepted.isEmpty && accepted.isDisjoint(with: typed)
}

/// `stagepass step-up`: proves a second factor again on the saved session (refreshes auth_time).
struct StepUp: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step-up", abstract: "Prove a second factor again on the saved session (fresh auth_time).")
    @OptionGroup var session: SessionOptions
    @Option(help: "A TOTP code or a backup code; prompted when absent.") var code: String?

    func run() async throws {
        let (client, token) = try session.load()
        let code = try self.code ?? promptLine("Code (TOTP or backup): ")
        let (status, json) = try await client.post("/v1/auth/step-up", token: token, body: proofJSON(code))
        guard status == 200 else { throw failProblem(status, json) }
        print("stepped up (amr \(json?["amr"]?.arrayValue?.compactMap(\.stringValue).joined(separator: ",") ?? ""))")
    }
}

func promptLine(_ prompt: String) throws -> String {
    FileHandle.standardError.write(Data(prompt.utf8))
    guard let line = readLine(strippingNewline: true), !line.isEmpty else {
        throw ValidationError("a second-factor code is needed (--code)")
    }
    return line
}

/// `{"method":"totp"|"backup","code":…}` for a typed code (the broker's own rule tells the two apart).
func proofJSON(_ code: String) -> JSONValue {
    .object(["method": .string(FactorProof.code(code).kind.rawValue), "code": .string(code)])
}

/// `stagepass token`: RFC 8693 token exchange of the saved MFA session; prints only the JWT on stdout.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Exchange the saved session for a scoped token (prints only the JWT).")
    @OptionGroup var session: SessionOptions
    @Option(help: "The deploy endpoint (aud).") var audience: String
    @Option(help: "The role.") var role: String
    @Option(help: "The stage.") var stage: String
    @Option(help: "The pipeline client the token is for (client_id).") var pipeline: String?

    func run() async throws {
        let (client, token) = try session.load()
        var fields = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"), ("subject_token", token),
            ("subject_token_type", "urn:stagepass:params:oauth:token-type:session"), ("audience", audience),
            ("role", role), ("stage", stage),
        ]
        if let pipeline { fields.append(("pipeline", pipeline)) }
        let (status, json) = try await client.postForm("/v1/token", fields)
        guard status == 200, let jwt = json?["access_token"]?.stringValue else {
            reportRefusal(status, json)
            throw ExitCode(1)
        }
        print(jwt)
    }
}

/// `stagepass request`: a pipeline asks for a token for one run (RFC 8628 device grant), waits for approval, and
/// prints only the JWT on stdout. The approval link and code go to stderr.
struct RequestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "request",
        abstract: "Request a token for one pipeline run and wait for human approval (prints only the JWT).",
        discussion: "Exit status: 0 token printed; 1 denied, expired or refused; 2 usage or configuration error.")
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
        help: "The user who triggered the run (default: $GITHUB_ACTOR, $GITLAB_USER_LOGIN or $BUILD_USER_ID).")
    var triggeredBy: String?
    @Option(help: "Give up after this many seconds (default: when the request expires).") var timeout: Int64?

    func run() async throws {
        let env = ProcessInfo.processInfo.environment
        guard let secret = env[clientSecretEnv], !secret.isEmpty else {
            throw ValidationError("the environment variable \(clientSecretEnv) is empty or unset")
        }
        let trigger = triggeredBy ?? env["GITHUB_ACTOR"] ?? env["GITLAB_USER_LOGIN"] ?? env["BUILD_USER_ID"]
        let api = BrokerClient(base: broker)
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
                basic: (client, secret))
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

/// `stagepass approve CODE`: shows the run and approves it with the saved session (stepping up with `--code` or
/// a prompt when the stage needs a fresher factor).
struct ApproveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approve", abstract: "Approve a pipeline run by its code.")
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
        print(json?["state"]?.stringValue == "approved" ? "approved (\(n)/\(needed)): the pipeline receives its token" : "approval recorded (\(n)/\(needed)); waiting for more approvers")
    }
}

func describeRequest(_ r: JSONValue) -> String {
    func f(_ k: String) -> String { r[k]?.stringValue ?? "-" }
    return """
        request \(f("request_id")) [\(f("state"))]
          pipeline: \(f("client"))   run: \(f("run_id"))   commit: \(f("commit"))   triggered by: \(f("triggered_by"))
          wants:    role \(f("role")) for stage \(f("stage")) at \(f("audience"))
          approvals: \(r["approvals"]?.arrayValue?.count ?? 0) of \(r["approvers_needed"]?.intValue ?? 1)
        """
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
            "/v1/approvals/" + formEncode(userCode) + "/deny", token: token, body: body)
        guard status == 200 else {
            reportRefusal(status, json)
            throw ExitCode(1)
        }
        print("denied")
    }
}

/// `stagepass revoke`: exactly one of `--jti`, `--session`, `--user`, `--kid`.
struct RevokeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Revoke tokens: one token, a session, all of a user's tokens, or every token of a key.",
        discussion: """
            Your own tokens and sessions need your session; anything else needs an administrator with a fresh factor             (stagepass step-up). Revoking a session also ends it and the delegations granted from it. Revoking a user             revokes every token issued to them until now, ends all of their sessions at once (a compromised account             stops minting), and ends every delegation they granted; approvals they gave stop counting.
            """)
    @OptionGroup var session: SessionOptions
    @Option(help: "A token id.") var jti: String?
    @Option(name: .customLong("session"), help: "A session id (sid).") var sid: String?
    @Option(help: "A user name: every token issued to them until now, all their sessions and delegations.")
    var user: String?
    @Option(help: "A signing key id: marks the key compromised and revokes every token it signed.") var kid: String?
    @Option(help: "Why (recorded in the audit log).") var reason: String?

    func validate() throws {
        guard [jti, sid, user, kid].compactMap({ $0 }).count == 1 else {
            throw ValidationError("name exactly one of --jti, --session, --user, --kid")
        }
    }

    func run() async throws {
        let (client, token) = try session.load()
        var body: [String: JSONValue] = [:]
        if let jti { body["jti"] = .string(jti) }
        if let sid { body["session"] = .string(sid) }
        if let user { body["user"] = .string(user) }
        if let kid { body["kid"] = .string(kid) }
        if let reason { body["reason"] = .string(reason) }
        let (status, json) = try await client.post("/v1/revocations", token: token, body: .object(body))
        guard status == 200 else {
            reportRefusal(status, json)
            throw ExitCode(1)
        }
        print("revoked \(json?["revoked"]?.intValue ?? 0) token(s)")
    }
}

/// `stagepass status-list`: fetches a status list from the broker, checks its signature against the broker's JWKS,
/// and prints the revoked indices (one per line).
struct StatusListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status-list", abstract: "Print the revoked indices of the broker's current status list.")
    @Option(help: "Broker base URL.") var broker: String = "http://127.0.0.1:8080"
    @Option(help: "Which list (1 = the first).") var list: Int = 1

    func run() async throws {
        let api = BrokerClient(base: broker)
        let (s1, jwksText) = try await api.getText("/.well-known/jwks.json")
        let (s2, jwt) = try await api.getText("/v1/statuslists/\(list)")
        guard s1 == 200, s2 == 200 else {
            printError("error: cannot fetch the JWKS (\(s1)) or status list \(list) (\(s2)) from \(broker)")
            throw ExitCode(1)
        }
        let parts = jwt.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, let header = try? JSONValue.parse(Base64URL.decode(parts[0])),
            let payload = try? JSONValue.parse(Base64URL.decode(parts[1])),
            header["typ"]?.stringValue == "statuslist+jwt", let kid = header["kid"]?.stringValue,
            let jwks = try? JWKS(jsonString: jwksText), let jwk = jwks.keys.first(where: { $0.kid == kid }),
            let alg = jwk.algorithm, header["alg"]?.stringValue == alg.rawValue,
            let key = try? jwk.publicKey(), let sig = try? Base64URL.decode(parts[2]),
            key.verify(alg, signingInput: Array((parts[0] + "." + parts[1]).utf8), signature: sig)
        else {
            printError("error: the status list is malformed or its signature does not verify against the JWKS")
            throw ExitCode(1)
        }
        guard let bits = payload["status_list"]?["bits"]?.intValue, bits == 1,
            let lst = payload["status_list"]?["lst"]?.stringValue,
            let bytes = try? Zlib.decompress(Base64URL.decode(lst), limit: 1 << 21)
        else {
            printError("error: the status list has no 1-bit lst")
            throw ExitCode(1)
        }
        printError("list \(payload["sub"]?.stringValue ?? "?") iat \(payload["iat"]?.intValue ?? 0) ttl \(payload["ttl"]?.intValue ?? 0)")
        // draft-ietf-oauth-status-list §4.1: entry i is bit i % 8 of byte i / 8, least significant first.
        for (i, b) in bytes.enumerated() where b != 0 {
            for bit in 0..<8 where b & (1 << bit) != 0 { print(i * 8 + bit) }
        }
    }
}

/// `stagepass clients …`: registered pipeline clients, on the local database.
struct Clients: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clients", abstract: "Register, list and remove pipeline clients.",
        subcommands: [Add.self, List.self, Remove.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register a pipeline client and print its secret ONCE (only a hash is stored).")
        @OptionGroup var options: DataOptions
        @Argument var name: String
        func run() throws {
            try runReporting {
                let secret = try ClientRegistry(human: try options.open()).add(name: name, actor: cliActor())
                print(secret)
                printError("registered \(name); the secret above is shown once. Store it in your CI's secret store.")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List pipeline clients.")
        @OptionGroup var options: DataOptions
        func run() throws {
            try runReporting {
                for c in try ClientRegistry(human: try options.open()).list() {
                    print("\(c.name)\tcreated \(formatTime(c.createdAt))")
                }
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a pipeline client (its secret stops working).")
        @OptionGroup var options: DataOptions
        @Argument var name: String
        func run() throws {
            try runReporting {
                try ClientRegistry(human: try options.open()).remove(name: name, actor: cliActor())
                print("removed \(name)")
            }
        }
    }
}
