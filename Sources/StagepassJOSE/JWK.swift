internal import COpenSSL

/// A JSON Web Key (RFC 7517 §4) for EC P-256 (RFC 7518 §6.2), OKP Ed25519 (RFC 8037 §2) or RSA (RFC 7518 §6.3).
///
/// Key parameters are kept as their base64url strings; ``publicKey()`` and ``privateKey()`` turn them into
/// OpenSSL keys, checking the point is on the curve and RSA is at least 2048 bits.
public struct JWK: Sendable, Hashable {
    /// `kty`: "EC", "OKP" or "RSA".
    public let kty: String
    /// `kid`; Stagepass sets it to the RFC 7638 thumbprint.
    public var kid: String?
    /// `alg` as written (may be outside the allow-list; see ``algorithm``).
    public var alg: String?
    /// `use` (RFC 7517 §4.2); the verifier uses only keys whose `use` is absent or "sig".
    public var use: String?
    /// The key parameters (`crv`, `x`, `y`, `n`, `e`, and private members `d`, `p`, `q`, `dp`, `dq`, `qi`).
    public private(set) var params: [String: String]

    private static let privateMembers: Set<String> = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]

    /// The algorithm when `alg` names one on the allow-list.
    public var algorithm: JWSAlgorithm? { alg.flatMap { JWSAlgorithm(rawValue: $0) } }
    public var isPrivate: Bool { params["d"] != nil }

    /// Reads a JWK from its JSON object.
    /// - Throws: ``JOSEError/invalidKey`` for an unknown `kty`, a missing or non-string member.
    public init(json: JSONValue) throws(JOSEError) {
        guard case .object(let o) = json else { throw .invalidKey("a JWK must be a JSON object") }
        guard let kty = o["kty"]?.stringValue else { throw .invalidKey("kty missing") }
        let required: [String]
        switch kty {
        case "EC": required = ["crv", "x", "y"]
        case "OKP": required = ["crv", "x"]
        case "RSA": required = ["n", "e"]
        default: throw .invalidKey("unsupported kty \(kty)")
        }
        var params = [String: String]()
        for (k, v) in o where !["kty", "kid", "alg", "use", "key_ops"].contains(k) {
            if case .string(let s) = v { params[k] = s }
        }
        for r in required where params[r] == nil { throw .invalidKey("\(kty) JWK needs \(r)") }
        for k in ["kid", "alg", "use"] {
            if let v = o[k], v.stringValue == nil { throw .invalidKey("\(k) must be a string") }
        }
        self.kty = kty
        self.kid = o["kid"]?.stringValue
        self.alg = o["alg"]?.stringValue
        self.use = o["use"]?.stringValue
        self.params = params
    }

    /// Parses a JWK from JSON text.
    public init(jsonString: String) throws(JOSEError) { try self.init(json: try JSONValue.parse(jsonString)) }

    /// The JWK of a public key; `kid` defaults to the RFC 7638 thumbprint.
    public init(publicKey: PublicKey, alg: JWSAlgorithm?, use: String? = "sig") throws(JOSEError) {
        let pkey = publicKey.key.pkey
        switch publicKey.type {
        case .ecP256:
            kty = "EC"
            params = [
                "crv": "P-256", "x": Base64URL.encode(try bnParam(pkey, OSSL_PKEY_PARAM_EC_PUB_X, pad: 32)),
                "y": Base64URL.encode(try bnParam(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, pad: 32)),
            ]
        case .ed25519:
            kty = "OKP"
            var raw = [UInt8](repeating: 0, count: 32)
            var len = 32
            try check(EVP_PKEY_get_raw_public_key(pkey, &raw, &len) == 1 && len == 32, "get_raw_public_key")
            params = ["crv": "Ed25519", "x": Base64URL.encode(raw)]
        case .rsa:
            kty = "RSA"
            params = [
                "n": Base64URL.encode(try bnParam(pkey, OSSL_PKEY_PARAM_RSA_N, pad: 0)),
                "e": Base64URL.encode(try bnParam(pkey, OSSL_PKEY_PARAM_RSA_E, pad: 0)),
            ]
        }
        self.alg = alg?.rawValue
        self.use = use
        self.kid = nil
        self.kid = try thumbprint()
    }

    /// The same key without private members.
    public var publicJWK: JWK {
        var copy = self
        for m in JWK.privateMembers { copy.params[m] = nil }
        return copy
    }

    /// The JWK as a JSON object.
    public var json: JSONValue {
        var o = [String: JSONValue]()
        o["kty"] = .string(kty)
        for (k, v) in params { o[k] = .string(v) }
        if let kid { o["kid"] = .string(kid) }
        if let alg { o["alg"] = .string(alg) }
        if let use { o["use"] = .string(use) }
        return .object(o)
    }

    /// The RFC 7638 §3 thumbprint: SHA-256 over the required members in lexicographic order, no whitespace
    /// (§3.2: EC `crv,kty,x,y`; RSA `e,kty,n`; RFC 8037 §2 OKP `crv,kty,x`), base64url-encoded.
    public func thumbprint() throws(JOSEError) -> String {
        let members: [String]
        switch kty {
        case "EC": members = ["crv", "kty", "x", "y"]
        case "OKP": members = ["crv", "kty", "x"]
        case "RSA": members = ["e", "kty", "n"]
        default: throw .invalidKey("unsupported kty \(kty)")
        }
        var canonical = "{"
        for (i, m) in members.enumerated() {
            if i > 0 { canonical += "," }
            JSONValue.writeString(m, into: &canonical)
            canonical += ":"
            // A missing required member is an error, never hashed as "" (two different keys must not share a kid).
            guard let value = m == "kty" ? kty : params[m], !value.isEmpty else {
                throw .invalidKey("thumbprint needs \(m)")
            }
            JSONValue.writeString(value, into: &canonical)
        }
        canonical += "}"
        return Base64URL.encode(try Crypto.sha256(Array(canonical.utf8)))
    }

    /// The public key as an OpenSSL key.
    /// - Throws: ``JOSEError/invalidKey`` (bad encoding, point not on the curve, wrong curve),
    ///   ``JOSEError/weakKey`` (RSA under 2048 bits).
    public func publicKey() throws(JOSEError) -> PublicKey {
        PublicKey(try makeKey(includePrivate: false))
    }

    /// The private key, when the JWK carries `d` (RFC vectors; Stagepass stores its own keys as PEM).
    public func privateKey() throws(JOSEError) -> PrivateKey {
        guard isPrivate else { throw .invalidKey("the JWK has no private part") }
        return PrivateKey(try makeKey(includePrivate: true))
    }

    private func b64(_ name: String) throws(JOSEError) -> [UInt8] {
        guard let s = params[name] else { throw .invalidKey("missing \(name)") }
        do { return try Base64URL.decode(s) } catch { throw .invalidKey("\(name) is not base64url") }
    }

    private func makeKey(includePrivate: Bool) throws(JOSEError) -> EVPKey {
        switch kty {
        case "OKP":
            guard params["crv"] == "Ed25519" else { throw .invalidKey("only the Ed25519 OKP curve is supported") }
            let raw = try b64(includePrivate ? "d" : "x")
            guard raw.count == 32 else { throw .invalidKey("Ed25519 keys are 32 bytes") }
            let pkey =
                includePrivate
                ? EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, raw, 32)
                : EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, raw, 32)
            guard let pkey else { throw .invalidKey("Ed25519 key rejected: \(drainOpenSSLErrors())") }
            let k = try EVPKey(taking: pkey)
            if includePrivate, params["x"] != nil {
                // The public half must match d.
                let derived = try JWK(publicKey: PublicKey(k), alg: nil)
                guard derived.params["x"] == params["x"] else { throw .invalidKey("x does not match d") }
            }
            return k
        case "EC":
            guard params["crv"] == "P-256" else { throw .invalidKey("only the P-256 EC curve is supported") }
            let x = try b64("x")
            let y = try b64("y")
            guard x.count == 32, y.count == 32 else { throw .invalidKey("P-256 coordinates are 32 bytes") }
            return try fromData("EC", includePrivate: includePrivate) { b throws(JOSEError) in
                try b.pushUTF8(OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1")
                try b.pushOctets(OSSL_PKEY_PARAM_PUB_KEY, [0x04] + x + y)
                if includePrivate {
                    let d = try b64("d")
                    guard d.count == 32 else { throw .invalidKey("P-256 d is 32 bytes") }
                    try b.pushBN(OSSL_PKEY_PARAM_PRIV_KEY, d)
                }
            }
        case "RSA":
            let n = try b64("n")
            let e = try b64("e")
            guard let first = n.first, first != 0 else { throw .invalidKey("RSA modulus has a leading zero octet") }
            return try fromData("RSA", includePrivate: includePrivate) { b throws(JOSEError) in
                try b.pushBN(OSSL_PKEY_PARAM_RSA_N, n)
                try b.pushBN(OSSL_PKEY_PARAM_RSA_E, e)
                if includePrivate {
                    try b.pushBN(OSSL_PKEY_PARAM_RSA_D, try b64("d"))
                    if params["p"] != nil {
                        try b.pushBN("rsa-factor1", try b64("p"))
                        try b.pushBN("rsa-factor2", try b64("q"))
                        try b.pushBN("rsa-exponent1", try b64("dp"))
                        try b.pushBN("rsa-exponent2", try b64("dq"))
                        try b.pushBN("rsa-coefficient1", try b64("qi"))
                    }
                }
            }
        default:
            throw .invalidKey("unsupported kty \(kty)")
        }
    }
}

