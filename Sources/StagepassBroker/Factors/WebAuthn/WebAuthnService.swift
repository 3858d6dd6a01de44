import Foundation
import StagepassJOSE

/// Security keys (WebAuthn Level 2): registration (§7.1), authentication (§7.2), listing, renaming and removal.
///
/// - Algorithms: ES256 (COSE -7) and EdDSA/Ed25519 (COSE -8) only (``COSEKey``).
/// - Attestation: `none` (§8.7) and `packed` self-attestation (§8.2, no `x5c`); the options ask for `none`.
///   Authenticator models are not checked (no trust anchors): a key proves possession, not its make.
/// - User verification `preferred` by default; the UV flag is recorded and earns `user` in `amr`.
/// - Challenges: 32 bytes, stored (as SHA-256) with their user, purpose and expiry, consumed on first use. The last
///   16 bytes are SHA-256 over the user and the purpose (for approvals, the request's binding), so the signed
///   `clientDataJSON` itself commits to what the assertion is for.
/// - The signature counter must grow unless it is zero on both sides (§6.1.1); a counter that does not is refused
///   as ``WebAuthnError/possibleClone(_:)`` and audited with reason `possible_clone`.
///
/// Every registration, use and refusal is audited (`factor.enrol`, `factor.verify`, `factor.rename`,
/// `factor.remove`, with `factors` `["hwk"]` or `["hwk","user"]`).
///
/// ```swift
/// let options = try webauthn.beginRegistration(userId: user.id, userName: "alice")
/// // page: navigator.credentials.create({publicKey: decode(options.json)}) → POST credential JSON
/// let key = try webauthn.finishRegistration(userId: user.id, name: "YubiKey", credentialJSON: posted)
/// let request = try webauthn.beginAssertion(userId: user.id, purpose: .stepUp)
/// let result = try webauthn.finishAssertion(userId: user.id, purpose: .stepUp, credentialJSON: posted2)
/// ```
public struct WebAuthnService: Sendable {
    public let store: any BrokerStore
    public let configuration: WebAuthnConfiguration
    public let clock: BrokerClock
    public let audit: any AuditSink

    /// Registered keys per user, at most.
    public static let maximumCredentialsPerUser = 20
    /// The largest credential JSON accepted from a page, in bytes.
    public static let maximumResponseBytes = 64 * 1024
    /// The algorithms offered in `pubKeyCredParams`, in order of preference.
    public static let algorithms: [COSEAlgorithm] = [.es256, .eddsa]

    public init(
        store: any BrokerStore,
        configuration: WebAuthnConfiguration = .localDevelopment,
        clock: BrokerClock,
        audit: any AuditSink
    ) {
        self.store = store
        self.configuration = configuration
        self.clock = clock
        self.audit = audit
    }

    /// The user handle (`user.id`, §5.4.3) of a Stagepass user: the UTF-8 bytes of the account's random id
    /// (`u_…`), which carries no personal information.
    public static func userHandle(userId: String) -> [UInt8] { Array(userId.utf8) }

    // MARK: challenges

    /// What a challenge was issued for.
    enum Scope: Equatable {
        case registration
        case assertion(WebAuthnPurpose)

        var storedName: String {
            switch self {
            case .registration: return "registration"
            case .assertion(let p): return p.storedName
            }
        }
        var binding: String? {
            if case .assertion(let p) = self { return p.binding }
            return nil
        }
        var label: String {
            switch self {
            case .registration: return "registration"
            case .assertion(.signIn): return "sign-in"
            case .assertion(.stepUp): return "step-up"
            case .assertion(.approval): return "approval"
            }
        }
    }

    /// The last 16 bytes of a challenge: SHA-256 over a domain tag, the user and the scope (with its binding).
    static func challengeTail(userId: String, scope: Scope) throws -> [UInt8] {
        let fields = ["stagepass-webauthn-challenge-v1", userId, scope.storedName, scope.binding ?? ""]
        let joined = fields.map { "\($0.utf8.count):\($0)" }.joined()
        return Array(try Crypto.sha256(Array(joined.utf8)).prefix(16))
    }

