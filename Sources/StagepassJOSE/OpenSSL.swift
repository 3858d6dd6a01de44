internal import COpenSSL

/// The one funnel from a libcrypto status to a Swift error: reads, then clears, the thread-local `ERR_` queue
/// so that a stale error can never be attributed to a later call.
@inline(__always)
func check(_ ok: Bool, _ what: String) throws(JOSEError) {
    if ok {
        return
    }
    throw .cryptoFailure("\(what): \(drainOpenSSLErrors())")
}

/// Returns the first queued OpenSSL error as text and clears the queue.
func drainOpenSSLErrors() -> String {
    let code = ERR_get_error()
    ERR_clear_error()
    guard code != 0 else { return "unknown error" }
    var buf = [CChar](repeating: 0, count: 256)
    ERR_error_string_n(code, &buf, buf.count)
    return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Cryptographic primitives the broker needs besides JWS, all through OpenSSL 3 libcrypto (the one crypto stack).
public enum Crypto {
    /// `count` bytes from OpenSSL's CSPRNG (RAND_bytes).
    /// - Throws: ``JOSEError/cryptoFailure`` if the generator is not seeded.
    public static func randomBytes(_ count: Int) throws(JOSEError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        guard count > 0 else { return out }
        let ok = out.withUnsafeMutableBytes {
            RAND_bytes($0.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(count))
        }
        try check(ok == 1, "RAND_bytes")
        return out
    }

    public enum Digest: Sendable { case sha1, sha256, sha384, sha512 }

    static func md(_ d: Digest) -> OpaquePointer? {
        switch d {
        case .sha1: return EVP_sha1()
        case .sha256: return EVP_sha256()
        case .sha384: return EVP_sha384()
        case .sha512: return EVP_sha512()
        }
    }

    /// A message digest (EVP_Digest).
    /// - Throws: ``JOSEError/cryptoFailure`` when OpenSSL cannot compute it (never an empty or partial digest).
    public static func hash<C: Collection>(_ digest: Digest, _ data: C) throws(JOSEError) -> [UInt8]
    where C.Element == UInt8 {
        var out = [UInt8](repeating: 0, count: 64)
        var len: UInt32 = 0
        let bytes = Array(data)
        let ok = bytes.withUnsafeBytes { b in
            out.withUnsafeMutableBytes { o in
                EVP_Digest(
                    b.baseAddress,
                    b.count,
                    o.baseAddress?.assumingMemoryBound(to: UInt8.self),
                    &len,
                    md(digest),
                    nil
                )
            }
        }
        try check(ok == 1 && len > 0 && Int(len) <= out.count, "EVP_Digest")
        return Array(out.prefix(Int(len)))
    }

    /// SHA-256 of `data`.
    /// - Throws: ``JOSEError/cryptoFailure`` when OpenSSL fails.
    public static func sha256<C: Collection>(_ data: C) throws(JOSEError) -> [UInt8] where C.Element == UInt8 {
        try hash(.sha256, data)
    }

    /// HMAC (RFC 2104) with the given digest; HMAC-SHA-1 is what RFC 4226 §5.2 / RFC 6238 §1.2 use.
    /// - Throws: ``JOSEError/invalidKey`` for an empty key (an unset secret must never produce a usable MAC),
    ///   ``JOSEError/cryptoFailure`` when OpenSSL fails. Never returns an empty MAC.
    public static func hmac(_ digest: Digest, key: [UInt8], data: [UInt8]) throws(JOSEError) -> [UInt8] {
        guard !key.isEmpty else { throw .invalidKey("HMAC key is empty") }
        var out = [UInt8](repeating: 0, count: 64)
        var len: UInt32 = 0
        let r = key.withUnsafeBytes { k in
            data.withUnsafeBytes { d in
                out.withUnsafeMutableBytes { o in
                    HMAC(
                        md(digest),
                        k.baseAddress,
                        Int32(k.count),
                        d.baseAddress?.assumingMemoryBound(to: UInt8.self),
                        d.count,
                        o.baseAddress?.assumingMemoryBound(to: UInt8.self),
                        &len
                    )
                }
            }
        }
        try check(r != nil && len > 0 && Int(len) <= out.count, "HMAC")
        return Array(out.prefix(Int(len)))
    }

    /// Constant-time equality (CRYPTO_memcmp) for secrets: MACs, hashed tokens, codes.
    ///
    /// Fails closed: false when either side is empty (an unset or failed secret never matches anything, not even
    /// another empty one) and when the lengths differ. The length of a secret is not itself secret here.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard !a.isEmpty, !b.isEmpty, a.count == b.count else { return false }
        return a.withUnsafeBytes { x in
            b.withUnsafeBytes { y in CRYPTO_memcmp(x.baseAddress, y.baseAddress, a.count) == 0 }
        }
    }
}

