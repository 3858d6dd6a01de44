import ArgumentParser
import Foundation

/// The `stagepass` command: broker, admin tools, pipeline client and the offline verifier in one binary.
/// Logic lives in the libraries. Here: one file per command group in `Commands/`, the broker API client and the saved
/// session in `Client/`, shared option groups in `Options/`, output and prompt helpers in `Support/`.
@main
struct Stagepass: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stagepass",
        abstract: "MFA-backed, short-lived, stage-scoped tokens for CI/CD pipelines.",
        subcommands: [
            // One line per command group.
            // Deploy endpoints: the offline verifier.
            VerifyCommand.self, GuardCommand.self, BenchCommand.self, DevSignCommand.self, DevJWKSCommand.self,
            DPoPProofCommand.self,
            // Signing keys.
            KeysCommand.self,
            // The broker and its humans.
            Serve.self, Users.self, Factors.self, Login.self, Logout.self, Audit.self,
            // Scoped tokens, approvals, delegations, revocation.
            StepUp.self, TokenCommand.self, Clients.self, RequestCommand.self, ApproveCommand.self, DenyCommand.self,
            DelegationsCommand.self, RevokeCommand.self, StatusListCommand.self,
            // Policy.
            PolicyCommand.self,
            // The database as a whole.
            DbCommand.self,
        ]
    )

    /// Usage and configuration errors exit 2 (the `verify` contract), not ArgumentParser's default 64.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var async = command as? any AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch let exit as ExitCode {
            Foundation.exit(exit.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}