    /// Issues and stores a challenge: 16 random bytes ‖ ``challengeTail(userId:scope:)`` (32 bytes in all, §13.4.3
    /// asks for at least 16 random bytes).
    private func issueChallenge(userId: String, scope: Scope) async throws -> (challenge: [UInt8], expiresAt: Int64) {
        let now = clock.now()
        _ = try await store.deleteExpiredWebAuthnChallenges(now: now)  // opportunistic sweep
        let challenge = try Crypto.randomBytes(16) + Self.challengeTail(userId: userId, scope: scope)
        let expiresAt = now + configuration.challengeLifetime
        try await store.insertWebAuthnChallenge(
            WebAuthnChallengeRecord(
                challengeHash: try Crypto.sha256(challenge),
                userId: userId,
                purpose: scope.storedName,
                binding: scope.binding,
                createdAt: now,
                expiresAt: expiresAt
            )
        )
        return (challenge, expiresAt)
    }

    /// Consumes the challenge `C.challenge` names and checks it was issued to this user, for this scope, and is
    /// still valid (§7.1 step 8, §7.2 step 12). The stored hash is compared in constant time, and the derived tail
    /// again, so an assertion for approval A can never pass as one for approval B.
    private func consumeChallenge(_ challenge: [UInt8], userId: String, scope: Scope) async throws {
        let hash = try Crypto.sha256(challenge)
        guard challenge.count == 32, let record = try await store.consumeWebAuthnChallenge(hash: hash),
            Crypto.constantTimeEqual(record.challengeHash, hash)
        else {
            throw WebAuthnError.unknownChallenge("the challenge was not issued by this server, or was already used")
        }
        guard clock.now() < record.expiresAt else {
            throw WebAuthnError.challengeExpired("the challenge expired; start again")
        }
        guard record.userId == userId else {
            throw WebAuthnError.challengeMismatch("the challenge was issued for another account")
        }
        guard record.purpose == scope.storedName else {
            throw WebAuthnError.challengeMismatch(
                "the challenge was issued for a \(record.purpose) ceremony, not \(scope.label)"
            )
        }
        let expectedTail = try Self.challengeTail(userId: userId, scope: scope)
        guard record.binding == scope.binding, Crypto.constantTimeEqual(Array(challenge.suffix(16)), expectedTail)
        else {
            throw WebAuthnError.challengeMismatch("the assertion was made for a different approval request")
        }
    }

    // MARK: registration (§7.1)

    /// Starts registering a security key: stores a registration challenge and returns the creation options.
    /// - Parameters:
    ///   - userId: the account's id (its UTF-8 bytes become the user handle).
    ///   - userName: shown by the browser as `user.name` and `user.displayName`.
    /// - Throws: ``WebAuthnError/notFound(_:)`` for an unknown user, ``WebAuthnError/tooManyCredentials(_:)``.
    public func beginRegistration(userId: String, userName: String) async throws -> WebAuthnCreationOptions {
        guard try await store.user(id: userId) != nil else { throw WebAuthnError.notFound("no such user") }
        let existing = try await store.webAuthnCredentials(userId: userId)
        guard existing.count < Self.maximumCredentialsPerUser else {
            throw WebAuthnError.tooManyCredentials(
                "at most \(Self.maximumCredentialsPerUser) security keys per account; remove one first"
            )
        }
        let (challenge, expiresAt) = try await issueChallenge(userId: userId, scope: .registration)
        return WebAuthnCreationOptions(
            challenge: challenge,
            rpID: configuration.rpID,
            rpName: configuration.rpName,
            userHandle: Self.userHandle(userId: userId),
            userName: userName,
            userDisplayName: userName,
            algorithms: Self.algorithms,
            excludeCredentials: existing.map(\.credentialId),
            timeout: configuration.challengeLifetime * 1000,
            userVerification: configuration.userVerification,
            attestation: "none",
            expiresAt: expiresAt
        )
    }