/// BIGNUMs pushed into a param builder must outlive the build; this keeps them and frees them after.
/// OSSL_PARAM_BLD keeps pointers to pushed strings and BIGNUMs (it copies them only in `to_param`), so their
/// storage must outlive the build: this arena owns it and frees it afterwards.
private final class BNArena {
    var bns: [OpaquePointer] = []
    var buffers: [UnsafeMutableRawBufferPointer] = []
    deinit {
        for b in bns { BN_clear_free(b) }
        for b in buffers {
            if let base = b.baseAddress { OPENSSL_cleanse(base, b.count) }
            b.deallocate()
        }
    }

    /// A copy of `bytes` (plus a NUL, for strings) that lives as long as the arena.
    func keep(_ bytes: [UInt8]) -> UnsafeMutableRawBufferPointer {
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count + 1, alignment: 1)
        buf.copyBytes(from: bytes + [0])
        buffers.append(buf)
        return buf
    }
}

/// A parameter builder plus the BIGNUMs it references.
private struct ParamBuilder {
    let bld: OpaquePointer
    let arena: BNArena

    /// Parameter names are kept by pointer too.
    private func key(_ name: String) -> UnsafePointer<CChar>? {
        UnsafePointer(arena.keep(Array(name.utf8)).baseAddress?.assumingMemoryBound(to: CChar.self))
    }

