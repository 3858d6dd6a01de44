import ArgumentParser

/// The `stagepass` command: broker, admin tools, pipeline client and the offline verifier in one binary.
/// Logic lives in the libraries; each noun/verb is one file here.
@main
struct Stagepass: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stagepass",
        abstract: "MFA-backed, short-lived, stage-scoped tokens for CI/CD pipelines.",
        subcommands: [
            // One line per command group; keep this list sorted by issue to ease merges.
            // issue 2 (verifier):
            // issue 3 (keys):
            // issue 4 (humans):
            Serve.self, Users.self, Factors.self, Login.self, Logout.self, Audit.self,
        ]
    )
}
