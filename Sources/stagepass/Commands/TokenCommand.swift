import ArgumentParser
import Foundation
import StagepassJOSE

/// `stagepass token`: RFC 8693 token exchange of the saved MFA session; prints only the JWT on stdout.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Exchange the saved session for a scoped token (prints only the JWT)."
    )
    @OptionGroup var session: SessionOptions
    @Option(help: "The deploy endpoint (aud).") var audience: String
    @Option(help: "The role.") var role: String
    @Option(help: "The stage.") var stage: String
    @Option(help: "The pipeline client the token is for (client_id).") var pipeline: String?
    @OptionGroup var dpop: DPoPOptions

    func run() async throws {
        let (client, token) = try session.load()
        let key = try dpop.makeKey()
        var fields = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"), ("subject_token", token),
            ("subject_token_type", "urn:stagepass:params:oauth:token-type:session"), ("audience", audience),
            ("role", role), ("stage", stage),
        ]
        if let pipeline { fields.append(("pipeline", pipeline)) }
        let (status, json) = try await client.postForm(
            "/v1/token",
            fields,
            headers: try tokenRequestProof(key, base: client.base)
        )
        guard status == 200, let jwt = json?["access_token"]?.stringValue else {
            reportRefusal(status, json)
            throw ExitCode(1)
        }
        print(jwt)
    }
}
