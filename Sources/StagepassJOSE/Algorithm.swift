/// The JWS algorithms Stagepass signs and verifies (RFC 7518 §3.1, RFC 8037 §3.1).
///
/// Deliberately closed: no `none`, no HMAC (RFC 8725 §3.1, §3.2): the verifier holds public keys only, so an
/// HMAC "key" could only be a public key misused (the classic alg-confusion attack).
public enum JWSAlgorithm: String, Sendable, Hashable, CaseIterable {
    /// ECDSA P-256 with SHA-256; signature is raw `r || s`, 64 bytes (RFC 7518 §3.4).
    case ES256
    /// Ed25519 (RFC 8037 §3.1).
    case EdDSA
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3).
    case RS256
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, salt length 32 (RFC 7518 §3.5).
    case PS256

    /// Parses an `alg` value; refuses everything outside the allow-list.
    /// - Throws: ``JOSEError/unsupportedAlgorithm``.
    public init(name: String) throws(JOSEError) {
        guard let a = JWSAlgorithm(rawValue: name) else {
            throw .unsupportedAlgorithm("algorithm \(name) is not accepted")
        }
        self = a
    }

    /// The key type this algorithm needs.
    public var keyType: KeyType {
        switch self {
        case .ES256: return .ecP256
        case .EdDSA: return .ed25519
        case .RS256, .PS256: return .rsa
        }
    }
}

/// The kinds of asymmetric key Stagepass handles.
public enum KeyType: String, Sendable, Hashable {
    case ecP256 = "EC P-256"
    case ed25519 = "OKP Ed25519"
    case rsa = "RSA"
}
