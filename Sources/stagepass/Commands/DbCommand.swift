import ArgumentParser
import Foundation
import StagepassBroker

/// `stagepass db …`: the broker's database as a whole.
struct DbCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db",
        abstract: "Work on the broker's database as a whole.",
        subcommands: [Copy.self]
    )

    struct Copy: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy an embedded (SQLite) broker's database into an empty PostgreSQL database.",
            discussion: """
                Stop the broker first. Copies users, groups, factors (sealed boxes as they are), backup codes, \
                security keys, sessions, clients, the token ledger with its revocations and status-list indexes, \
                approval requests, approvals, delegations, counters and the audit log row for row, in one transaction; \
                then verifies the copied audit chain and compares every table. Throttle counters and WebAuthn \
                challenges are not copied. The master key, the key passphrase and the signing keys are not in the \
                database: start the PostgreSQL broker with the same --data and --keys.
                Exit 0: copied and verified; 1: the source chain is broken or the copy does not match; 2: the \
                target is not empty (nothing written) or a usage error.
                """
        )

        @Option(name: .long, help: "The data directory of the embedded broker (its SQLite database).")
        var from: String = "./.stagepass"

        @Option(
            name: .long,
            help: ArgumentHelp(
                "The empty PostgreSQL database: postgres://USER[:PASSWORD]@HOST[:PORT]/DB or postgres://USER@/DB?host=/socket/dir (password also from PGPASSWORD).",
                valueName: "url"
            )
        )
        var to: String

        func run() throws {
            let path = HumanBroker.databasePath(from)
            guard FileManager.default.fileExists(atPath: path) else {
                throw ValidationError("--from: no broker database at \(path)")
            }
            let url: PostgresURL
            do { url = try PostgresURL(to) } catch let e as PostgresURL.ParseError {
                throw ValidationError("--to: \(e.description)")
            }
            let source = try SQLiteStore(path: path)
            let target = try PostgresStore(url: url)
            defer { target.close() }
            let report: StoreCopyReport
            do {
                report = try StoreCopy.copy(from: source, to: target)
            } catch let e as StoreTransferError {
                printError("db copy: \(e.description)")
                if case .targetNotEmpty = e { throw ExitCode(2) }
                throw ExitCode(1)
            }
            print("copied \(path) to \(url.redacted):")
            let width = report.rows.map(\.table.count).max() ?? 0
            for (table, rows) in report.rows {
                print("  \(table.padding(toLength: width, withPad: " ", startingAt: 0))  \(rows)")
            }
            print("audit chain intact on the target: \(report.targetChain.count) records, head \(report.headHash)")
            print("not copied: throttle counters, WebAuthn challenges (short-lived)")
            print("start the broker with --database and the same --data \(from) (master key) and --keys (signing keys)")
        }
    }
}