    func pushUTF8(_ name: String, _ value: String) throws(JOSEError) {
        let buf = arena.keep(Array(value.utf8))
        try check(
            OSSL_PARAM_BLD_push_utf8_string(
                bld,
                key(name),
                buf.baseAddress?.assumingMemoryBound(to: CChar.self),
                value.utf8.count
            ) == 1,
            "push \(name)"
        )
    }

    func pushOctets(_ name: String, _ bytes: [UInt8]) throws(JOSEError) {
        let buf = arena.keep(bytes)
        try check(OSSL_PARAM_BLD_push_octet_string(bld, key(name), buf.baseAddress, bytes.count) == 1, "push \(name)")
    }

    func pushBN(_ name: String, _ bytes: [UInt8]) throws(JOSEError) {
        guard let bn = BN_bin2bn(bytes, Int32(bytes.count), nil) else { throw .cryptoFailure("BN_bin2bn") }
        arena.bns.append(bn)
        try check(OSSL_PARAM_BLD_push_BN(bld, key(name), bn) == 1, "push_BN \(name)")
    }
}

private func fromData(
    _ type: String,
    includePrivate: Bool,
    _ fill: (ParamBuilder) throws(JOSEError) -> Void
) throws(JOSEError) -> EVPKey {
    guard let bld = OSSL_PARAM_BLD_new() else { throw .cryptoFailure("OSSL_PARAM_BLD_new") }
    defer { OSSL_PARAM_BLD_free(bld) }
    let arena = BNArena()
    try fill(ParamBuilder(bld: bld, arena: arena))
    guard let params = OSSL_PARAM_BLD_to_param(bld) else { throw .cryptoFailure("OSSL_PARAM_BLD_to_param") }
    defer { OSSL_PARAM_free(params) }
    guard let ctx = EVP_PKEY_CTX_new_from_name(nil, type, nil) else {
        throw .cryptoFailure("EVP_PKEY_CTX_new_from_name")
    }
    defer { EVP_PKEY_CTX_free(ctx) }
    try check(EVP_PKEY_fromdata_init(ctx) == 1, "fromdata_init")
    var pkey: OpaquePointer?
    // Selections (openssl/core_dispatch.h): PUBLIC_KEY = 0x86, KEYPAIR = 0x87.
    let selection: Int32 = includePrivate ? 0x87 : 0x86
    guard EVP_PKEY_fromdata(ctx, &pkey, selection, params) == 1, let pkey else {
        throw .invalidKey("OpenSSL refused the key parameters: \(drainOpenSSLErrors())")
    }
    let key = try EVPKey(taking: pkey)
    if type == "EC" {
        // Make sure the public point is on the curve (invalid-curve attacks; RFC 8725 §3.4).
        guard let vctx = EVP_PKEY_CTX_new_from_pkey(nil, key.pkey, nil) else {
            throw .cryptoFailure("CTX_new_from_pkey")
        }
        defer { EVP_PKEY_CTX_free(vctx) }
        guard EVP_PKEY_public_check(vctx) == 1 else {
            throw .invalidKey("the EC point is not on P-256: \(drainOpenSSLErrors())")
        }
    }
    return key
}

