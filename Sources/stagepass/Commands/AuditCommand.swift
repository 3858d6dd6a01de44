import ArgumentParser
import Foundation
import StagepassBroker

/// `stagepass audit …`: the hash-chained audit log.
struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Verify or export the hash-chained audit log.",
        subcommands: [Verify.self, Export.self]
    )

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Walk the chain; exit 1 naming the first bad record.")
        @OptionGroup var options: DataOptions
        func run() async throws {
            let v = try await options.open().audit.verify()
            if let bad = v.firstBadSeq {
                print("audit chain BROKEN at seq \(bad): \(v.reason ?? "")")
                throw ExitCode(1)
            }
            print("audit chain intact: \(v.count) records")
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write every record as JSON lines to stdout.")
        @OptionGroup var options: DataOptions
        func run() async throws { try await options.open().audit.export { print($0) } }
    }
}
