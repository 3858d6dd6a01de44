/// Why a WebAuthn registration or assertion was refused: one stable code per check of WebAuthn Level 2 §7.1 / §7.2,
/// with a `detail` that names the reason (safe to show: no key material, no secret). `detail` is not part of `==`.
///
/// ``brokerError`` maps each code onto the ``BrokerError`` the HTTP layer already knows: malformed input becomes
/// `invalid_request`, a missing key `no_factor`, a duplicate `conflict`, and every failed verification
/// `invalid_factor` (keeping this detail).
public struct WebAuthnError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Code: String, Sendable, CaseIterable {
        case invalidRequest = "invalid_request"
        case malformedCBOR = "malformed_cbor"
        case invalidClientData = "invalid_client_data"
        case wrongType = "wrong_type"
        case unknownChallenge = "unknown_challenge"
        case challengeExpired = "challenge_expired"
        case challengeMismatch = "challenge_mismatch"
        case originMismatch = "origin_mismatch"
        case crossOrigin = "cross_origin"
        case tokenBinding = "token_binding"
        case rpIdMismatch = "rp_id_mismatch"
        case userNotPresent = "user_not_present"
        case userNotVerified = "user_not_verified"
        case invalidAuthenticatorData = "invalid_authenticator_data"
        case unsupportedAttestation = "unsupported_attestation"
        case invalidAttestation = "invalid_attestation"
        case unsupportedKey = "unsupported_key"
        case invalidSignature = "invalid_signature"
        case unknownCredential = "unknown_credential"
        case credentialExists = "credential_exists"
        case possibleClone = "possible_clone"
        case noCredentials = "no_credentials"
        case tooManyCredentials = "too_many_credentials"
        case notFound = "not_found"
    }

    private let _code: Code
    /// What exactly failed, for the audit log and the person at the browser.
    public let detail: String

    private init(_ code: Code, _ detail: String) {
        _code = code
        self.detail = detail
    }

    /// The stable code (`origin_mismatch`, `possible_clone`, …).
    public var code: String { _code.rawValue }
    public var description: String { "\(code): \(detail)" }
    public static func == (l: WebAuthnError, r: WebAuthnError) -> Bool { l._code == r._code }
    public func hash(into h: inout Hasher) { h.combine(_code) }

    /// Every stable code, for documentation and tests.
    public static var allCodes: [String] { Code.allCases.map(\.rawValue) }

    /// True for a signature counter that did not grow (WebAuthn Level 2 §6.1.1): the caller should audit it as a
    /// possibly cloned authenticator, not as an ordinary wrong factor.
    public var isPossibleClone: Bool { _code == .possibleClone }

    /// The credential JSON a page posted is not the expected shape (missing member, not base64url, wrong `type`).
    public static func invalidRequest(_ d: String) -> WebAuthnError { .init(.invalidRequest, d) }
    /// The attestation object, a COSE key or authenticator extensions are not well-formed CBOR (RFC 8949).
    public static func malformedCBOR(_ d: String) -> WebAuthnError { .init(.malformedCBOR, d) }
    /// `clientDataJSON` is not a JSON object with the members of WebAuthn Level 2 §5.8.1.
    public static func invalidClientData(_ d: String) -> WebAuthnError { .init(.invalidClientData, d) }
    /// `C.type` is not `webauthn.create` (§7.1 step 7) or `webauthn.get` (§7.2 step 11).
    public static func wrongType(_ d: String) -> WebAuthnError { .init(.wrongType, d) }
    /// `C.challenge` was never issued, or was already used (single use).
    public static func unknownChallenge(_ d: String) -> WebAuthnError { .init(.unknownChallenge, d) }
    public static func challengeExpired(_ d: String) -> WebAuthnError { .init(.challengeExpired, d) }
    /// The challenge was issued for another user, another ceremony or another approval request.
    public static func challengeMismatch(_ d: String) -> WebAuthnError { .init(.challengeMismatch, d) }
    /// `C.origin` is not one of the configured origins (§7.1 step 9, §7.2 step 13).
    public static func originMismatch(_ d: String) -> WebAuthnError { .init(.originMismatch, d) }
    /// `C.crossOrigin` is true (§5.8.1): the ceremony ran in a cross-origin iframe.
    public static func crossOrigin(_ d: String) -> WebAuthnError { .init(.crossOrigin, d) }
    /// `C.tokenBinding.status` is `present`, which this server never negotiates (§7.1 step 10, §7.2 step 14).
    public static func tokenBinding(_ d: String) -> WebAuthnError { .init(.tokenBinding, d) }
    /// `rpIdHash` is not SHA-256 of the configured RP ID (§7.1 step 13, §7.2 step 15).
    public static func rpIdMismatch(_ d: String) -> WebAuthnError { .init(.rpIdMismatch, d) }
    /// The UP flag is not set (§7.1 step 14, §7.2 step 16).
    public static func userNotPresent(_ d: String) -> WebAuthnError { .init(.userNotPresent, d) }
    /// The UV flag is not set while the configuration requires user verification (§7.1 step 15, §7.2 step 17).
    public static func userNotVerified(_ d: String) -> WebAuthnError { .init(.userNotVerified, d) }
    /// Authenticator data that does not follow the layout of §6.1 / §6.5.1.
    public static func invalidAuthenticatorData(_ d: String) -> WebAuthnError { .init(.invalidAuthenticatorData, d) }
    /// An attestation statement format or type other than `none` and `packed` self-attestation (§7.1 step 18).
    public static func unsupportedAttestation(_ d: String) -> WebAuthnError { .init(.unsupportedAttestation, d) }
    /// An attestation statement that does not verify (§8.2, §8.7).
    public static func invalidAttestation(_ d: String) -> WebAuthnError { .init(.invalidAttestation, d) }
    /// A COSE key other than EC2 P-256 / ES256 or OKP Ed25519 / EdDSA, or one that is not a valid key (§7.1 step 16).
    public static func unsupportedKey(_ d: String) -> WebAuthnError { .init(.unsupportedKey, d) }
    /// The assertion signature does not verify with the stored public key (§7.2 step 20).
    public static func invalidSignature(_ d: String) -> WebAuthnError { .init(.invalidSignature, d) }
    /// The credential is not registered, or not to this user (§7.2 steps 5–7).
    public static func unknownCredential(_ d: String) -> WebAuthnError { .init(.unknownCredential, d) }
    /// The credential id is already registered (§7.1 step 22).
    public static func credentialExists(_ d: String) -> WebAuthnError { .init(.credentialExists, d) }
    /// The signature counter did not grow (§6.1.1, §7.2 step 21): the authenticator may have been cloned.
    public static func possibleClone(_ d: String) -> WebAuthnError { .init(.possibleClone, d) }
    /// The user has no registered security key.
    public static func noCredentials(_ d: String) -> WebAuthnError { .init(.noCredentials, d) }
    public static func tooManyCredentials(_ d: String) -> WebAuthnError { .init(.tooManyCredentials, d) }
    public static func notFound(_ d: String) -> WebAuthnError { .init(.notFound, d) }

    public static let invalidRequest = WebAuthnError(.invalidRequest, "")
    public static let malformedCBOR = WebAuthnError(.malformedCBOR, "")
    public static let invalidClientData = WebAuthnError(.invalidClientData, "")
    public static let wrongType = WebAuthnError(.wrongType, "")
    public static let unknownChallenge = WebAuthnError(.unknownChallenge, "")
    public static let challengeExpired = WebAuthnError(.challengeExpired, "")
    public static let challengeMismatch = WebAuthnError(.challengeMismatch, "")
    public static let originMismatch = WebAuthnError(.originMismatch, "")
    public static let crossOrigin = WebAuthnError(.crossOrigin, "")
    public static let tokenBinding = WebAuthnError(.tokenBinding, "")
    public static let rpIdMismatch = WebAuthnError(.rpIdMismatch, "")
    public static let userNotPresent = WebAuthnError(.userNotPresent, "")
    public static let userNotVerified = WebAuthnError(.userNotVerified, "")
    public static let invalidAuthenticatorData = WebAuthnError(.invalidAuthenticatorData, "")
    public static let unsupportedAttestation = WebAuthnError(.unsupportedAttestation, "")
    public static let invalidAttestation = WebAuthnError(.invalidAttestation, "")
    public static let unsupportedKey = WebAuthnError(.unsupportedKey, "")
    public static let invalidSignature = WebAuthnError(.invalidSignature, "")
    public static let unknownCredential = WebAuthnError(.unknownCredential, "")
    public static let credentialExists = WebAuthnError(.credentialExists, "")
    public static let possibleClone = WebAuthnError(.possibleClone, "")
    public static let noCredentials = WebAuthnError(.noCredentials, "")
    public static let tooManyCredentials = WebAuthnError(.tooManyCredentials, "")
    public static let notFound = WebAuthnError(.notFound, "")

    /// The ``BrokerError`` for the HTTP contract: `invalid_request` (malformed JSON shape), `no_factor` (no key
    /// registered), `conflict` (duplicate credential, too many keys), `not_found`, and `invalid_factor` for every
    /// failed check, with this error's code and detail in the message.
    public var brokerError: BrokerError {
        switch _code {
        case .invalidRequest: return .invalidRequest("security key response: \(detail)")
        case .noCredentials: return .noFactor(detail)
        case .credentialExists, .tooManyCredentials: return .conflict(detail)
        case .notFound: return .notFound(detail)
        default: return .invalidFactor("security key refused (\(code)): \(detail)")
        }
    }
}

extension WebAuthnError {
    /// Wraps a CBOR decoding error, naming where it happened.
    static func cbor(_ e: CBORError, in what: String) -> WebAuthnError {
        .malformedCBOR("\(what): \(e.code): \(e.detail)")
    }
}
