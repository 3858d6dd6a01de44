import ArgumentParser
import Foundation
import StagepassBroker

/// `stagepass policy …`: check a policy file without starting the broker, or print the shipped example.
/// The format is `Specs/policy.md`.
struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Check a policy file, or print the shipped example policy.",
        subcommands: [Check.self, Example.self]
    )

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a policy file: exit 0 printing a summary, or exit 1 printing FILE:LINE: message."
        )
        @Argument(help: "The policy YAML file (`-`: standard input).") var file: String

        func run() throws {
            let policy = try loadPolicyReporting(file: file)
            print("ok: \(policySummary(policy))")
        }
    }

    struct Example: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the shipped example policy (what `serve` uses without --policy)."
        )
        func run() throws { print(AccessPolicy.exampleYAML, terminator: "") }
    }
}

/// "2 roles, 3 stages, 1 audiences, 1 pipelines".
func policySummary(_ policy: AccessPolicy) -> String {
    "\(policy.roles.count) roles, \(policy.stages.count) stages, \(policy.audiences.count) audiences, "
        + "\(policy.pipelines.count) pipelines"
}

/// Loads a policy file (`-`: standard input); on a ``PolicyError`` prints `FILE:LINE: message` to stderr and exits 1.
func loadPolicyReporting(file: String) throws -> AccessPolicy {
    do {
        if file == "-" {
            let data = FileHandle.standardInput.readDataToEndOfFile()
            return try AccessPolicy.load(yaml: String(decoding: data, as: UTF8.self), source: "<stdin>")
        }
        return try AccessPolicy.load(file: file)
    } catch let error as PolicyError {
        FileHandle.standardError.write(Data("\(error)\n".utf8))
        throw ExitCode(1)
    }
}
