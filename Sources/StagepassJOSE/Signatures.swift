internal import COpenSSL

/// The order n of the P-256 group (SEC 2 §2.4.2), big-endian.
let p256Order: [UInt8] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
]

/// ⌊n/2⌋ for the P-256 order: the largest `s` of a low-S signature, big-endian.
let p256HalfOrder: [UInt8] = [
    0x7F, 0xFF, 0xFF, 0xFF, 0x80, 0x00, 0x00, 0x00, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xDE, 0x73, 0x7D, 0x56, 0xD3, 0x8B, 0xCF, 0x42, 0x79, 0xDC, 0xE5, 0x61, 0x7E, 0x31, 0x92, 0xA8,
]

extension PublicKey {
    /// Verifies a JWS signature over `signingInput` (RFC 7515 §5.2 step 8) with `alg`.
    ///
    /// The key's type must match `alg` (a P-256 key never verifies an RS256 signature). For ES256 the signature
    /// must be the raw 64-byte `r || s` of RFC 7518 §3.4, with r and s in 1…n-1; it is converted to DER here for
    /// OpenSSL. A DER signature (the classic interop mistake) is refused by its length.
    ///
    /// ES256 accepts **low-S only** (s ≤ n/2). ECDSA signatures are malleable: if (r, s) is valid so is (r, n − s)
    /// (SEC 1 §4.1.4 accepts both), so without this rule one token would have two spellings, and token caches,
    /// ledgers and hashes of tokens all assume one. RFC 7518 §3.4 fixes the encoding (R ‖ S, 32 octets each) but not
    /// which of the two s values; Stagepass signers always emit the low one (``PrivateKey/sign(_:signingInput:)``),
    /// as Bitcoin's BIP 62/BIP 146 and Ethereum's EIP-2 do for secp256k1. The generic primitive that accepts both is
    /// ``verifyECDSARaw(signingInput:signature:)``.
    /// - Returns: true only if the signature is valid.
    public func verify(
        _ alg: JWSAlgorithm,
        signingInput: UnsafeRawBufferPointer,
        signature: UnsafeRawBufferPointer
    ) -> Bool {
        guard alg.keyType == key.type else { return false }
        switch alg {
        case .ES256:
            guard signature.count == 64 else { return false }
            // Low-S rule (see above): the high-S twin of a valid signature is refused before OpenSSL sees it.
            guard ecdsaIsLowS(signature) else { return false }
            return verifyECDSARaw(signingInput: signingInput, signature: signature)
        case .EdDSA:
            // RFC 8037 §3.1: Ed25519 signatures are 64 bytes.
            guard signature.count == 64 else { return false }
            return digestVerify(md: nil, pss: false, input: signingInput, sig: signature)
        case .RS256, .PS256:
            guard signature.count == (key.bits + 7) / 8 else { return false }
            return digestVerify(md: EVP_sha256(), pss: alg == .PS256, input: signingInput, sig: signature)
        }
    }

    /// Generic ECDSA P-256 / SHA-256 over a raw `r || s` signature (IEEE P1363 form), accepting high and low s alike
    /// (SEC 1 §4.1.4). Not the JWS rule: tokens go through ``verify(_:signingInput:signature:)``, which also requires
    /// low-S. Kept for primitive-level test vectors (Wycheproof P1363) and for callers that verify other formats.
    public func verifyECDSARaw(signingInput: UnsafeRawBufferPointer, signature: UnsafeRawBufferPointer) -> Bool {
        guard key.type == .ecP256, signature.count == 64 else { return false }
        return withUnsafeTemporaryAllocation(byteCount: maxECDSADERBytes, alignment: 1) { buf in
            guard let n = ecdsaRawToDER(signature, into: buf) else { return false }
            return digestVerify(
                md: EVP_sha256(),
                pss: false,
                input: signingInput,
                sig: UnsafeRawBufferPointer(rebasing: buf[0..<n])
            )
        }
    }

    /// Array form of ``verifyECDSARaw(signingInput:signature:)``.
    public func verifyECDSARaw(signingInput: [UInt8], signature: [UInt8]) -> Bool {
        signingInput.withUnsafeBytes { i in
            signature.withUnsafeBytes { s in verifyECDSARaw(signingInput: i, signature: s) }
        }
    }

    /// Convenience over arrays.
    public func verify(_ alg: JWSAlgorithm, signingInput: [UInt8], signature: [UInt8]) -> Bool {
        signingInput.withUnsafeBytes { i in
            signature.withUnsafeBytes { s in verify(alg, signingInput: i, signature: s) }
        }
    }

