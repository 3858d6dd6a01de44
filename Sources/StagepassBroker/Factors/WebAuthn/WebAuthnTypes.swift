public import StagepassJOSE

/// Where WebAuthn ceremonies are valid: the Relying Party ID, its display name and the exact origins pages are
/// served from (WebAuthn Level 2 §5.1.4.1 / §13.4.9).
///
/// The default, ``localDevelopment``, is RP ID `localhost` with origins `http://localhost:8080` and
/// `http://127.0.0.1:8080` (the dev server's loopback addresses; browsers treat `http://localhost` as a secure
/// context). Browsers only let a page use an RP ID equal to, or a registrable suffix of, its own host, so with RP
/// ID `localhost` the key works from `http://localhost:8080`; the `127.0.0.1` origin is accepted by the server but
/// a browser refuses the ceremony there. A deployment sets its own: RP ID `stagepass.example.com`, origins
/// `["https://stagepass.example.com"]`. Changing the RP ID later orphans every registered key (credentials are
/// scoped to it).
public struct WebAuthnConfiguration: Sendable, Hashable {
    /// The RP ID (a host name, no scheme or port); `rpIdHash` in authenticator data must be its SHA-256.
    public var rpID: String
    /// Shown by the browser and the authenticator.
    public var rpName: String
    /// Origins accepted in `clientDataJSON` (exact match: scheme, host and port; §7.1 step 9, §7.2 step 13).
    public var origins: [String]
    /// What the options ask for (§5.10.6); `required` also makes the server refuse a response without UV.
    public var userVerification: UserVerificationRequirement
    /// Seconds a challenge stays valid (default 300).
    public var challengeLifetime: Int64

    public init(
        rpID: String,
        rpName: String,
        origins: [String],
        userVerification: UserVerificationRequirement = .preferred,
        challengeLifetime: Int64 = 300
    ) {
        self.rpID = rpID
        self.rpName = rpName
        self.origins = origins
        self.userVerification = userVerification
        self.challengeLifetime = challengeLifetime
    }

    /// RP ID `localhost`, origins `http://localhost:8080` and `http://127.0.0.1:8080`, UV preferred, 5-minute
    /// challenges: what `stagepass serve` uses in dev mode unless configured otherwise.
    public static let localDevelopment = WebAuthnConfiguration(
        rpID: "localhost",
        rpName: "Stagepass",
        origins: ["http://localhost:8080", "http://127.0.0.1:8080"]
    )
}

/// `UserVerificationRequirement` (WebAuthn Level 2 §5.10.6).
public enum UserVerificationRequirement: String, Sendable, Hashable, CaseIterable {
    case required
    case preferred
    case discouraged
}

/// What an assertion is for. The purpose is stored with the challenge and, for approvals, folded into the
/// challenge bytes, so an assertion made for one purpose is refused for any other.
public enum WebAuthnPurpose: Sendable, Hashable {
    /// The second factor of a sign-in (a pending session).
    case signIn
    /// A step-up on an MFA session.
    case stepUp
    /// Approving one pipeline request. `binding` identifies the request: Stagepass passes
    /// `TokenBroker.binding(request)`, the hex SHA-256 of the request id, client, role, stage, audience, run id,
    /// commit and triggering user.
    case approval(binding: String)

    /// The value of `webauthn_challenges.purpose`.
    var storedName: String {
        switch self {
        case .signIn: return "signin"
        case .stepUp: return "stepup"
        case .approval: return "approval"
        }
    }

    var binding: String? {
        if case .approval(let b) = self { return b }
        return nil
    }
}

/// A registered security key as shown to its owner and admins (no key material).
public struct WebAuthnCredentialInfo: Sendable, Hashable, Codable {
    public var factorId: String
    public var name: String
    /// `ES256` or `EdDSA`.
    public var algorithm: String
    /// The AAGUID as a UUID string (all zeros under `none` attestation).
    public var aaguid: String
    /// The credential id, base64url (what `allowCredentials` carries).
    public var credentialId: String
    /// `none` or `self`.
    public var attestation: String
    public var userVerifiedAtRegistration: Bool
    public var signCount: Int64
    public var createdAt: Int64
    public var lastUsedAt: Int64?

    init(_ r: WebAuthnCredentialRecord) {
        factorId = r.factorId
        name = r.name
        algorithm = COSEAlgorithm(rawValue: r.algorithm)?.name ?? String(r.algorithm)
        aaguid = WebAuthnCredentialInfo.uuid(r.aaguid)
        credentialId = Base64URL.encode(r.credentialId)
        attestation = r.attestation
        userVerifiedAtRegistration = r.userVerifiedAtRegistration
        signCount = r.signCount
        createdAt = r.createdAt
        lastUsedAt = r.lastUsedAt
    }

