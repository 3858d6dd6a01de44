import ArgumentParser
import Foundation
import StagepassBroker

/// `--data DIR` for commands that work on the local database directly (bootstrap, admin).
struct DataOptions: ParsableArguments {
    @Option(name: .long, help: "The data directory (database, master key).")
    var data: String = "./.stagepass"

    func open(policy: AuthPolicy = .default, webAuthn: WebAuthnConfiguration = .localDevelopment) throws -> HumanBroker
    {
        try HumanBroker.open(dataDirectory: data, policy: policy, webAuthn: webAuthn)
    }
}

/// Who an admin command acts as, for the audit log.
func cliActor() -> String { "cli:" + (ProcessInfo.processInfo.environment["USER"] ?? "unknown") }
