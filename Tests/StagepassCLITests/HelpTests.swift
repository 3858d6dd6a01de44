import ArgumentParser
import Foundation
import Testing

@testable import stagepass

/// Every command of the CLI, found from the root command's configuration.
struct CommandPath: Sendable, CustomTestStringConvertible {
    let names: [String]
    let type: any ParsableCommand.Type

    var testDescription: String { (["stagepass"] + names).joined(separator: " ") }

    /// The subcommands of `type`, depth first, each with the words that name it on the command line.
    static func all(under type: any ParsableCommand.Type = Stagepass.self, prefix: [String] = []) -> [CommandPath] {
        type.configuration.subcommands.flatMap { sub -> [CommandPath] in
            let names = prefix + [sub._commandName]
            return [CommandPath(names: names, type: sub)] + all(under: sub, prefix: names)
        }
    }
}

/// What `stagepass --experimental-dump-help` says each command accepts (swift-argument-parser's tool info).
struct DumpedCommand {
    let names: [String]
    let shouldDisplay: Bool
    /// `--long` names and `<value>` placeholders of the arguments the help shows.
    let shownArguments: [String]

    static func all() throws -> [DumpedCommand] {
        let dump: String
        do {
            _ = try Stagepass.parseAsRoot(["--experimental-dump-help"])
            Issue.record("--experimental-dump-help did not stop parsing")
            return []
        } catch {
            dump = Stagepass.fullMessage(for: error)
        }
        let json = try #require(try JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [String: Any])
        let root = try #require(json["command"] as? [String: Any])
        return walk(root, prefix: nil)
    }

    private static func walk(_ command: [String: Any], prefix: [String]?) -> [DumpedCommand] {
        let names = prefix.map { $0 + [command["commandName"] as? String ?? "?"] } ?? []
        var out: [DumpedCommand] = []
        if prefix != nil {
            var shown: [String] = []
            for argument in command["arguments"] as? [[String: Any]] ?? [] {
                guard argument["shouldDisplay"] as? Bool ?? true else { continue }
                let kind = argument["kind"] as? String
                let argNames = argument["names"] as? [[String: Any]] ?? []
                if kind == "positional" {
                    if let value = argument["valueName"] as? String { shown.append("<\(value)>") }
                } else if let long = argNames.first(where: { $0["kind"] as? String == "long" })?["name"] as? String {
                    shown.append("--" + long)
                }
            }
            out.append(
                DumpedCommand(
                    names: names,
                    shouldDisplay: command["shouldDisplay"] as? Bool ?? true,
                    shownArguments: shown
                )
            )
        }
        for sub in command["subcommands"] as? [[String: Any]] ?? [] {
            out += walk(sub, prefix: names)
        }
        return out
    }
}

/// `stagepass … --help`: what the binary prints, rendered in-process through the root command.
/// (`parseAsRoot` answers `--help` with swift-argument-parser's help command, whose `run()` ends in the help text;
/// `Stagepass.main` prints it and exits 0.)
func helpOutput(_ arguments: [String]) -> (text: String, exitCode: ExitCode) {
    do {
        var command = try Stagepass.parseAsRoot(arguments + ["--help"])
        guard String(describing: type(of: command)) == "HelpCommand" else {
            Issue.record("\(arguments) --help parsed as \(type(of: command))")
            return ("", .failure)
        }
        try command.run()
        return ("", .failure)
    } catch {
        return (Stagepass.fullMessage(for: error, columns: 100), Stagepass.exitCode(for: error))
    }
}

@Suite("CLI: help of every command")
struct HelpTests {
    static let commands = CommandPath.all()

    @Test func theRootListsEveryCommandGroup() {
        let help = helpOutput([])
        #expect(help.exitCode == .success)
        for command in Self.commands where command.names.count == 1 && command.type.configuration.shouldDisplay {
            #expect(help.text.contains("  \(command.names[0])"), "the root help names \(command.names[0])")
        }
        #expect(!help.text.contains("dev-sign"), "testing aids stay hidden")
    }

    @Test func theCommandTreeIsTheDumpedTree() throws {
        var dumped = try DumpedCommand.all().map(\.names)
        #expect(dumped.last == ["help"], "swift-argument-parser's own help command comes last")
        dumped.removeAll { $0 == ["help"] }
        #expect(Self.commands.map(\.names) == dumped)
        #expect(Self.commands.count >= 40, "every noun and verb: \(Self.commands.map(\.testDescription))")
    }

    /// `--help` of each command renders, exits 0, equals `helpMessage(for:)`, and names every shown flag, option and
    /// argument.
    @Test(arguments: commands)
    func helpRendersAndNamesItsFlags(_ command: CommandPath) throws {
        let help = helpOutput(command.names)
        #expect(help.exitCode == .success)
        #expect(help.text == Stagepass.helpMessage(for: command.type, columns: 100))
        #expect(help.text.contains("USAGE: \(command.testDescription)"))
        let abstract = command.type.configuration.abstract
        if !abstract.isEmpty {
            #expect(help.text.contains("OVERVIEW: "), "\(command.testDescription) shows its abstract")
        }
        let dumped = try #require(try DumpedCommand.all().first { $0.names == command.names })
        #expect(dumped.shouldDisplay == command.type.configuration.shouldDisplay)
        for argument in dumped.shownArguments {
            #expect(help.text.contains(argument), "\(command.testDescription) --help names \(argument)")
        }
        if command.type.configuration.subcommands.isEmpty {
            #expect(dumped.shownArguments.contains("--help"))
        }
        for sub in command.type.configuration.subcommands where sub.configuration.shouldDisplay {
            #expect(help.text.contains("  \(sub._commandName)"), "\(command.testDescription) lists \(sub._commandName)")
        }
    }

