/// Making DPoP proof JWTs (RFC 9449 §4.2): what a client (`stagepass request`, `stagepass dpop-proof`) sends in the
/// `DPoP` header. Checking proofs is the verifier's (`StagepassVerify.DPoPProofChecker`).
public enum DPoPProof {
    /// The algorithms proofs are made with (RFC 9449 §5.1): ES256 and EdDSA.
    public static let algorithms: [JWSAlgorithm] = [.ES256, .EdDSA]

    /// Signs a proof for one request.
    ///
    /// Header: `typ` `dpop+jwt`, `alg`, `jwk` (the public key; §4.2). Claims: `jti` (16 random bytes, base64url),
    /// `htm`, `htu` (the URL without query and fragment, §4.2), `iat`, and `ath` (base64url SHA-256 of the access
    /// token, §4.2) when a token is given.
    /// - Parameters:
    ///   - key: a P-256 or Ed25519 private key; `alg` follows from it.
    ///   - accessToken: the token the request carries (resource requests); nil for token requests.
    ///   - jti: the proof's unique id; nil draws a random one.
    /// - Throws: ``JOSEError/unsupportedAlgorithm`` for an RSA key, ``JOSEError/cryptoFailure``.
    public static func make(
        key: PrivateKey,
        method: String,
        url: String,
        accessToken: String? = nil,
        issuedAt: Int64,
        jti: String? = nil
    ) throws(JOSEError) -> String {
        let alg: JWSAlgorithm
        switch key.type {
        case .ecP256: alg = .ES256
        case .ed25519: alg = .EdDSA
        case .rsa: throw .unsupportedAlgorithm("DPoP proofs are made with ES256 or EdDSA keys")
        }
        let jwk = try JWK(publicKey: try key.publicKey(), alg: nil, use: nil)
        var jwkJSON = jwk.json
        if case .object(var o) = jwkJSON {
            o["kid"] = nil
            jwkJSON = .object(o)
        }
        var htu = Substring(url)
        if let cut = htu.firstIndex(where: { $0 == "?" || $0 == "#" }) { htu = htu[..<cut] }
        let id: String
        if let jti { id = jti } else { id = Base64URL.encode(try Crypto.randomBytes(16)) }
        var claims: [String: JSONValue] = [
            "jti": .string(id),
            "htm": .string(method),
            "htu": .string(String(htu)),
            "iat": .int(issuedAt),
        ]
        if let accessToken { claims["ath"] = .string(Base64URL.encode(try Crypto.sha256(accessToken.utf8))) }
        return try JWS.sign(
            claims: .object(claims),
            header: ["typ": .string("dpop+jwt"), "jwk": jwkJSON],
            key: key,
            alg: alg
        )
    }
}