/// AES-256-GCM authenticated encryption (NIST SP 800-38D) for secrets at rest (TOTP seeds).
/// The output is `nonce(12) || ciphertext || tag(16)`; `aad` binds the ciphertext to its context (e.g. the row id).
public enum AESGCM {
    /// Encrypts `plaintext` under a 32-byte key with a fresh random 96-bit nonce.
    /// - Throws: ``JOSEError/invalidKey`` for a key that is not 32 bytes, ``JOSEError/cryptoFailure`` otherwise.
    public static func seal(_ plaintext: [UInt8], key: [UInt8], aad: [UInt8] = []) throws(JOSEError) -> [UInt8] {
        guard key.count == 32 else { throw .invalidKey("AES-256-GCM needs a 32-byte key") }
        let nonce = try Crypto.randomBytes(12)
        guard let ctx = EVP_CIPHER_CTX_new() else { throw .cryptoFailure("EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        try check(EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nil, key, nonce) == 1, "EncryptInit")
        var outLen: Int32 = 0
        if !aad.isEmpty {
            try check(EVP_EncryptUpdate(ctx, nil, &outLen, aad, Int32(aad.count)) == 1, "EncryptUpdate(aad)")
        }
        var ct = [UInt8](repeating: 0, count: plaintext.count + 16)
        var n: Int32 = 0
        if !plaintext.isEmpty {
            try check(EVP_EncryptUpdate(ctx, &ct, &n, plaintext, Int32(plaintext.count)) == 1, "EncryptUpdate")
        }
        var fin: Int32 = 0
        let okFinal = ct.withUnsafeMutableBufferPointer { p in
            EVP_EncryptFinal_ex(ctx, p.baseAddress.map { $0 + Int(n) }, &fin)
        }
        try check(okFinal == 1, "EncryptFinal")
        var tag = [UInt8](repeating: 0, count: 16)
        try check(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, &tag) == 1, "GET_TAG")
        return nonce + ct.prefix(Int(n + fin)) + tag
    }

    /// Decrypts and authenticates the output of ``seal(_:key:aad:)``.
    /// - Throws: ``JOSEError/invalidSignature`` when the tag does not verify (wrong key, tampering, wrong aad).
    public static func open(_ box: [UInt8], key: [UInt8], aad: [UInt8] = []) throws(JOSEError) -> [UInt8] {
        guard key.count == 32 else { throw .invalidKey("AES-256-GCM needs a 32-byte key") }
        guard box.count >= 28 else { throw .invalidSignature("ciphertext too short") }
        let nonce = Array(box[0..<12])
        let ct = Array(box[12..<(box.count - 16)])
        var tag = Array(box[(box.count - 16)...])
        guard let ctx = EVP_CIPHER_CTX_new() else { throw .cryptoFailure("EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        try check(EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nil, key, nonce) == 1, "DecryptInit")
        var outLen: Int32 = 0
        if !aad.isEmpty {
            try check(EVP_DecryptUpdate(ctx, nil, &outLen, aad, Int32(aad.count)) == 1, "DecryptUpdate(aad)")
        }
        var pt = [UInt8](repeating: 0, count: ct.count + 16)
        var n: Int32 = 0
        if !ct.isEmpty {
            try check(EVP_DecryptUpdate(ctx, &pt, &n, ct, Int32(ct.count)) == 1, "DecryptUpdate")
        }
        try check(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, &tag) == 1, "SET_TAG")
        var fin: Int32 = 0
        let ok = pt.withUnsafeMutableBufferPointer { p in
            EVP_DecryptFinal_ex(ctx, p.baseAddress.map { $0 + Int(n) }, &fin)
        }
        if ok != 1 {
            ERR_clear_error()
            throw .invalidSignature("authentication tag does not verify")
        }
        return Array(pt.prefix(Int(n + fin)))
    }
}