    /// Verifies a registration response (WebAuthn Level 2 §7.1) and stores the key as an active `webauthn` factor.
    ///
    /// `credentialJSON` is what the page posts (base64url members; other members such as `transports` or
    /// `clientExtensionResults` are ignored):
    /// `{"id":"…","rawId":"…","type":"public-key","response":{"clientDataJSON":"…","attestationObject":"…"}}`
    /// - Parameters:
    ///   - name: the key's name, 1–64 characters without control characters.
    /// - Returns: the stored key.
    /// - Throws: ``WebAuthnError`` naming the failed check (audited as `factor.enrol` / `failure`).
    @discardableResult
    public func finishRegistration(
        userId: String,
        name: String,
        credentialJSON: String,
        authorisedBy: String? = nil
    )
        async throws -> WebAuthnCredentialInfo
    {
        let userName = try await store.user(id: userId)?.name
        do {
            let keyName = try Self.validName(name)
            let credential = try PostedCredential(json: credentialJSON, assertion: false)
            let client = try ClientData(credential.clientDataJSON)
            try await consumeChallenge(client.challenge, userId: userId, scope: .registration)
            try client.check(type: "webauthn.create", origins: configuration.origins)  // §7.1 steps 7, 9, 10
            let clientDataHash = try Crypto.sha256(credential.clientDataJSON)  // §7.1 step 11
            // §7.1 step 12: decode the attestation object (§6.5.4).
            let object: CBOR
            do throws(CBORError) { object = try CBORDecoder.decode(credential.attestationObject) } catch {
                throw WebAuthnError.cbor(error, in: "attestation object")
            }
            guard let entries = object.mapValue else {
                throw WebAuthnError.malformedCBOR("the attestation object is not a CBOR map (§6.5.4)")
            }
            guard entries.count == 3, let fmt = object[text: "fmt"]?.textValue,
                let attStmt = object[text: "attStmt"], attStmt.mapValue != nil,
                let authDataBytes = object[text: "authData"]?.bytesValue
            else {
                throw WebAuthnError.malformedCBOR(
                    "the attestation object must hold exactly fmt (text), attStmt (map) and authData (bytes)"
                )
            }
            let authData = try AuthenticatorData(authDataBytes)
            try checkAuthenticatorData(authData)  // §7.1 steps 13–15
            guard let attested = authData.attestedCredential else {
                throw WebAuthnError.invalidAuthenticatorData("the AT flag is not set: no credential was created")
            }
            guard attested.credentialId == credential.rawId else {
                throw WebAuthnError.invalidRequest("rawId is not the credential id in the authenticator data")
            }
            // §7.1 step 16: the key's algorithm was one we offered (COSEKey already refuses the others).
            // §7.1 steps 18–19: the attestation statement.
            let attestation = try verifyAttestation(
                fmt: fmt,
                attStmt: attStmt,
                authData: authData,
                key: attested.publicKey,
                clientDataHash: clientDataHash
            )
            // §7.1 step 22: a credential id is registered once, to one account.
            if try await store.webAuthnCredential(credentialId: attested.credentialId) != nil {
                throw WebAuthnError.credentialExists("this security key is already registered")
            }
            guard try await store.webAuthnCredentials(userId: userId).count < Self.maximumCredentialsPerUser else {
                throw WebAuthnError.tooManyCredentials("at most \(Self.maximumCredentialsPerUser) security keys")
            }
            guard try await store.user(id: userId) != nil else { throw WebAuthnError.notFound("no such user") }
            // §7.1 step 23: store the credential.
            let now = clock.now()
            let factorId = "f_" + Base64URL.encode(try Crypto.randomBytes(12))
            let record = WebAuthnCredentialRecord(
                factorId: factorId,
                userId: userId,
                credentialId: attested.credentialId,
                publicKey: attested.publicKeyBytes,
                algorithm: attested.publicKey.algorithm.rawValue,
                signCount: Int64(authData.signCount),
                name: keyName,
                aaguid: attested.aaguid,
                userVerifiedAtRegistration: authData.userVerified,
                attestation: attestation,
                createdAt: now
            )
            do {
                try await store.insertWebAuthnCredential(
                    record,
                    factor: FactorRecord(
                        id: factorId,
                        userId: userId,
                        kind: .webauthn,
                        state: .active,
                        secretBox: nil,
                        createdAt: now
                    )
                )
            } catch let e as StoreError where e == .conflict {
                throw WebAuthnError.credentialExists("this security key is already registered")
            }
            try await audit.record(
                AuditEvent(
                    action: "factor.enrol",
                    actor: userName,
                    subject: userName,
                    factors: Self.factors(userVerified: authData.userVerified),
                    details: FactorService.authorised(
                        [
                            "factor_id": factorId, "method": "webauthn", "name": keyName,
                            "alg": attested.publicKey.algorithm.name, "attestation": attestation,
                            "aaguid": WebAuthnCredentialInfo.uuid(attested.aaguid),
                            "user_verified": String(authData.userVerified),
                        ],
                        by: authorisedBy
                    )
                )
            )
            return WebAuthnCredentialInfo(record)
        } catch let e as WebAuthnError {
            try await audit.record(
                AuditEvent(
                    action: "factor.enrol",
                    actor: userName,
                    subject: userName,
                    result: "failure",
                    reason: e.code,
                    factors: [AMR.webauthn],
                    details: ["method": "webauthn", "detail": e.detail]
                )
            )
            throw e
        }
    }

