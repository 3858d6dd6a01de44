import ArgumentParser

/// The `stagepass` command: broker, admin tools, pipeline client and the offline verifier in one binary.
/// Logic lives in the libraries; each noun/verb is one file here.
@main
struct Stagepass: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stagepass",
        abstract: "MFA-backed, short-lived, stage-scoped tokens for CI/CD pipelines.",
        subcommands: [
            VerifyCommand.self,
            BenchCommand.self,
            DevSignCommand.self,
            DevJWKSCommand.self,
            // keys (issue 3), serve/users/factors/login/logout/audit (issue 4) register here.
        ]
    )
}
