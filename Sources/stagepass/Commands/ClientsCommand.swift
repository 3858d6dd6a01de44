import ArgumentParser
import Foundation
import StagepassBroker

/// `stagepass clients …`: registered pipeline clients, on the local database.
struct Clients: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clients",
        abstract: "Register, list and remove pipeline clients.",
        subcommands: [Add.self, List.self, Remove.self]
    )

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register a pipeline client and print its secret ONCE (only a hash is stored)."
        )
        @OptionGroup var options: DataOptions
        @Argument var name: String
        func run() async throws {
            try await runReporting {
                let secret = try await ClientRegistry(human: try options.open()).add(name: name, actor: cliActor())
                print(secret)
                printError("registered \(name); the secret above is shown once. Store it in your CI's secret store.")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List pipeline clients.")
        @OptionGroup var options: DataOptions
        func run() async throws {
            try await runReporting {
                for c in try await ClientRegistry(human: try options.open()).list() {
                    print("\(c.name)\tcreated \(formatTime(c.createdAt))")
                }
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a pipeline client (its secret stops working)."
        )
        @OptionGroup var options: DataOptions
        @Argument var name: String
        func run() async throws {
            try await runReporting {
                try await ClientRegistry(human: try options.open()).remove(name: name, actor: cliActor())
                print("removed \(name)")
            }
        }
    }
}
