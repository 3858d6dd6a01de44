import ArgumentParser
import Foundation
import StagepassJOSE

/// `stagepass revoke`: exactly one of `--jti`, `--session`, `--user`, `--kid`.
struct RevokeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Revoke tokens: one token, a session, all of a user's tokens, or every token of a key.",
        discussion: """
            Your own tokens and sessions need your session; anything else needs an administrator with a fresh factor             (stagepass step-up). Revoking a session also ends it and the delegations granted from it. Revoking a user             revokes every token issued to them until now, ends all of their sessions at once (a compromised account             stops minting), and ends every delegation they granted; approvals they gave stop counting.
            """
    )
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