    /// §7.1 steps 18–19 / §8: `none` (§8.7: `attStmt` is empty) and `packed` self-attestation (§8.2: `alg` and
    /// `sig`, no `x5c`; `sig` is over `authData ‖ clientDataHash` with the credential key itself, and `alg` is
    /// the key's algorithm). Returns the attestation type (`none` or `self`, §6.5.3).
    private func verifyAttestation(
        fmt: String,
        attStmt: CBOR,
        authData: AuthenticatorData,
        key: COSEKey,
        clientDataHash: [UInt8]
    ) throws -> String {
        let statement = attStmt.mapValue ?? []
        switch fmt {
        case "none":
            guard statement.isEmpty else {
                throw WebAuthnError.invalidAttestation("a none attestation statement must be empty (§8.7)")
            }
            return "none"
        case "packed":
            if attStmt[text: "x5c"] != nil {
                throw WebAuthnError.unsupportedAttestation(
                    "packed attestation with a certificate chain (x5c) is not accepted; only self-attestation"
                )
            }
            if attStmt[text: "ecdaaKeyId"] != nil {
                throw WebAuthnError.unsupportedAttestation("ECDAA attestation is not accepted")
            }
            guard statement.count == 2, let alg = attStmt[text: "alg"]?.int, let sig = attStmt[text: "sig"]?.bytesValue
            else {
                throw WebAuthnError.invalidAttestation(
                    "a packed self-attestation statement holds exactly alg (integer) and sig (bytes) (§8.2)"
                )
            }
            guard alg == key.algorithm.rawValue else {
                throw WebAuthnError.invalidAttestation(
                    "attStmt alg \(alg) does not match the credential key's algorithm \(key.algorithm.rawValue)"
                        + " (§8.2)"
                )
            }
            guard key.verify(signature: sig, over: authData.raw + clientDataHash) else {
                throw WebAuthnError.invalidAttestation("the self-attestation signature does not verify (§8.2)")
            }
            return "self"
        default:
            throw WebAuthnError.unsupportedAttestation(
                "attestation format '\(fmt)' is not accepted (only none and packed self-attestation)"
            )
        }
    }

    /// §7.1 steps 13–15 and §7.2 steps 15–17: RP ID hash, UP, and UV when required.
    private func checkAuthenticatorData(_ authData: AuthenticatorData) throws {
        let expected = try Crypto.sha256(Array(configuration.rpID.utf8))
        guard Crypto.constantTimeEqual(authData.rpIdHash, expected) else {
            throw WebAuthnError.rpIdMismatch(
                "the authenticator data is scoped to another RP ID (expected SHA-256 of '\(configuration.rpID)')"
            )
        }
        guard authData.userPresent else {
            throw WebAuthnError.userNotPresent("the authenticator did not test user presence (UP flag clear)")
        }
        if configuration.userVerification == .required, !authData.userVerified {
            throw WebAuthnError.userNotVerified("user verification is required (UV flag clear)")
        }
    }

    // MARK: authentication (§7.2)

    /// Starts an assertion for `purpose`: stores a challenge and returns the request options, listing the user's
    /// keys in `allowCredentials`.
    /// - Throws: ``WebAuthnError/noCredentials(_:)`` when the user has no security key.
    public func beginAssertion(userId: String, purpose: WebAuthnPurpose) async throws -> WebAuthnRequestOptions {
        let keys = try await store.webAuthnCredentials(userId: userId)
        guard !keys.isEmpty else { throw WebAuthnError.noCredentials("no security key is registered") }
        let (challenge, expiresAt) = try await issueChallenge(userId: userId, scope: .assertion(purpose))
        return WebAuthnRequestOptions(
            challenge: challenge,
            rpID: configuration.rpID,
            allowCredentials: keys.map(\.credentialId),
            timeout: configuration.challengeLifetime * 1000,
            userVerification: configuration.userVerification,
            purpose: purpose,
            expiresAt: expiresAt
        )
    }