    /// The flags a deploy script or an operator types, named explicitly (the dump above would follow a rename).
    @Test(arguments: [
        (
            ["verify"],
            [
                "--jwks", "--issuer", "--audience", "--role", "--stage", "--pipeline", "--status-list",
                "--status-max-age", "--leeway", "--max-lifetime", "--now", "--dpop-proof", "--method", "--url",
                "--dpop-replay-file",
                "<token>",
            ]
        ),
        (["revoke"], ["--jti", "--session", "--user", "--kid", "--reason", "--broker", "--session-file"]),
        (
            ["request"],
            [
                "--broker", "--client", "--client-secret-env", "--audience", "--role", "--stage", "--run-id",
                "--commit", "--triggered-by", "--timeout", "--dpop", "--dpop-key-file", "--dpop-alg",
            ]
        ),
        (
            ["token"],
            [
                "--audience", "--role", "--stage", "--pipeline", "--broker", "--session-file", "--dpop",
                "--dpop-key-file", "--dpop-alg",
            ]
        ),
        (["dpop-proof"], ["--method", "--url", "--token-file", "--dpop-key-file"]),
        (["login"], ["--broker", "--user", "--password-stdin", "--code", "--session-file"]),
        (["approve"], ["<user-code>", "--code", "--broker", "--session-file"]),
        (["deny"], ["<user-code>", "--reason"]),
        (
            ["keys", "rotate"],
            [
                "--keys", "--passphrase-file", "--insecure-dev-keys", "--data", "--broker-timeout",
                "--alg", "--force",
            ]
        ),
        (
            ["serve"],
            [
                "--data", "--host", "--port", "--issuer", "--policy", "--keys", "--passphrase-file", "--rp-id",
                "--origin", "--insecure-dev-keys",
            ]
        ),
        (["users", "add"], ["<name>", "--groups", "--password-stdin", "--data"]),
        (["delegations", "grant"], ["--client", "--role", "--stage", "--audience", "--seconds"]),
        (["status-list"], ["--broker", "--list"]),
    ])
    func helpNamesTheDocumentedFlags(_ path: [String], _ flags: [String]) {
        let help = helpOutput(path)
        for flag in flags {
            #expect(help.text.contains(flag), "stagepass \(path.joined(separator: " ")) --help names \(flag)")
        }
    }

    /// Pinned help texts: a change to a pipeline-facing command's help shows up here.
    @Test func tokenHelpIsPinned() {
        #expect(
            helpOutput(["token"]).text.trimmingCharacters(in: .newlines) == """
                OVERVIEW: Exchange the saved session for a scoped token (prints only the JWT).

                USAGE: stagepass token [--broker <broker>] [--session-file <session-file>] --audience <audience> --role <role> --stage <stage> [--pipeline <pipeline>] [--dpop] [--dpop-key-file <dpop-key-file>] [--dpop-alg <dpop-alg>]

                OPTIONS:
                  --broker <broker>       Broker base URL (default: the one saved by stagepass login).
                  --session-file <session-file>
                                          The session file written by stagepass login.
                  --audience <audience>   The deploy endpoint (aud).
                  --role <role>           The role.
                  --stage <stage>         The stage.
                  --pipeline <pipeline>   The pipeline client the token is for (client_id).
                  --dpop                  Bind the token to a fresh per-run key held in memory (DPoP); see
                                          --dpop-key-file to keep the key.
                  --dpop-key-file <dpop-key-file>
                                          Bind the token (implies --dpop) and write the per-run key here (mode
                                          0600) for `stagepass dpop-proof`.
                  --dpop-alg <dpop-alg>   The per-run key's algorithm: ES256 or EdDSA. (default: ES256)
                  -h, --help              Show help information.
                """
        )
    }

    @Test func keysHelpIsPinned() {
        #expect(
            helpOutput(["keys"]).text.trimmingCharacters(in: .newlines) == """
                OVERVIEW: Manage the signing keys: list, rotate, import, compromise, and print the public JWKS.

                USAGE: stagepass keys <subcommand>

                OPTIONS:
                  -h, --help              Show help information.

                SUBCOMMANDS:
                  list                    List keys: kid, alg, state, created, activates, retires.
                  rotate                  Promote next to active, demote active to retiring, generate a new next
                                          (creates the first keys).
                  import                  Import a private key PEM (e.g. from `openssl genpkey`) as the next key,
                                          stored encrypted.
                  compromise              Unpublish a key at once and destroy it; promotes next if it was active.
                  jwks                    Print the public JWKS (next, active and retiring keys).

                  See 'stagepass help keys <subcommand>' for detailed help.
                """
        )
    }
}