private func bnParam(_ pkey: OpaquePointer, _ name: String, pad: Int32) throws(JOSEError) -> [UInt8] {
    var bn: OpaquePointer?
    try check(EVP_PKEY_get_bn_param(pkey, name, &bn) == 1, "get_bn_param \(name)")
    guard let bn else { throw .cryptoFailure("get_bn_param \(name)") }
    defer { BN_free(bn) }
    let n = pad > 0 ? pad : COpenSSL_BN_num_bytes(bn)
    var out = [UInt8](repeating: 0, count: Int(n))
    try check(BN_bn2binpad(bn, &out, n) == n, "BN_bn2binpad")
    return out
}

/// A JWK Set (RFC 7517 §5).
public struct JWKS: Sendable, Hashable {
    public var keys: [JWK]

    public init(keys: [JWK]) { self.keys = keys }

    /// Parses a JWK Set. Keys whose `kty` is not understood are skipped, as RFC 7517 §5 advises; any other
    /// problem with a member is an error.
    /// - Throws: ``JOSEError/invalidJSON`` or ``JOSEError/invalidKey``.
    public init(json: [UInt8]) throws(JOSEError) {
        let v = try JSONValue.parse(json)
        guard case .array(let arr)? = v["keys"] else { throw .invalidKey("a JWKS needs a \"keys\" array") }
        var keys = [JWK]()
        for k in arr {
            guard let kty = k["kty"]?.stringValue else { throw .invalidKey("a key in the JWKS has no kty") }
            guard ["EC", "OKP", "RSA"].contains(kty) else { continue }
            keys.append(try JWK(json: k))
        }
        self.keys = keys
    }

    public init(jsonString: String) throws(JOSEError) { try self.init(json: Array(jsonString.utf8)) }

    public var json: JSONValue { .object(["keys": .array(keys.map { $0.publicJWK.json })]) }
    /// The public JWKS document; private members are never written.
    public func serialized() -> String { json.serialized() }
}
