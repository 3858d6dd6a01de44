import ArgumentParser
import Foundation
import StagepassJOSE

/// `stagepass step-up`: proves a second factor again on the saved session (refreshes auth_time).
struct StepUp: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step-up",
        abstract: "Prove a second factor again on the saved session (fresh auth_time)."
    )
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
