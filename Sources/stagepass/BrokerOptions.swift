import ArgumentParser
import Foundation
import StagepassBroker

/// `--data DIR` for commands that work on the local database directly (bootstrap, admin).
struct DataOptions: ParsableArguments {
    @Option(name: .long, help: "The data directory (database, master key).")
    var data: String = "./.stagepass"

    func open(policy: AuthPolicy = .default, webAuthn: WebAuthnConfiguration = .localDevelopment) throws -> HumanBroker {
        try HumanBroker.open(dataDirectory: data, policy: policy, webAuthn: webAuthn)
    }
}

/// Who an admin command acts as, for the audit log.
func cliActor() -> String { "cli:" + (ProcessInfo.processInfo.environment["USER"] ?? "unknown") }

/// Reads one line from standard input without its newline (passwords piped in with `--password-stdin`).
func readStdinLine() throws -> String {
    guard let line = readLine(strippingNewline: true), !line.isEmpty else {
        throw ValidationError("expected a password on standard input")
    }
    return line
}

/// Prompts without echo (getpass(3)).
func promptSecret(_ prompt: String) throws -> String {
    guard let p = getpass(prompt) else { throw ValidationError("no terminal to prompt on; use --password-stdin") }
    let s = String(cString: p)
    guard !s.isEmpty else { throw ValidationError("empty password") }
    return s
}

/// Prints a broker error as `error: <code>: <detail>` and exits non-zero, instead of a Swift dump.
func runReporting(_ body: () throws -> Void) throws {
    do { try body() } catch let e as BrokerError {
        FileHandle.standardError.write(Data("error: \(e.code): \(e.detail)\n".utf8))
        throw ExitCode(2)
    } catch let e as StoreError {
        FileHandle.standardError.write(Data("error: \(e.code): \(e.detail)\n".utf8))
        throw ExitCode(2)
    }
}
