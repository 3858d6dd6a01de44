/// An error from the JOSE core: bad encodings, unusable keys, refused algorithms, OpenSSL failures.
///
/// A struct over a private enum (the NIO/Hummingbird pattern) so that cases can be added without breaking
/// callers; `code` is stable, `detail` is for humans and is not part of `==`.
public struct JOSEError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Code: String, Sendable {
        case invalidBase64URL = "invalid_base64url"
        case invalidJSON = "invalid_json"
        case invalidKey = "invalid_key"
        case weakKey = "weak_key"
        case unsupportedAlgorithm = "unsupported_algorithm"
        case wrongPassphrase = "wrong_passphrase"
        case invalidPEM = "invalid_pem"
        case cryptoFailure = "crypto_failure"
        case invalidSignature = "invalid_signature"
    }

    private let _code: Code
    /// Human-readable context; never contains key material.
    public let detail: String

    private init(_ code: Code, _ detail: String) {
        self._code = code
        self.detail = detail
    }

    /// The stable machine-readable code.
    public var code: String { _code.rawValue }
    public var description: String { "\(_code.rawValue): \(detail)" }

    public static func == (lhs: JOSEError, rhs: JOSEError) -> Bool { lhs._code == rhs._code }
    public func hash(into hasher: inout Hasher) { hasher.combine(_code) }

    public static func invalidBase64URL(_ d: String = "not strict base64url") -> JOSEError {
        .init(.invalidBase64URL, d)
    }
    public static func invalidJSON(_ d: String) -> JOSEError { .init(.invalidJSON, d) }
    public static func invalidKey(_ d: String) -> JOSEError { .init(.invalidKey, d) }
    public static func weakKey(_ d: String) -> JOSEError { .init(.weakKey, d) }
    public static func unsupportedAlgorithm(_ d: String) -> JOSEError { .init(.unsupportedAlgorithm, d) }
    public static func wrongPassphrase(_ d: String = "the passphrase does not decrypt this key") -> JOSEError {
        .init(.wrongPassphrase, d)
    }
    public static func invalidPEM(_ d: String) -> JOSEError { .init(.invalidPEM, d) }
    public static func cryptoFailure(_ d: String) -> JOSEError { .init(.cryptoFailure, d) }
    public static func invalidSignature(_ d: String) -> JOSEError { .init(.invalidSignature, d) }

    public static let invalidBase64URL = JOSEError(.invalidBase64URL, "")
    public static let invalidJSON = JOSEError(.invalidJSON, "")
    public static let invalidKey = JOSEError(.invalidKey, "")
    public static let weakKey = JOSEError(.weakKey, "")
    public static let unsupportedAlgorithm = JOSEError(.unsupportedAlgorithm, "")
    public static let wrongPassphrase = JOSEError(.wrongPassphrase, "")
    public static let invalidPEM = JOSEError(.invalidPEM, "")
    public static let cryptoFailure = JOSEError(.cryptoFailure, "")
    public static let invalidSignature = JOSEError(.invalidSignature, "")
}
