import Foundation

/// How the store's private key files are protected.
///
/// Rules (Keys/README.md): an explicit `--passphrase-file` wins, then the `STAGEPASS_KEY_PASSPHRASE` environment
/// variable; with neither the store refuses to start unless insecure development keys were asked for explicitly,
/// in which case keys are written unencrypted and a loud warning is logged. The passphrase never appears in
/// `description`, logs or errors.
public struct KeyPassphrase: Sendable, CustomStringConvertible {
    /// The passphrase, or nil for unencrypted development keys.
    let secret: String?

    private init(secret: String?) { self.secret = secret }

    /// A passphrase given directly (tests, embedding).
    public static func passphrase(_ value: String) -> KeyPassphrase { KeyPassphrase(secret: value) }

    /// Unencrypted key files, for development only.
    public static let insecureUnencrypted = KeyPassphrase(secret: nil)

    /// Whether key files are written encrypted.
    public var encrypts: Bool { secret != nil }

    public var description: String {
        secret == nil ? "KeyPassphrase(insecure, unencrypted)" : "KeyPassphrase(<redacted>)"
    }

    /// The name of the environment variable that carries the passphrase.
    public static let environmentVariable = "STAGEPASS_KEY_PASSPHRASE"

    /// Resolves the passphrase from a file, the environment, or the insecure-development opt-in.
    ///
    /// A passphrase file is read whole with one trailing newline removed; it must not be readable by group or
    /// others, and must not be empty.
    /// - Throws: ``KeyStoreError/missingPassphrase`` when there is none and `insecureDev` is false;
    ///   ``KeyStoreError/unreadablePassphraseFile`` or ``KeyStoreError/insecurePermissions`` for a bad file.
    public static func resolve(
        passphraseFile: String?,
        environment: [String: String],
        insecureDev: Bool
    ) throws
        -> KeyPassphrase
    {
        if let passphraseFile {
            let read: [UInt8]?
            do {
                read = try SecretFile.read(passphraseFile)
            } catch let e as SecretFileError where e == .insecurePermissions {
                throw KeyStoreError.insecurePermissions("passphrase file \(e.detail)")
            } catch {
                throw KeyStoreError.unreadablePassphraseFile("cannot read passphrase file \(passphraseFile): \(error)")
            }
            guard let bytes = read else {
                throw KeyStoreError.unreadablePassphraseFile("cannot read passphrase file \(passphraseFile)")
            }
            var text = String(decoding: bytes, as: UTF8.self)
            if text.hasSuffix("\r\n") {
                text.removeLast(1)  // "\r\n" is one Character
            } else if text.hasSuffix("\n") {
                text.removeLast()
            }
            guard !text.isEmpty else {
                throw KeyStoreError.unreadablePassphraseFile("passphrase file \(passphraseFile) is empty")
            }
            return .passphrase(text)
        }
        if let value = environment[environmentVariable] {
            guard !value.isEmpty else {
                throw KeyStoreError.missingPassphrase("\(environmentVariable) is set but empty")
            }
            return .passphrase(value)
        }
        if insecureDev { return .insecureUnencrypted }
        throw KeyStoreError.missingPassphrase(
            "no key passphrase: set \(environmentVariable) or pass --passphrase-file FILE "
                + "(or --insecure-dev-keys to store UNENCRYPTED keys for development)"
        )
    }
}