    /// Verifies an assertion (WebAuthn Level 2 §7.2) for `purpose` and advances the key's signature counter.
    ///
    /// `credentialJSON` is what the page posts:
    /// `{"id":"…","rawId":"…","type":"public-key","response":{"clientDataJSON":"…","authenticatorData":"…",
    /// "signature":"…","userHandle":"…"|null}}` (base64url; `userHandle` optional).
    /// - Throws: ``WebAuthnError`` naming the failed check; ``WebAuthnError/possibleClone(_:)`` (see
    ///   ``WebAuthnError/isPossibleClone``) when the counter did not grow. Every refusal is audited as
    ///   `factor.verify` (`failure`, or `denied` for a possible clone).
    public func finishAssertion(
        userId: String,
        purpose: WebAuthnPurpose,
        credentialJSON: String
    ) async throws
        -> WebAuthnAssertionResult
    {
        let userName = try await store.user(id: userId)?.name
        var details = ["method": "webauthn", "purpose": purpose.storedName]
        if let b = purpose.binding { details["binding"] = b }
        do {
            let credential = try PostedCredential(json: credentialJSON, assertion: true)
            let client = try ClientData(credential.clientDataJSON)
            // The challenge is consumed first, so every attempt, good or bad, uses it up.
            try await consumeChallenge(client.challenge, userId: userId, scope: .assertion(purpose))
            // §7.2 steps 5–7: the credential is one of this user's keys; a user handle, if sent, is this user's.
            guard let stored = try await store.webAuthnCredential(credentialId: credential.rawId),
                stored.userId == userId,
                let factor = try await store.factor(id: stored.factorId), factor.state == .active
            else { throw WebAuthnError.unknownCredential("this security key is not registered to this account") }
            details["factor_id"] = stored.factorId
            if let handle = credential.userHandle, !handle.isEmpty,
                !Crypto.constantTimeEqual(handle, Self.userHandle(userId: userId))
            {
                throw WebAuthnError.unknownCredential("the user handle does not belong to this account")
            }
            let key = try COSEKey(bytes: stored.publicKey)
            try client.check(type: "webauthn.get", origins: configuration.origins)  // §7.2 steps 11, 13, 14
            let authData = try AuthenticatorData(credential.authenticatorData)
            guard authData.attestedCredential == nil else {
                throw WebAuthnError.invalidAuthenticatorData("an assertion carries no attested credential data")
            }
            try checkAuthenticatorData(authData)  // §7.2 steps 15–17
            // §7.2 steps 19–20: the signature over authData ‖ SHA-256(clientDataJSON).
            let clientDataHash = try Crypto.sha256(credential.clientDataJSON)
            guard key.verify(signature: credential.signature, over: authData.raw + clientDataHash) else {
                throw WebAuthnError.invalidSignature("the signature does not verify with the registered key")
            }
            // §7.2 step 21 / §6.1.1: the counter must grow unless both are zero; compare-and-set in the store.
            let presented = Int64(authData.signCount)
            details["sign_count"] = String(presented)
            guard
                try await store.advanceWebAuthnSignCount(factorId: stored.factorId, to: presented, usedAt: clock.now())
            else {
                let now = try await store.webAuthnCredential(factorId: stored.factorId)?.signCount ?? stored.signCount
                details["stored_sign_count"] = String(now)
                throw WebAuthnError.possibleClone(
                    "the signature counter did not grow (stored \(now), presented \(presented)): the key may be cloned"
                )
            }
            let result = WebAuthnAssertionResult(
                factorId: stored.factorId,
                credentialName: stored.name,
                userVerified: authData.userVerified,
                signCount: presented
            )
            details["user_verified"] = String(authData.userVerified)
            try await audit.record(
                AuditEvent(
                    action: "factor.verify",
                    actor: userName,
                    subject: userName,
                    factors: result.amr,
                    details: details
                )
            )
            return result
        } catch let e as WebAuthnError {
            details["detail"] = e.detail
            try await audit.record(
                AuditEvent(
                    action: "factor.verify",
                    actor: userName,
                    subject: userName,
                    result: e.isPossibleClone ? "denied" : "failure",
                    reason: e.code,
                    factors: [AMR.webauthn],
                    details: details
                )
            )
            throw e
        }
    }

