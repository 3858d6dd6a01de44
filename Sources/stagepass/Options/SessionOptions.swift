import ArgumentParser
import Foundation

/// The saved session and broker for human commands: `--session-file` (default: the `stagepass login` file) and an
/// optional `--broker` overriding the one saved with the session.
struct SessionOptions: ParsableArguments {
    @Option(help: "Broker base URL (default: the one saved by stagepass login).") var broker: String?
    @Option(help: "The session file written by stagepass login.") var sessionFile: String?

    func load() throws -> (BrokerClient, String) {
        let saved = try SessionFile.read(path: sessionFile ?? SessionFile.defaultPath())
        return (BrokerClient(base: broker ?? saved.broker), saved.token)
    }
}
