import ArgumentParser
import Foundation
import StagepassJOSE

/// `stagepass delegations list|grant|revoke`: standing approvals of a pipeline for a delegated stage, through the
/// broker's API with the saved session (`stagepass login`).
struct DelegationsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delegations",
        abstract: "List, grant and revoke delegations (a pipeline approved for a stage for a bounded time).",
        discussion: """
            A delegation lives only while its delegator does: disabling them, removing one of their groups, revoking \
            them or the session it was granted from ends it. Granting needs a factor the stage counts, proved within \
            the stage's mfa_max_age (stagepass step-up).
            """,
        subcommands: [List.self, Grant.self, Revoke.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List your live delegations (--all: everyone's; admin)."
        )
        @OptionGroup var session: SessionOptions
        @Flag(help: "Every user's delegations (administrators, with a fresh factor).") var all = false

        func run() async throws {
            let (client, token) = try session.load()
            let (status, json) = try await client.send(
                "GET",
                "/v1/delegations" + (all ? "?all=true" : ""),
                token: token,
                body: nil
            )
            guard status == 200 else {
                reportRefusal(status, json)
                throw ExitCode(1)
            }
            for d in json?["delegations"]?.arrayValue ?? [] {
                func f(_ k: String) -> String { d[k]?.stringValue ?? "-" }
                print(
                    "\(f("delegation_id"))\t\(f("delegator"))\t\(f("client"))\t\(f("role"))@\(f("stage"))\t"
                        + "\(f("audience"))\tuntil \(formatTime(d["expires_at"]?.intValue ?? 0))"
                )
            }
        }
    }

    struct Grant: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delegate a stage to a pipeline for a while.")
        @OptionGroup var session: SessionOptions
        @Option(help: "The pipeline client.") var client: String
        @Option(help: "The role.") var role: String
        @Option(help: "The (delegated) stage.") var stage: String
        @Option(help: "The deploy endpoint (aud).") var audience: String
        @Option(help: "How long, in seconds (at most the stage's max_window).") var seconds: Int64

        func run() async throws {
            let (client, token) = try session.load()
            let body: JSONValue = .object([
                "client": .string(self.client), "role": .string(role), "stage": .string(stage),
                "audience": .string(audience), "window_seconds": .int(seconds),
            ])
            let (status, json) = try await client.post("/v1/delegations", token: token, body: body)
            guard status == 201 else {
                reportRefusal(status, json)
                throw ExitCode(1)
            }
            print(json?["delegation_id"]?.stringValue ?? "")
            printError("delegated until \(formatTime(json?["expires_at"]?.intValue ?? 0))")
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a delegation (yours, or anyone's as an administrator with a fresh factor)."
        )
        @OptionGroup var session: SessionOptions
        @Argument(help: "The delegation id (dlg_…).") var id: String
        @Option(help: "Why (recorded in the audit log).") var reason: String?

        func run() async throws {
            let (client, token) = try session.load()
            let body: JSONValue = .object(reason.map { ["reason": .string($0)] } ?? [:])
            let (status, json) = try await client.post(
                "/v1/delegations/" + formEncode(id) + "/revoke",
                token: token,
                body: body
            )
            guard status == 200 else {
                reportRefusal(status, json)
                throw ExitCode(1)
            }
            print(json?["revoked"]?.boolValue == true ? "revoked \(id)" : "\(id) had already ended")
        }
    }
}