    // MARK: management

    /// The user's security keys.
    public func listCredentials(userId: String) async throws -> [WebAuthnCredentialInfo] {
        try await store.webAuthnCredentials(userId: userId).map(WebAuthnCredentialInfo.init)
    }

    /// Renames one of the user's keys.
    /// - Throws: ``WebAuthnError/notFound(_:)``, ``WebAuthnError/invalidRequest(_:)`` for a bad name.
    public func rename(userId: String, factorId: String, name: String, actor: String? = nil) async throws {
        let keyName = try Self.validName(name)
        guard let c = try await store.webAuthnCredential(factorId: factorId), c.userId == userId else {
            throw WebAuthnError.notFound("no such security key")
        }
        try await store.renameWebAuthnCredential(factorId: factorId, name: keyName)
        let userName = try await store.user(id: userId)?.name
        try await audit.record(
            AuditEvent(
                action: "factor.rename",
                actor: actor ?? userName,
                subject: userName,
                details: ["factor_id": factorId, "method": "webauthn", "from": c.name, "to": keyName]
            )
        )
    }

    /// Removes one of the user's keys (the factor row and, by cascade, the credential). The caller decides what
    /// fresh factor that needs (the pages ask for a step-up).
    /// - Throws: ``WebAuthnError/notFound(_:)``.
    public func remove(userId: String, factorId: String, actor: String? = nil, authorisedBy: String? = nil) async throws
    {
        guard let c = try await store.webAuthnCredential(factorId: factorId), c.userId == userId else {
            throw WebAuthnError.notFound("no such security key")
        }
        try await store.deleteFactor(id: factorId)
        try await store.forgetProofs(userId: userId, credentials: [factorId])
        let userName = try await store.user(id: userId)?.name
        try await audit.record(
            AuditEvent(
                action: "factor.remove",
                actor: actor ?? userName,
                subject: userName,
                details: FactorService.authorised(
                    ["factor_id": factorId, "method": "webauthn", "name": c.name],
                    by: authorisedBy
                )
            )
        )
    }

    // MARK: helpers

    static func factors(userVerified: Bool) -> [String] {
        userVerified ? [AMR.webauthn, AMR.userPresence] : [AMR.webauthn]
    }

    /// A key name: trimmed, 1–64 characters, no control characters.
    static func validName(_ name: String) throws -> String {
        let trimmed = name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...64).contains(trimmed.count),
            trimmed.unicodeScalars.allSatisfy({ !$0.properties.generalCategory.isControlLike })
        else { throw WebAuthnError.invalidRequest("a security key name is 1-64 characters without control characters") }
        return trimmed
    }
}

extension Unicode.GeneralCategory {
    /// Control, format, separator (line/paragraph), surrogate, private-use and unassigned scalars: nothing a name
    /// shown in a page and the audit log should carry.
    fileprivate var isControlLike: Bool {
        switch self {
        case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .privateUse, .unassigned: return true
        default: return false
        }
    }
}

/// The credential JSON a page posts, decoded (WebAuthn Level 2 §5.1 `PublicKeyCredential`, binary members as
/// base64url as in the Level 3 `toJSON()` form).
struct PostedCredential {
    var rawId: [UInt8]
    var clientDataJSON: [UInt8]
    var attestationObject: [UInt8] = []
    var authenticatorData: [UInt8] = []
    var signature: [UInt8] = []
    var userHandle: [UInt8]?

