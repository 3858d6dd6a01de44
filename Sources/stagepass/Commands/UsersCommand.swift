import ArgumentParser
import Foundation
import StagepassBroker
import StagepassJOSE

/// `stagepass users …`: accounts on the local database.
struct Users: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "users",
        abstract: "Add, list, disable, enable and unlock user accounts.",
        subcommands: [Add.self, List.self, Disable.self, Enable.self, Unlock.self]
    )

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a user (Argon2id password hash).")
        @OptionGroup var options: DataOptions
        @Argument var name: String
        @Option(help: "Comma-separated groups, e.g. deployers,admins.") var groups: String = ""
        @Flag(help: "Read the password from the first line of standard input.") var passwordStdin = false

        func run() async throws {
            let password = passwordStdin ? try readStdinLine() : try promptSecret("Password for \(name): ")
            let groups = self.groups.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty }
            try await runReporting {
                let u = try await options.open().accounts.add(
                    name: name,
                    password: password,
                    groups: groups,
                    actor: cliActor()
                )
                print("added \(u.name) (\(u.id)) groups=\(u.groups.joined(separator: ","))")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List users.")
        @OptionGroup var options: DataOptions
        @Flag(help: "JSON lines output.") var json = false

        func run() async throws {
            try await runReporting {
                for u in try await options.open().accounts.list() {
                    if json {
                        print(
                            JSONValue.object([
                                "name": .string(u.name), "id": .string(u.id),
                                "groups": .array(u.groups.map { .string($0) }),
                                "disabled": .bool(u.disabled), "locked": .bool(u.locked),
                            ]).serialized()
                        )
                    } else {
                        let flags = [u.disabled ? "disabled" : nil, u.locked ? "locked" : nil].compactMap { $0 }
                        print("\(u.name)\tgroups=\(u.groups.joined(separator: ","))\t\(flags.joined(separator: ","))")
                    }
                }
            }
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disable a user and end their sessions.")
        @OptionGroup var options: DataOptions
        @Argument var name: String
        func run() async throws {
            try await runReporting {
                try await options.open().accounts.setDisabled(name, true, actor: cliActor())
                print("disabled \(name)")
            }
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Re-enable a disabled user.")
        @OptionGroup var options: DataOptions
        @Argument var name: String
        func run() async throws {
            try await runReporting {
                try await options.open().accounts.setDisabled(name, false, actor: cliActor())
                print("enabled \(name)")
            }
        }
    }

    struct Unlock: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Clear a lockout after repeated factor failures.")
        @OptionGroup var options: DataOptions
        @Argument var name: String
        func run() async throws {
            try await runReporting {
                try await options.open().accounts.unlock(name, actor: cliActor())
                print("unlocked \(name)")
            }
        }
    }
}
