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

    struct Copy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy an embedded (SQLite) broker's database into an empty PostgreSQL database.",
            discussion: """
                Stop the broker first. Copies users, groups, factors (sealed boxes as they are), backup codes, \
                security keys, sessions, clients, the token ledger with its revocations and status-list indexes, \
                approval requests, approvals, delegations, counters and the audit log row for row, in one transaction; \
                then verifies the copied audit chain and compares every table. Throttle counters and WebAuthn \
                challenges are not copied. The signing keyring (records and encrypted PKCS#8 PEMs exactly as stored) \
                is copied from --keys into the database keyring, which every broker on PostgreSQL signs from. The \
                master key and the key passphrase are not in the database: start the PostgreSQL broker with the same \
                --data (or STAGEPASS_MASTER_KEY) and the same key passphrase.
                Exit 0: copied and verified; 1: the source chain is broken or the copy does not match; 2: the \
                target is not empty (nothing written) or a usage error.
                """
        )

        @Option(name: .long, help: "The data directory of the embedded broker (its SQLite database).")
        var from: String = "./.stagepass"

        @Option(name: .long, help: "The embedded broker's signing key store directory.")
        var keys: String = "Keys"

        @Option(
            name: .long,
            help: ArgumentHelp(
                "The empty PostgreSQL database: postgres://USER[:PASSWORD]@HOST[:PORT]/DB or postgres://USER@/DB?host=/socket/dir (password also from PGPASSWORD).",
                valueName: "url"
            )
        )
        var to: String

        func run() async throws {
            let path = HumanBroker.databasePath(from)
            guard FileManager.default.fileExists(atPath: path) else {
                throw ValidationError("--from: no broker database at \(path)")
            }
            let url: PostgresURL
            do { url = try PostgresURL(to) } catch let e as PostgresURL.ParseError {
                throw ValidationError("--to: \(e.description)")
            }
            let keyring: StoredKeyring?
            do {
                keyring = try KeyStore.exportDirectoryKeyring(keys)
            } catch let e as KeyStoreError {
                printError("db copy: --keys \(keys): \(e)")
                throw ExitCode(1)
            }
            let source = try SQLiteStore(path: path)
            let target = try await PostgresStore.open(url: url)
            let report: StoreCopyReport
            do {
                report = try await StoreCopy.copy(from: source, to: target)
            } catch let e as StoreTransferError {
                printError("db copy: \(e.description)")
                if case .targetNotEmpty = e { throw ExitCode(2) }
                throw ExitCode(1)
            }
            if let keyring {
                // The same records and encrypted PEMs: tokens already issued keep verifying under their kid.
                let change = KeyringChange(
                    expectedVersion: 0,
                    keys: keyring.keys.map(\.record),
                    newPEMs: Dictionary(
                        uniqueKeysWithValues: keyring.keys.compactMap { k in k.pem.map { (k.record.kid, $0) } }
                    ),
                    audit: []
                )
                // The keyring write blocks (the key store's path): on a blocking lane, off the cooperative pool.
                guard try await BrokerExecutor.blocking.run({ try target.commitKeyring(change) }) != nil else {
                    printError(
                        "db copy: another writer created a keyring in the target during the copy; keys not copied"
                    )
                    throw ExitCode(1)
                }
            }
            print("copied \(path) to \(url.redacted):")
            let width = report.rows.map(\.table.count).max() ?? 0
            for (table, rows) in report.rows {
                print("  \(table.padding(toLength: width, withPad: " ", startingAt: 0))  \(rows)")
            }
            print("audit chain intact on the target: \(report.targetChain.count) records, head \(report.headHash)")
            if let keyring {
                let kids = keyring.keys.map { "\($0.record.kid) (\($0.record.state.rawValue))" }
                print("signing keyring copied from \(keys): \(kids.joined(separator: ", "))")
            } else {
                print("no signing keyring in \(keys): the first PostgreSQL broker creates one")
            }
            print("not copied: throttle counters, WebAuthn challenges (short-lived)")
            print("start the broker with --database, the same --data \(from) (master key) and the same key passphrase")
            await target.close()
        }
    }
}