    /// Verifies a DER-encoded ECDSA signature (for test vectors that use DER, e.g. Wycheproof's ASN.1 files).
    public func verifyECDSADER(signingInput: [UInt8], der: [UInt8]) -> Bool {
        guard key.type == .ecP256 else { return false }
        return signingInput.withUnsafeBytes { i in
            der.withUnsafeBytes { digestVerify(md: EVP_sha256(), pss: false, input: i, sig: $0) }
        }
    }

    private func digestVerify(
        md: OpaquePointer?,
        pss: Bool,
        input: UnsafeRawBufferPointer,
        sig: UnsafeRawBufferPointer
    ) -> Bool {
        guard let ctx = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(ctx) }
        var pctx: OpaquePointer?
        guard EVP_DigestVerifyInit(ctx, &pctx, md, nil, key.pkey) == 1 else {
            ERR_clear_error()
            return false
        }
        if pss {
            // RFC 7518 §3.5: MGF1 with SHA-256 and a salt as long as the hash (32 bytes).
            guard EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1,
                EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) == 1,
                EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1
            else {
                ERR_clear_error()
                return false
            }
        }
        let r = EVP_DigestVerify(
            ctx,
            sig.baseAddress?.assumingMemoryBound(to: UInt8.self),
            sig.count,
            input.baseAddress?.assumingMemoryBound(to: UInt8.self),
            input.count
        )
        if r != 1 { ERR_clear_error() }
        return r == 1
    }
}

extension PrivateKey {
    /// Signs `signingInput` with `alg` and returns the JWS signature bytes (raw `r || s` for ES256).
    /// - Throws: ``JOSEError/unsupportedAlgorithm`` when `alg` does not fit the key, ``JOSEError/cryptoFailure``.
    public func sign(_ alg: JWSAlgorithm, signingInput: [UInt8]) throws(JOSEError) -> [UInt8] {
        guard alg.keyType == key.type else {
            throw .unsupportedAlgorithm("\(alg.rawValue) cannot be used with a \(key.type.rawValue) key")
        }
        guard let ctx = EVP_MD_CTX_new() else { throw .cryptoFailure("EVP_MD_CTX_new") }
        defer { EVP_MD_CTX_free(ctx) }
        var pctx: OpaquePointer?
        let md: OpaquePointer? = alg == .EdDSA ? nil : EVP_sha256()
        try check(EVP_DigestSignInit(ctx, &pctx, md, nil, key.pkey) == 1, "DigestSignInit")
        if alg == .PS256 {
            try check(
                EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1
                    && EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) == 1
                    && EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1,
                "PSS parameters"
            )
        }
        var len = 0
        try check(EVP_DigestSign(ctx, nil, &len, signingInput, signingInput.count) == 1, "DigestSign(size)")
        var sig = [UInt8](repeating: 0, count: len)
        try check(EVP_DigestSign(ctx, &sig, &len, signingInput, signingInput.count) == 1, "DigestSign")
        sig.removeSubrange(len...)
        // Low-S normalisation: OpenSSL returns either twin; Stagepass emits only s ≤ n/2 (see PublicKey.verify).
        if alg == .ES256 { return ecdsaNormalizedLowS(try ecdsaDERToRaw(sig)) }
        return sig
    }
}

/// Big-endian compare of two equal-length byte strings: -1, 0, 1.
private func compareBE(_ a: UnsafeRawBufferPointer, _ b: [UInt8]) -> Int {
    for i in 0..<a.count where a[i] != b[i] { return a[i] < b[i] ? -1 : 1 }
    return 0
}

/// Whether the `s` half of a raw 64-byte ES256 signature is at most ⌊n/2⌋ (the low-S form).
func ecdsaIsLowS(_ raw: UnsafeRawBufferPointer) -> Bool {
    guard raw.count == 64 else { return false }
    return compareBE(UnsafeRawBufferPointer(rebasing: raw[32..<64]), p256HalfOrder) <= 0
}

/// Array form of ``ecdsaIsLowS(_:)``.
public func ecdsaSignatureIsLowS(_ raw: [UInt8]) -> Bool { raw.withUnsafeBytes { ecdsaIsLowS($0) } }

