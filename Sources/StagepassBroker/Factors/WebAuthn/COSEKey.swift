public import StagepassJOSE

/// The COSE algorithms Stagepass accepts for security keys (RFC 9053 §2.1, §2.2; IANA "COSE Algorithms").
/// Deliberately closed, like ``JWSAlgorithm``: anything else is refused at registration.
public enum COSEAlgorithm: Int64, Sendable, Hashable, CaseIterable {
    /// ECDSA with SHA-256 on P-256 (RFC 9053 §2.1). WebAuthn signatures are ASN.1 DER `Ecdsa-Sig-Value`
    /// (WebAuthn Level 2 §6.5.5), not the raw `r || s` of JWS.
    case es256 = -7
    /// EdDSA (RFC 9053 §2.2), here Ed25519 only; signatures are the 64 bytes of RFC 8032 §5.1.6.
    case eddsa = -8

    /// The matching JOSE algorithm (the key types are the same).
    public var jws: JWSAlgorithm {
        switch self {
        case .es256: return .ES256
        case .eddsa: return .EdDSA
        }
    }

    /// The JOSE-style name, for listings and audit records.
    public var name: String { jws.rawValue }
}

/// A credential public key in COSE_Key form (RFC 8152 §7; WebAuthn Level 2 §6.5.1.1), turned into an OpenSSL key
/// through the JOSE core.
///
/// Accepted (RFC 8152 §13.1.1, RFC 8152 §13.2 / RFC 9053 §7.1, §7.2):
/// - EC2 (`kty` 2), `crv` 1 (P-256), `x` and `y` 32-byte byte strings, `alg` -7 (ES256);
/// - OKP (`kty` 1), `crv` 6 (Ed25519), `x` a 32-byte byte string, `alg` -8 (EdDSA).
///
/// `alg` is required (WebAuthn Level 2 §6.5.1.1: the credential public key "MUST contain the alg parameter").
/// A key carrying a private part (`d`, label -4) is refused. The key goes through a JWK and ``JWK/publicKey()``,
/// which checks that an EC point is on P-256 (invalid-curve attacks).
public struct COSEKey: Sendable {
    public let algorithm: COSEAlgorithm
    public let publicKey: PublicKey
    /// The same key as a JWK (for display and thumbprints).
    public let jwk: JWK

    // COSE_Key labels (RFC 8152 §7.1, §13.1.1, §13.2) and values (RFC 8152 Tables 21, 22).
    private static let kty: Int64 = 1
    private static let alg: Int64 = 3
    private static let crv: Int64 = -1
    private static let x: Int64 = -2
    private static let y: Int64 = -3
    private static let d: Int64 = -4
    private static let ktyOKP: Int64 = 1
    private static let ktyEC2: Int64 = 2
    private static let crvP256: Int64 = 1
    private static let crvEd25519: Int64 = 6

    /// Decodes a COSE_Key from its CBOR bytes (exactly one map, nothing after it).
    /// - Throws: ``WebAuthnError/malformedCBOR(_:)`` or ``WebAuthnError/unsupportedKey(_:)``.
    public init(bytes: [UInt8]) throws(WebAuthnError) {
        let value: CBOR
        do throws(CBORError) { value = try CBORDecoder.decode(bytes) } catch {
            throw .cbor(error, in: "credential public key")
        }
        try self.init(cbor: value)
    }

    /// Reads a decoded COSE_Key map.
    /// - Throws: ``WebAuthnError/unsupportedKey(_:)`` naming what is missing or refused.
    public init(cbor key: CBOR) throws(WebAuthnError) {
        guard key.mapValue != nil else { throw .unsupportedKey("a COSE_Key is a CBOR map (RFC 8152 §7)") }
        guard let kty = key[label: Self.kty]?.int else { throw .unsupportedKey("the COSE_Key has no integer kty") }
        guard let algValue = key[label: Self.alg]?.int else {
            throw .unsupportedKey("the COSE_Key has no integer alg (WebAuthn Level 2 §6.5.1.1 requires it)")
        }
        guard let alg = COSEAlgorithm(rawValue: algValue) else {
            throw .unsupportedKey("COSE algorithm \(algValue) is not accepted (only -7 ES256 and -8 EdDSA)")
        }
        guard key[label: Self.d] == nil else { throw .unsupportedKey("the COSE_Key carries a private key (d)") }
        guard let crv = key[label: Self.crv]?.int else { throw .unsupportedKey("the COSE_Key has no integer crv") }
        guard let x = key[label: Self.x]?.bytesValue, x.count == 32 else {
            throw .unsupportedKey("the COSE_Key x coordinate must be a 32-byte byte string")
        }
        var members: [String: JSONValue] = ["x": .string(Base64URL.encode(x))]
        switch (kty, alg) {
        case (Self.ktyEC2, .es256):
            guard crv == Self.crvP256 else { throw .unsupportedKey("ES256 needs crv 1 (P-256), not \(crv)") }
            // RFC 8152 §13.1.1: y may be a boolean (point compression); WebAuthn keys carry the full point.
            guard let y = key[label: Self.y]?.bytesValue, y.count == 32 else {
                throw .unsupportedKey("the EC2 y coordinate must be a 32-byte byte string (no point compression)")
            }
            members["kty"] = .string("EC")
            members["crv"] = .string("P-256")
            members["y"] = .string(Base64URL.encode(y))
        case (Self.ktyOKP, .eddsa):
            guard crv == Self.crvEd25519 else { throw .unsupportedKey("EdDSA needs crv 6 (Ed25519), not \(crv)") }
            guard key[label: Self.y] == nil else { throw .unsupportedKey("an OKP key has no y coordinate") }
            members["kty"] = .string("OKP")
            members["crv"] = .string("Ed25519")
        default:
            throw .unsupportedKey("key type \(kty) does not fit algorithm \(alg.rawValue) (EC2 with -7, OKP with -8)")
        }
        do throws(JOSEError) {
            let jwk = try JWK(json: .object(members))
            self.publicKey = try jwk.publicKey()
            self.jwk = jwk
        } catch {
            throw .unsupportedKey("the key is not valid: \(error.detail)")
        }
        self.algorithm = alg
    }

    /// Verifies a WebAuthn signature (attestation `sig` or assertion `signature`) over `data`.
    ///
    /// WebAuthn Level 2 §6.5.5: an ES256 signature is an ASN.1 DER `Ecdsa-Sig-Value` (verified as DER through
    /// ``PublicKey/verifyECDSADER(signingInput:der:)``); an EdDSA signature is the 64-byte Ed25519 signature.
    public func verify(signature: [UInt8], over data: [UInt8]) -> Bool {
        switch algorithm {
        case .es256:
            // A DER P-256 signature is at most 72 bytes (2 + 2 × (2 + 33)); refuse anything longer outright.
            guard (8...72).contains(signature.count) else { return false }
            return publicKey.verifyECDSADER(signingInput: data, der: signature)
        case .eddsa:
            return publicKey.verify(.EdDSA, signingInput: data, signature: signature)
        }
    }
}
