/// An error from the signing-key store: configuration, unreadable or unsafe key material, an inconsistent keyring,
/// or a refused lifecycle action.
///
/// A struct over a private enum (the NIO/Hummingbird pattern) so cases can be added without breaking callers.
/// `code` is stable and machine-readable; `detail` is for humans, never contains key material or the passphrase,
/// and is not part of `==`.
public struct KeyStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Code: String, Sendable {
        case missingPassphrase = "missing_passphrase"
        case unreadablePassphraseFile = "unreadable_passphrase_file"
        case invalidSchedule = "invalid_schedule"
        case invalidArgument = "invalid_argument"
        case notInitialized = "not_initialized"
        case wrongPassphrase = "wrong_passphrase"
        case corruptKeyFile = "corrupt_key_file"
        case missingKeyFile = "missing_key_file"
        case insecurePermissions = "insecure_permissions"
        case corruptKeyring = "corrupt_keyring"
        case noActiveKey = "no_active_key"
        case unknownKid = "unknown_kid"
        case invalidState = "invalid_state"
        case nextNotPrePublished = "next_not_pre_published"
        case duplicateKey = "duplicate_key"
        case unsupportedKey = "unsupported_key"
        case ioFailure = "io_failure"
        case locked = "locked"
        case auditFailure = "audit_failure"
        case cryptoFailure = "crypto_failure"
    }

    private let _code: Code
    /// Human-readable context (paths, kids, counts); never key material or the passphrase.
    public let detail: String
    /// For `next_not_pre_published`: the unix time from which the rotation is safe (the `next` key has then been
    /// published for the whole pre-publication window). Not part of `==`.
    public let safeAfter: Int64?

    private init(_ code: Code, _ detail: String, safeAfter: Int64? = nil) {
        self._code = code
        self.detail = detail
        self.safeAfter = safeAfter
    }

    /// The stable machine-readable code, e.g. `wrong_passphrase`.
    public var code: String { _code.rawValue }
    public var description: String { detail.isEmpty ? _code.rawValue : "\(_code.rawValue): \(detail)" }

    /// True for errors an operator fixes by changing how the store is configured or invoked (the CLI exits 2).
    public var isConfigurationError: Bool {
        switch _code {
        case .missingPassphrase, .unreadablePassphraseFile, .invalidSchedule, .invalidArgument, .notInitialized:
            return true
        default:
            return false
        }
    }

    public static func == (lhs: KeyStoreError, rhs: KeyStoreError) -> Bool { lhs._code == rhs._code }
    public func hash(into hasher: inout Hasher) { hasher.combine(_code) }

    /// No passphrase was configured and insecure development keys were not requested.
    public static func missingPassphrase(_ d: String) -> KeyStoreError { .init(.missingPassphrase, d) }
    /// The passphrase file could not be read, is empty, or is readable by others.
    public static func unreadablePassphraseFile(_ d: String) -> KeyStoreError { .init(.unreadablePassphraseFile, d) }
    /// The key schedule is inconsistent (e.g. the JWKS max-age would not be shorter than the pre-publication window).
    public static func invalidSchedule(_ d: String) -> KeyStoreError { .init(.invalidSchedule, d) }
    /// A caller-supplied value is not acceptable (unknown algorithm, malformed kid).
    public static func invalidArgument(_ d: String) -> KeyStoreError { .init(.invalidArgument, d) }
    /// The directory holds no keyring yet (run `stagepass keys rotate` to create the first keys).
    public static func notInitialized(_ d: String) -> KeyStoreError { .init(.notInitialized, d) }
    /// A key file is encrypted and the passphrase does not decrypt it (or none was given).
    public static func wrongPassphrase(_ d: String) -> KeyStoreError { .init(.wrongPassphrase, d) }
    /// A key file is not a complete private key PEM (truncated, garbled) or does not match its kid.
    public static func corruptKeyFile(_ d: String) -> KeyStoreError { .init(.corruptKeyFile, d) }
    /// The keyring names a key whose private key file is missing.
    public static func missingKeyFile(_ d: String) -> KeyStoreError { .init(.missingKeyFile, d) }
    /// A key file (or the passphrase file) can be read by group or others; it must be mode 0600.
    public static func insecurePermissions(_ d: String) -> KeyStoreError { .init(.insecurePermissions, d) }
    /// The keyring file is not valid keyring JSON.
    public static func corruptKeyring(_ d: String) -> KeyStoreError { .init(.corruptKeyring, d) }
    /// The keyring does not have exactly one active key.
    public static func noActiveKey(_ d: String) -> KeyStoreError { .init(.noActiveKey, d) }
    /// No key with this kid is in the keyring.
    public static func unknownKid(_ d: String) -> KeyStoreError { .init(.unknownKid, d) }
    /// The action does not apply to the key in its current state.
    public static func invalidState(_ d: String) -> KeyStoreError { .init(.invalidState, d) }
    /// Promoting the `next` key now would let it sign before every verifier could have fetched it.
    public static func nextNotPrePublished(_ d: String, safeAfter: Int64? = nil) -> KeyStoreError {
        .init(.nextNotPrePublished, d, safeAfter: safeAfter)
    }
    /// The imported key is already in the keyring.
    public static func duplicateKey(_ d: String) -> KeyStoreError { .init(.duplicateKey, d) }
    /// The imported key is of a type, size or algorithm Stagepass does not sign with.
    public static func unsupportedKey(_ d: String) -> KeyStoreError { .init(.unsupportedKey, d) }
    /// A file-system operation failed.
    public static func ioFailure(_ d: String) -> KeyStoreError { .init(.ioFailure, d) }
    /// Another process holds the store's lock.
    public static func locked(_ d: String) -> KeyStoreError { .init(.locked, d) }
    /// The action was committed but the audit sink refused the record.
    public static func auditFailure(_ d: String) -> KeyStoreError { .init(.auditFailure, d) }
    /// OpenSSL failed to generate, serialize or use a key.
    public static func cryptoFailure(_ d: String) -> KeyStoreError { .init(.cryptoFailure, d) }

    public static let missingPassphrase = KeyStoreError(.missingPassphrase, "")
    public static let unreadablePassphraseFile = KeyStoreError(.unreadablePassphraseFile, "")
    public static let invalidSchedule = KeyStoreError(.invalidSchedule, "")
    public static let invalidArgument = KeyStoreError(.invalidArgument, "")
    public static let notInitialized = KeyStoreError(.notInitialized, "")
    public static let wrongPassphrase = KeyStoreError(.wrongPassphrase, "")
    public static let corruptKeyFile = KeyStoreError(.corruptKeyFile, "")
    public static let missingKeyFile = KeyStoreError(.missingKeyFile, "")
    public static let insecurePermissions = KeyStoreError(.insecurePermissions, "")
    public static let corruptKeyring = KeyStoreError(.corruptKeyring, "")
    public static let noActiveKey = KeyStoreError(.noActiveKey, "")
    public static let unknownKid = KeyStoreError(.unknownKid, "")
    public static let invalidState = KeyStoreError(.invalidState, "")
    public static let nextNotPrePublished = KeyStoreError(.nextNotPrePublished, "")
    public static let duplicateKey = KeyStoreError(.duplicateKey, "")
    public static let unsupportedKey = KeyStoreError(.unsupportedKey, "")
    public static let ioFailure = KeyStoreError(.ioFailure, "")
    public static let locked = KeyStoreError(.locked, "")
    public static let auditFailure = KeyStoreError(.auditFailure, "")
    public static let cryptoFailure = KeyStoreError(.cryptoFailure, "")
}