/// Returns `r || s` with s replaced by n − s when s > ⌊n/2⌋; (r, n − s) verifies wherever (r, s) does
/// (SEC 1 §4.1.4: only x(R) enters the check, and negating s negates R). Other lengths are returned unchanged.
public func ecdsaNormalizedLowS(_ raw: [UInt8]) -> [UInt8] {
    guard raw.count == 64, !ecdsaSignatureIsLowS(raw) else { return raw }
    var out = raw
    // out[32..<64] = n - s, big-endian schoolbook subtraction (n > s here, so no final borrow).
    var borrow = 0
    for i in stride(from: 31, through: 0, by: -1) {
        var d = Int(p256Order[i]) - Int(raw[32 + i]) - borrow
        borrow = d < 0 ? 1 : 0
        if d < 0 { d += 256 }
        out[32 + i] = UInt8(d)
    }
    return out
}

/// The longest DER `ECDSA-Sig-Value` for P-256: SEQUENCE header (2) + two INTEGERs of at most 2 + 33 bytes.
let maxECDSADERBytes = 72

/// Converts a raw ES256 signature `r || s` (32 + 32 bytes, RFC 7518 §3.4) to the DER `ECDSA-Sig-Value`
/// OpenSSL expects, written into `out` (at least ``maxECDSADERBytes``). Returns the DER length, or nil unless
/// 1 <= r, s <= n-1 (SEC 1 §4.1.4 step 1).
func ecdsaRawToDER(_ raw: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Int? {
    guard raw.count == 64, out.count >= maxECDSADERBytes else { return nil }
    let r = UnsafeRawBufferPointer(rebasing: raw[0..<32])
    let s = UnsafeRawBufferPointer(rebasing: raw[32..<64])
    guard r.contains(where: { $0 != 0 }), s.contains(where: { $0 != 0 }),
        compareBE(r, p256Order) < 0, compareBE(s, p256Order) < 0
    else { return nil }
    // INTEGER: minimal big-endian two's complement (X.690 §8.3), so strip leading zeros and add one if the top
    // bit is set. Both are non-zero here, so at least one content byte remains.
    func integer(_ v: UnsafeRawBufferPointer, at start: Int) -> Int {
        var i = 0
        while i < v.count - 1 && v[i] == 0 { i += 1 }
        let pad = v[i] & 0x80 != 0 ? 1 : 0
        let len = v.count - i + pad
        out[start] = 0x02
        out[start + 1] = UInt8(len)
        if pad == 1 { out[start + 2] = 0 }
        UnsafeMutableRawBufferPointer(rebasing: out[(start + 2 + pad)..<(start + 2 + len)]).copyMemory(
            from: UnsafeRawBufferPointer(rebasing: v[i...])
        )
        return 2 + len
    }
    let rLen = integer(r, at: 2)
    let sLen = integer(s, at: 2 + rLen)
    out[0] = 0x30
    out[1] = UInt8(rLen + sLen)
    return 2 + rLen + sLen
}

/// Array form of ``ecdsaRawToDER(_:into:)``.
func ecdsaRawToDER(_ raw: UnsafeRawBufferPointer) -> [UInt8]? {
    var der = [UInt8](repeating: 0, count: maxECDSADERBytes)
    guard let n = der.withUnsafeMutableBytes({ ecdsaRawToDER(raw, into: $0) }) else { return nil }
    der.removeSubrange(n...)
    return der
}

/// Public form of the raw-to-DER conversion (benchmarks feed OpenSSL the DER it takes). nil when r or s is out of range.
public func ecdsaSignatureDER(fromRaw raw: [UInt8]) -> [UInt8]? {
    guard raw.count == 64 else { return nil }
    return raw.withUnsafeBytes { ecdsaRawToDER($0) }
}

/// Converts OpenSSL's DER ECDSA signature to raw `r || s`, each left-padded to 32 bytes.
func ecdsaDERToRaw(_ der: [UInt8]) throws(JOSEError) -> [UInt8] {
    var p: UnsafePointer<UInt8>?
    let sig: OpaquePointer? = der.withUnsafeBufferPointer { b in
        p = b.baseAddress
        return d2i_ECDSA_SIG(nil, &p, der.count)
    }
    guard let sig else { throw .cryptoFailure("d2i_ECDSA_SIG: \(drainOpenSSLErrors())") }
    defer { ECDSA_SIG_free(sig) }
    var out = [UInt8](repeating: 0, count: 64)
    guard let r = ECDSA_SIG_get0_r(sig), let s = ECDSA_SIG_get0_s(sig) else { throw .cryptoFailure("ECDSA_SIG_get0") }
    let ok = out.withUnsafeMutableBufferPointer { o -> Bool in
        guard let base = o.baseAddress else { return false }
        return BN_bn2binpad(r, base, 32) == 32 && BN_bn2binpad(s, base + 32, 32) == 32
    }
    try check(ok, "BN_bn2binpad")
    return out
}
