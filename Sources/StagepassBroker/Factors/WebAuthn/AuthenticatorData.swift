/// Authenticator data (WebAuthn Level 2 §6.1), parsed strictly.
///
/// Layout: `rpIdHash` (32) ‖ `flags` (1) ‖ `signCount` (4, big-endian) ‖ attested credential data (when AT is set,
/// §6.5.1: `aaguid` (16) ‖ `credentialIdLength` (2, big-endian) ‖ `credentialId` ‖ `credentialPublicKey` (COSE_Key,
/// CBOR)) ‖ extensions (when ED is set, a CBOR map). Nothing may follow; a flag that promises data which is not
/// there, or data that no flag announces, is refused.
public struct AuthenticatorData: Sendable {
    /// The bytes as signed (they are part of every signature's input, §6.5.5, §7.2 step 20).
    public let raw: [UInt8]
    /// SHA-256 of the RP ID the authenticator scoped the credential to.
    public let rpIdHash: [UInt8]
    public let flags: UInt8
    /// The signature counter (§6.1.1).
    public let signCount: UInt32
    /// Present when the AT flag is set (registration).
    public let attestedCredential: AttestedCredentialData?
    /// Authenticator extension outputs, when the ED flag is set (§9). Stagepass requests none and ignores them.
    public let extensions: CBOR?

    /// Bit 0, UP: the user was present (§6.1).
    public var userPresent: Bool { flags & 0x01 != 0 }
    /// Bit 2, UV: the authenticator verified the user (PIN, biometric) (§6.1).
    public var userVerified: Bool { flags & 0x04 != 0 }
    /// Bit 6, AT: attested credential data follows (§6.1).
    public var hasAttestedCredentialData: Bool { flags & 0x40 != 0 }
    /// Bit 7, ED: extension data follows (§6.1).
    public var hasExtensions: Bool { flags & 0x80 != 0 }

    /// Parses authenticator data.
    /// - Throws: ``WebAuthnError/invalidAuthenticatorData(_:)`` for a wrong layout, ``WebAuthnError/malformedCBOR(_:)``
    ///   for a bad COSE key or extension map, ``WebAuthnError/unsupportedKey(_:)`` for a refused key.
    public init(_ bytes: [UInt8]) throws(WebAuthnError) {
        guard bytes.count >= 37 else {
            throw .invalidAuthenticatorData(
                "authenticator data is \(bytes.count) bytes; at least 37 are needed (§6.1)"
            )
        }
        raw = bytes
        rpIdHash = Array(bytes[0..<32])
        flags = bytes[32]
        signCount = bytes[33..<37].reduce(0) { ($0 << 8) | UInt32($1) }
        var position = 37
        if flags & 0x40 != 0 {
            // §6.5.1 attested credential data.
            guard bytes.count >= position + 18 else {
                throw .invalidAuthenticatorData("the AT flag is set but the attested credential data is truncated")
            }
            let aaguid = Array(bytes[position..<(position + 16)])
            let length = Int(bytes[position + 16]) << 8 | Int(bytes[position + 17])
            position += 18
            // §6.5.1: credentialIdLength is two bytes; ids over 1023 bytes are refused (the bound WebAuthn Level 3
            // §7.1 makes an explicit check, and the CHECK on `webauthn_credentials.credential_id`).
            guard length >= 1, length <= 1023 else {
                throw .invalidAuthenticatorData("credential id length \(length) is outside 1…1023")
            }
            guard bytes.count >= position + length else {
                throw .invalidAuthenticatorData("the credential id runs past the end of the authenticator data")
            }
            let credentialId = Array(bytes[position..<(position + length)])
            position += length
            let keyStart = position
            let parsed: (value: CBOR, end: Int)
            do throws(CBORError) { parsed = try CBORDecoder.decodePrefix(bytes, from: position) } catch {
                throw .cbor(error, in: "credential public key")
            }
            position = parsed.end
            let coseBytes = Array(bytes[keyStart..<position])
            attestedCredential = AttestedCredentialData(
                aaguid: aaguid,
                credentialId: credentialId,
                publicKeyBytes: coseBytes,
                publicKey: try COSEKey(cbor: parsed.value)
            )
        } else {
            attestedCredential = nil
        }
        if flags & 0x80 != 0 {
            let parsed: (value: CBOR, end: Int)
            do throws(CBORError) { parsed = try CBORDecoder.decodePrefix(bytes, from: position) } catch {
                throw .cbor(error, in: "authenticator extensions")
            }
            guard parsed.value.mapValue != nil else {
                throw .invalidAuthenticatorData("the ED flag is set but the extensions are not a CBOR map")
            }
            extensions = parsed.value
            position = parsed.end
        } else {
            extensions = nil
        }
        guard position == bytes.count else {
            throw .invalidAuthenticatorData(
                "\(bytes.count - position) unexpected bytes after the authenticator data (no flag announces them)"
            )
        }
    }
}

/// Attested credential data (WebAuthn Level 2 §6.5.1).
public struct AttestedCredentialData: Sendable {
    /// The authenticator model's AAGUID (all zeros for `none` attestation from many browsers).
    public let aaguid: [UInt8]
    public let credentialId: [UInt8]
    /// The COSE_Key exactly as encoded (stored, and parsed again at every assertion).
    public let publicKeyBytes: [UInt8]
    public let publicKey: COSEKey
}
