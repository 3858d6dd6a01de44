import ArgumentParser
import Foundation
import StagepassBroker

/// `--data DIR` (and `--database URL`) for commands that work on the broker's database directly (bootstrap, admin).
struct DataOptions: ParsableArguments {
    @Option(name: .long, help: "The data directory (SQLite database, master key).")
    var data: String = "./.stagepass"

    @Option(
        name: .long,
        help: ArgumentHelp(
            "A PostgreSQL database instead of the SQLite file: postgres://USER[:PASSWORD]@HOST[:PORT]/DB or postgres://USER@/DB?host=/socket/dir (password also from PGPASSWORD). The master key stays in --data.",
            valueName: "url"
        )
    )
    var database: String?

    func open(
        policy: AuthPolicy = .default,
        webAuthn: WebAuthnConfiguration = .localDevelopment
    ) async throws -> HumanBroker {
        let (data, database) = (self.data, self.database)
        do {
            // Opening blocks (files, migrations): on a blocking lane, off the cooperative pool.
            return try await BrokerExecutor.blocking.run {
                try HumanBroker.open(dataDirectory: data, database: database, policy: policy, webAuthn: webAuthn)
            }
        } catch let e as PostgresURL.ParseError {
            throw ValidationError("--database: \(e.description)")
        }
    }
}

/// Who an admin command acts as, for the audit log.
func cliActor() -> String { "cli:" + (ProcessInfo.processInfo.environment["USER"] ?? "unknown") }
