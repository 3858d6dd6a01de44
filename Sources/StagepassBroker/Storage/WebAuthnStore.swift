/// A registered security key (WebAuthn credential). It belongs to a ``FactorRecord`` of kind `webauthn` (state
/// `active`), whose id it shares; deleting the factor deletes the credential.
///
/// Nothing here is secret: the public key is stored as the COSE_Key bytes the authenticator sent (WebAuthn Level 2
/// §6.5.1), parsed again at every assertion.
public struct WebAuthnCredentialRecord: Sendable, Hashable {
    public var factorId: String
    /// The owner (from the factor row).
    public var userId: String
    /// The credential id (1…1023 bytes), unique across all users (§7.1 step 22).
    public var credentialId: [UInt8]
    /// The credential public key as a COSE_Key (CBOR).
    public var publicKey: [UInt8]
    /// The COSE algorithm (-7 ES256, -8 EdDSA).
    public var algorithm: Int64
    /// The last signature counter accepted (§6.1.1); 0 for authenticators that do not count.
    public var signCount: Int64
    /// The name the user gave the key ("YubiKey 5C", "laptop").
    public var name: String
    /// The authenticator model's AAGUID, 16 bytes (§6.5.1; zeros under `none` attestation).
    public var aaguid: [UInt8]
    /// Whether the UV flag was set at registration.
    public var userVerifiedAtRegistration: Bool
    /// The attestation type accepted at registration: `none` or `self` (§6.5.3).
    public var attestation: String
    public var createdAt: Int64
    public var lastUsedAt: Int64?

    public init(
        factorId: String,
        userId: String,
        credentialId: [UInt8],
        publicKey: [UInt8],
        algorithm: Int64,
        signCount: Int64,
        name: String,
        aaguid: [UInt8],
        userVerifiedAtRegistration: Bool,
        attestation: String,
        createdAt: Int64,
        lastUsedAt: Int64? = nil
    ) {
        self.factorId = factorId
        self.userId = userId
        self.credentialId = credentialId
        self.publicKey = publicKey
        self.algorithm = algorithm
        self.signCount = signCount
        self.name = name
        self.aaguid = aaguid
        self.userVerifiedAtRegistration = userVerifiedAtRegistration
        self.attestation = attestation
        self.createdAt = createdAt
        self.lastUsedAt = lastUsedAt
    }
}

/// An outstanding WebAuthn challenge. Only the SHA-256 of the challenge is stored (like session tokens); it is
/// consumed (deleted) on first use, whatever the outcome.
public struct WebAuthnChallengeRecord: Sendable, Hashable {
    public var challengeHash: [UInt8]
    public var userId: String
    /// `registration`, `signin`, `stepup` or `approval` (see ``WebAuthnPurpose``).
    public var purpose: String
    /// For `approval`: the approval request's binding (see ``WebAuthnPurpose/approval(binding:)``).
    public var binding: String?
    public var createdAt: Int64
    public var expiresAt: Int64

    public init(
        challengeHash: [UInt8],
        userId: String,
        purpose: String,
        binding: String?,
        createdAt: Int64,
        expiresAt: Int64
    ) {
        self.challengeHash = challengeHash
        self.userId = userId
        self.purpose = purpose
        self.binding = binding
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}

/// Storage of security keys and their challenges.
///
/// The two writes that guard a decision are single atomic statements: ``consumeWebAuthnChallenge(hash:)`` (a
/// challenge is used once) and ``advanceWebAuthnSignCount(factorId:to:usedAt:)`` (the counter only grows).
public protocol WebAuthnStore: Sendable {
    /// Inserts the factor row and its credential in one transaction.
    /// - Throws: ``StoreError/conflict`` when the credential id is already registered (to anyone).
    func insertWebAuthnCredential(_ credential: WebAuthnCredentialRecord, factor: FactorRecord) async throws
    /// The credential with this id, whoever owns it.
    func webAuthnCredential(credentialId: [UInt8]) async throws -> WebAuthnCredentialRecord?
    func webAuthnCredential(factorId: String) async throws -> WebAuthnCredentialRecord?
    /// The user's credentials, oldest first.
    func webAuthnCredentials(userId: String) async throws -> [WebAuthnCredentialRecord]
    /// - Throws: ``StoreError/notFound`` when there is no such credential.
    func renameWebAuthnCredential(factorId: String, name: String) async throws
    /// Compare-and-set of the signature counter (WebAuthn Level 2 §6.1.1, §7.2 step 21), in one statement: stores
    /// `newCount` and `usedAt` only if `newCount` is greater than the stored counter, or both are zero. False means
    /// the counter did not grow (a possible clone, or a concurrent use that won the race).
    func advanceWebAuthnSignCount(factorId: String, to newCount: Int64, usedAt: Int64) async throws -> Bool

    func insertWebAuthnChallenge(_ challenge: WebAuthnChallengeRecord) async throws
    /// Atomically deletes and returns the challenge with this hash (nil when unknown or already used). Expiry is
    /// the caller's check, so an expired challenge is still consumed and reported as expired.
    func consumeWebAuthnChallenge(hash: [UInt8]) async throws -> WebAuthnChallengeRecord?
    /// Deletes challenges that expired before `now`; returns how many.
    func deleteExpiredWebAuthnChallenges(now: Int64) async throws -> Int
}
