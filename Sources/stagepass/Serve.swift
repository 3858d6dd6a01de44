import ArgumentParser
import Foundation
import Hummingbird
import Logging
import StagepassBroker
import StagepassHTTP

/// `stagepass serve`: the broker over HTTP. On an empty data directory it first creates the master key and an
/// `admin` account, and prints the admin's password and TOTP enrolment once.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the broker's HTTP API.")
    @OptionGroup var options: DataOptions
    @Option(help: "Address to listen on.") var host: String = "127.0.0.1"
    @Option(help: "Port to listen on.") var port: Int = 8080
    @Option(help: "Public base URL of the broker.") var issuer: String?
    @Option(help: "Policy YAML file (MFA exemptions, factors, session lifetimes, throttling).") var policy: String?

    func run() async throws {
        let policy = try self.policy.map { try AuthPolicy.load(file: $0) } ?? .default
        let broker = try options.open(policy: policy)
        if let first = try broker.bootstrapIfEmpty() {
            // Unbuffered: the one-time secrets must reach a redirected log before the server starts.
            func emit(_ s: String) { FileHandle.standardOutput.write(Data((s + "\n").utf8)) }
            emit(
                """
                First start: created the account '\(first.userName)' (group admins). This is shown ONCE.
                  password:    \(first.password)
                  TOTP secret: \(first.enrolment.secret)
                  TOTP URI:    \(first.enrolment.uri)
                """)
            emit(first.enrolment.qr.terminal())
            emit("Sign in with: stagepass login --broker http://\(host):\(port) --user \(first.userName)")
        }
        var logger = Logger(label: "stagepass")
        logger.logLevel = .info
        let app = buildApplication(
            broker: broker, configuration: .init(address: .hostname(host, port: port), serverName: "stagepass"),
            options: HTTPOptions(issuer: issuer ?? "http://\(host):\(port)"), logger: logger)
        try await app.runService()
    }
}