    static func uuid(_ b: [UInt8]) -> String {
        let hex = HashChainAuditLog.hex(b)
        guard hex.count == 32 else { return hex }
        let c = Array(hex)
        return [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(c[$0]) }.joined(separator: "-")
    }
}

/// The outcome of a verified assertion.
public struct WebAuthnAssertionResult: Sendable, Hashable {
    public var factorId: String
    public var credentialName: String
    /// The UV flag (§6.1): the authenticator verified the user (PIN or biometric), not only their presence.
    public var userVerified: Bool
    /// The counter now stored.
    public var signCount: Int64

    /// The RFC 8176 §2 values this assertion earns: `hwk` (proof of possession of a hardware-secured key), plus
    /// `user` when the authenticator verified the user (see ``AMR/userPresence``).
    public var amr: [String] { userVerified ? [AMR.webauthn, AMR.userPresence] : [AMR.webauthn] }
}

/// `PublicKeyCredentialCreationOptions` (WebAuthn Level 2 §5.4) for `navigator.credentials.create()`.
///
/// ``json`` is the form a page hands to `PublicKeyCredential.parseCreationOptionsFromJSON()` (or decodes itself):
/// binary members as base64url strings.
public struct WebAuthnCreationOptions: Sendable, Hashable {
    public var challenge: [UInt8]
    public var rpID: String
    public var rpName: String
    /// `user.id`: the user handle, the account's opaque random id (§5.4.3: no personal information).
    public var userHandle: [UInt8]
    public var userName: String
    public var userDisplayName: String
    /// `pubKeyCredParams`, in order of preference.
    public var algorithms: [COSEAlgorithm]
    /// The user's existing credential ids (§5.4 `excludeCredentials`): the same key is not registered twice.
    public var excludeCredentials: [[UInt8]]
    /// Milliseconds (§5.4 `timeout`).
    public var timeout: Int64
    public var userVerification: UserVerificationRequirement
    /// `attestation` conveyance (§5.4.7); always `none`: Stagepass does not check authenticator models.
    public var attestation: String
    /// When the challenge expires (unix seconds).
    public var expiresAt: Int64

    /// ```json
    /// {"rp":{"id":"localhost","name":"Stagepass"},
    ///  "user":{"id":"<b64url>","name":"alice","displayName":"alice"},
    ///  "challenge":"<b64url>",
    ///  "pubKeyCredParams":[{"type":"public-key","alg":-7},{"type":"public-key","alg":-8}],
    ///  "timeout":300000,"excludeCredentials":[{"type":"public-key","id":"<b64url>"}],
    ///  "authenticatorSelection":{"residentKey":"discouraged","requireResidentKey":false,
    ///                            "userVerification":"preferred"},
    ///  "attestation":"none"}
    /// ```
    public var json: JSONValue {
        .object([
            "rp": .object(["id": .string(rpID), "name": .string(rpName)]),
            "user": .object([
                "id": .string(Base64URL.encode(userHandle)), "name": .string(userName),
                "displayName": .string(userDisplayName),
            ]),
            "challenge": .string(Base64URL.encode(challenge)),
            "pubKeyCredParams": .array(
                algorithms.map { .object(["type": .string("public-key"), "alg": .int($0.rawValue)]) }
            ),
            "timeout": .int(timeout),
            "excludeCredentials": .array(
                excludeCredentials.map {
                    .object(["type": .string("public-key"), "id": .string(Base64URL.encode($0))])
                }
            ),
            "authenticatorSelection": .object([
                "residentKey": .string("discouraged"), "requireResidentKey": .bool(false),
                "userVerification": .string(userVerification.rawValue),
            ]),
            "attestation": .string(attestation),
        ])
    }

    /// ``json`` serialized.
    public var jsonString: String { json.serialized() }
}

/// `PublicKeyCredentialRequestOptions` (WebAuthn Level 2 §5.5) for `navigator.credentials.get()`.
public struct WebAuthnRequestOptions: Sendable, Hashable {
    public var challenge: [UInt8]
    public var rpID: String
    /// The user's credential ids (§5.5 `allowCredentials`).
    public var allowCredentials: [[UInt8]]
    public var timeout: Int64
    public var userVerification: UserVerificationRequirement
    public var purpose: WebAuthnPurpose
    public var expiresAt: Int64

    /// ```json
    /// {"challenge":"<b64url>","rpId":"localhost","timeout":300000,
    ///  "allowCredentials":[{"type":"public-key","id":"<b64url>"}],"userVerification":"preferred"}
    /// ```
    public var json: JSONValue {
        .object([
            "challenge": .string(Base64URL.encode(challenge)),
            "rpId": .string(rpID),
            "timeout": .int(timeout),
            "allowCredentials": .array(
                allowCredentials.map { .object(["type": .string("public-key"), "id": .string(Base64URL.encode($0))]) }
            ),
            "userVerification": .string(userVerification.rawValue),
        ])
    }

    public var jsonString: String { json.serialized() }
}
