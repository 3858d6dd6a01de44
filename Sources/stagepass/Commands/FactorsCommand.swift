import ArgumentParser
import Foundation
import StagepassBroker
import StagepassJOSE

/// `stagepass factors …`: second factors on the local database.
struct Factors: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "factors",
        abstract: "Enrol TOTP, generate backup codes, rotate the master key.",
        subcommands: [TOTPEnrol.self, BackupCodes.self, RotateMasterKey.self]
    )

    struct TOTPEnrol: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "totp-enrol",
            abstract: "Start a TOTP enrolment: prints the secret, the otpauth:// URI and a QR code, once. The factor "
                + "becomes active at the first correct code."
        )
        @OptionGroup var options: DataOptions
        @Argument var name: String
        @Flag(help: "Print {\"secret\":…,\"uri\":…} only.") var json = false

        func run() async throws {
            try await runReporting {
                let e = try await options.open().factors.enrolTOTP(userName: name, actor: cliActor())
                if json {
                    print(JSONValue.object(["secret": .string(e.secret), "uri": .string(e.uri)]).serialized())
                } else {
                    print(e.qr.terminal())
                    print("secret: \(e.secret)")
                    print("uri:    \(e.uri)")
                    print(
                        "Scan the code or type the secret into an authenticator app; the first correct code activates it."
                    )
                }
            }
        }
    }

    struct BackupCodes: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "backup-codes",
            abstract: "Generate 10 one-time backup codes (the previous set stops working)."
        )
        @OptionGroup var options: DataOptions
        @Argument var name: String
        func run() async throws {
            try await runReporting {
                for c in try await options.open().factors.regenerateBackupCodes(userName: name, actor: cliActor()) {
                    print(c)
                }
            }
        }
    }

    struct RotateMasterKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-master-key",
            abstract: "Re-encrypt every factor secret under a new master key and write it to DIR/master.key."
        )
        @OptionGroup var options: DataOptions
        func run() async throws {
            if ProcessInfo.processInfo.environment["STAGEPASS_MASTER_KEY"] != nil {
                throw ValidationError(
                    "STAGEPASS_MASTER_KEY is set: rotate by hand (this command manages DIR/master.key)"
                )
            }
            try await runReporting {
                let broker = try await options.open()
                let newKey = try MasterKey.generate()
                let path = HumanBroker.masterKeyPath(options.data)
                let staged = path + ".new"
                do {
                    try SecretFile.write(Array((newKey.base64url + "\n").utf8), to: staged)
                } catch let e as SecretFileError {
                    throw BrokerError.masterKey("cannot write \(staged): \(e.detail)")
                }
                let n = try await broker.factors.rotateMasterKey(to: newKey, actor: cliActor())
                // rename(2) is atomic: DIR/master.key is always either the old key or the new one. Should this
                // fail after the database commit, DIR/master.key.new holds the key that now opens the secrets.
                guard rename(staged, path) == 0 else {
                    throw BrokerError.masterKey(
                        "secrets re-encrypted, but moving \(staged) to \(path) failed: move it by hand"
                    )
                }
                print("re-encrypted \(n) secrets; new key \(try newKey.fingerprint)")
            }
        }
    }
}
