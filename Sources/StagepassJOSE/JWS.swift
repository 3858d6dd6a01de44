/// JWS Compact Serialization (RFC 7515 §7.1) signing.
public enum JWS {
    /// Signs `payload` and returns `BASE64URL(header) . BASE64URL(payload) . BASE64URL(signature)`.
    ///
    /// `alg` is written into the header (RFC 7515 §4.1.1) and overrides any `alg` in `header`.
    /// - Throws: ``JOSEError`` when the key does not fit `alg` or OpenSSL fails.
    public static func sign(
        payload: [UInt8],
        header: [String: JSONValue],
        key: PrivateKey,
        alg: JWSAlgorithm
    ) throws(JOSEError) -> String {
        var h = header
        h["alg"] = .string(alg.rawValue)
        let signingInput =
            Base64URL.encode(Array(JSONValue.object(h).serialized().utf8)) + "." + Base64URL.encode(payload)
        let sig = try key.sign(alg, signingInput: Array(signingInput.utf8))
        return signingInput + "." + Base64URL.encode(sig)
    }

    /// Signs a JSON claims object.
    public static func sign(
        claims: JSONValue,
        header: [String: JSONValue],
        key: PrivateKey,
        alg: JWSAlgorithm
    ) throws(JOSEError) -> String {
        try sign(payload: Array(claims.serialized().utf8), header: header, key: key, alg: alg)
    }
}
