/// Why a token was rejected: a closed set of stable codes, in the order the verifier checks them
/// (Specs/token-profile.md, "Error codes"). The raw value is the C ABI's result code.
public enum VerificationErrorCode: Int32, Sendable, Hashable, CaseIterable {
    case malformed = 1
    case wrongType = 2
    case unsupportedCriticalHeader = 3
    case forbiddenHeader = 4
    case unknownKey = 5
    case unsupportedAlgorithm = 6
    case badSignature = 7
    case wrongIssuer = 8
    case wrongAudience = 9
    case missingClaim = 10
    case expired = 11
    case notYetValid = 12
    case issuedInFuture = 13
    case lifetimeExceeded = 14
    case roleMismatch = 15
    case stageMismatch = 16
    case pipelineMismatch = 17
    case revoked = 18
    case statusUnavailable = 19
    /// A token bound to a key (`cnf.jkt`) was presented without a DPoP proof (RFC 9449 §7.1).
    case dpopRequired = 20
    /// The DPoP proof fails a check of RFC 9449 §4.3 (form, typ, alg, jwk, signature, htm, htu, iat, ath).
    case badDPoPProof = 21
    /// The proof is valid but signed by another key than the token's `cnf.jkt`, or the token is not bound.
    case dpopKeyMismatch = 22
    /// The proof's `jti` was already accepted (RFC 9449 §11.1).
    case dpopReplayed = 23
    /// The replay cache is full of unexpired proofs: refused rather than forget one (fail closed).
    case dpopReplayCacheFull = 24

    /// The stable snake_case name used on the wire, in the CLI and in the C ABI.
    public var name: String {
        switch self {
        case .malformed: return "malformed"
        case .wrongType: return "wrong_type"
        case .unsupportedCriticalHeader: return "unsupported_critical_header"
        case .forbiddenHeader: return "forbidden_header"
        case .unknownKey: return "unknown_key"
        case .unsupportedAlgorithm: return "unsupported_algorithm"
        case .badSignature: return "bad_signature"
        case .wrongIssuer: return "wrong_issuer"
        case .wrongAudience: return "wrong_audience"
        case .missingClaim: return "missing_claim"
        case .expired: return "expired"
        case .notYetValid: return "not_yet_valid"
        case .issuedInFuture: return "issued_in_future"
        case .lifetimeExceeded: return "lifetime_exceeded"
        case .roleMismatch: return "role_mismatch"
        case .stageMismatch: return "stage_mismatch"
        case .pipelineMismatch: return "pipeline_mismatch"
        case .revoked: return "revoked"
        case .statusUnavailable: return "status_unavailable"
        case .dpopRequired: return "dpop_required"
        case .badDPoPProof: return "bad_dpop_proof"
        case .dpopKeyMismatch: return "dpop_key_mismatch"
        case .dpopReplayed: return "dpop_replayed"
        case .dpopReplayCacheFull: return "dpop_replay_cache_full"
        }
    }

    public init?(name: String) {
        guard let c = VerificationErrorCode.allCases.first(where: { $0.name == name }) else { return nil }
        self = c
    }
}

/// A rejected token: the first failed check and a short reason. `detail` never contains the token.
/// Equality compares the code only.
public struct VerificationError: Error, Sendable, Hashable, CustomStringConvertible {
    public let code: VerificationErrorCode
    public let detail: String

    public init(_ code: VerificationErrorCode, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { "\(code.name): \(detail)" }
    public static func == (a: VerificationError, b: VerificationError) -> Bool { a.code == b.code }
    public func hash(into h: inout Hasher) { h.combine(code) }
}