    init(json text: String, assertion: Bool) throws {
        guard text.utf8.count <= WebAuthnService.maximumResponseBytes else {
            throw WebAuthnError.invalidRequest(
                "the credential is larger than \(WebAuthnService.maximumResponseBytes) bytes"
            )
        }
        let root: JSONValue
        do { root = try JSONValue.parse(Array(text.utf8), maxDepth: 8) } catch {
            throw WebAuthnError.invalidRequest("the credential is not strict JSON: \(error)")
        }
        guard root.objectValue != nil else { throw WebAuthnError.invalidRequest("the credential is not a JSON object") }
        guard root["type"]?.stringValue == "public-key" else {
            throw WebAuthnError.invalidRequest("type must be \"public-key\"")
        }
        func b64(_ v: JSONValue?, _ what: String) throws -> [UInt8] {
            guard let s = v?.stringValue else {
                throw WebAuthnError.invalidRequest("\(what) is missing or not a string")
            }
            do { return try Base64URL.decode(s) } catch {
                throw WebAuthnError.invalidRequest("\(what) is not unpadded base64url")
            }
        }
        let id = try b64(root["id"], "id")
        rawId = try b64(root["rawId"], "rawId")
        // §5.1: id is the base64url encoding of rawId.
        guard id == rawId, !rawId.isEmpty, rawId.count <= 1023 else {
            throw WebAuthnError.invalidRequest("id and rawId must be the same credential id of 1-1023 bytes")
        }
        guard let response = root["response"], response.objectValue != nil else {
            throw WebAuthnError.invalidRequest("response is missing or not an object")
        }
        clientDataJSON = try b64(response["clientDataJSON"], "response.clientDataJSON")
        if assertion {
            authenticatorData = try b64(response["authenticatorData"], "response.authenticatorData")
            signature = try b64(response["signature"], "response.signature")
            switch response["userHandle"] {
            case nil, .null?: userHandle = nil
            case let v: userHandle = try b64(v, "response.userHandle")
            }
        } else {
            attestationObject = try b64(response["attestationObject"], "response.attestationObject")
        }
    }
}

/// `CollectedClientData` (WebAuthn Level 2 §5.8.1), parsed from the exact bytes the authenticator signed over.
struct ClientData {
    var type: String
    var challenge: [UInt8]
    var origin: String
    var crossOrigin: Bool
    var tokenBindingStatus: String?

    init(_ bytes: [UInt8]) throws {
        let c: JSONValue
        // §7.1 steps 5–6 / §7.2 steps 9–10: UTF-8 decode and parse; strict JSON refuses duplicate members, so a
        // second "type" or "origin" cannot slip past.
        do { c = try JSONValue.parse(bytes, maxDepth: 4) } catch {
            throw WebAuthnError.invalidClientData("clientDataJSON is not strict JSON: \(error)")
        }
        guard c.objectValue != nil, let type = c["type"]?.stringValue, let challenge = c["challenge"]?.stringValue,
            let origin = c["origin"]?.stringValue
        else { throw WebAuthnError.invalidClientData("clientDataJSON needs string members type, challenge, origin") }
        do { self.challenge = try Base64URL.decode(challenge) } catch {
            throw WebAuthnError.invalidClientData("the challenge in clientDataJSON is not base64url")
        }
        self.type = type
        self.origin = origin
        switch c["crossOrigin"] {
        case nil: crossOrigin = false
        case .bool(let b)?: crossOrigin = b
        default: throw WebAuthnError.invalidClientData("crossOrigin must be a boolean")
        }
        switch c["tokenBinding"] {
        case nil: tokenBindingStatus = nil
        case let tb?:
            guard let status = tb["status"]?.stringValue else {
                throw WebAuthnError.invalidClientData("tokenBinding needs a string status")
            }
            tokenBindingStatus = status
        }
    }

    /// §7.1 steps 7, 9, 10 / §7.2 steps 11, 13, 14, and §5.8.1 `crossOrigin`.
    func check(type expected: String, origins: [String]) throws {
        guard type == expected else {
            throw WebAuthnError.wrongType("clientDataJSON type is '\(type)', expected '\(expected)'")
        }
        guard origins.contains(origin) else {
            throw WebAuthnError.originMismatch("origin '\(origin)' is not one of this server's origins")
        }
        guard !crossOrigin else {
            throw WebAuthnError.crossOrigin("the ceremony ran in a cross-origin frame (crossOrigin is true)")
        }
        // Token Binding is never negotiated on our connections, so a client that reports it "present" does not
        // match the connection state (§7.1 step 10).
        guard tokenBindingStatus != "present" else {
            throw WebAuthnError.tokenBinding("Token Binding is reported present; this server does not use it")
        }
    }
}
