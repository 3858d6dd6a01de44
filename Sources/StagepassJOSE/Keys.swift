internal import COpenSSL

/// Minimum RSA modulus size accepted anywhere (RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used").
public let minimumRSABits: Int32 = 2048

/// The single owner of an OpenSSL `EVP_PKEY` handle.
///
/// `@unchecked Sendable` invariant: the key is never mutated after `init` (OpenSSL 3 keys are safe to share for
/// signing/verifying when every call uses its own `EVP_MD_CTX`, which every method here does).
final class EVPKey: @unchecked Sendable {
    let pkey: OpaquePointer
    let type: KeyType

    /// Takes ownership of `pkey`; refuses key types Stagepass does not use and RSA keys under 2048 bits.
    init(taking pkey: OpaquePointer) throws(JOSEError) {
        self.pkey = pkey
        let id = EVP_PKEY_get_base_id(pkey)
        if id == EVP_PKEY_ED25519 {
            type = .ed25519
        } else if id == EVP_PKEY_RSA {
            // Check before `type` is set: once every property is initialised, a throw runs deinit (which frees).
            let bits = EVP_PKEY_get_bits(pkey)
            if bits < minimumRSABits {
                EVP_PKEY_free(pkey)
                throw .weakKey("RSA keys must have at least \(minimumRSABits) bits, this one has \(bits)")
            }
            type = .rsa
        } else if id == EVP_PKEY_EC {
            var name = [CChar](repeating: 0, count: 64)
            var len = 0
            let ok = EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, &name, name.count, &len)
            let group = String(decoding: name.prefix(len).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard ok == 1, group == "prime256v1" || group == "P-256" else {
                ERR_clear_error()
                EVP_PKEY_free(pkey)
                throw .invalidKey("only the P-256 curve is supported for EC keys")
            }
            type = .ecP256
        } else {
            EVP_PKEY_free(pkey)
            throw .invalidKey("unsupported key type")
        }
    }

    deinit { EVP_PKEY_free(pkey) }

    var bits: Int { Int(EVP_PKEY_get_bits(pkey)) }
}

/// A public verification key (from a JWK or SPKI PEM). Immutable and shareable across threads.
public struct PublicKey: Sendable {
    let key: EVPKey
    init(_ key: EVPKey) { self.key = key }

    public var type: KeyType { key.type }
    /// Size of the key in bits (256 for P-256 and Ed25519's 253-bit group is reported as 256 by OpenSSL).
    public var bits: Int { key.bits }

    /// Reads an SPKI (`-----BEGIN PUBLIC KEY-----`) PEM.
    /// - Throws: ``JOSEError/invalidPEM`` or ``JOSEError/weakKey``.
    public init(spkiPEM pem: String) throws(JOSEError) {
        let pkey: OpaquePointer? = withMemBIO(pem) { bio in PEM_read_bio_PUBKEY(bio, nil, nil, nil) }
        guard let pkey else { throw .invalidPEM("not an SPKI public key PEM: \(drainOpenSSLErrors())") }
        self.key = try EVPKey(taking: pkey)
    }

    /// Writes the key as an SPKI PEM.
    public func spkiPEM() throws(JOSEError) -> String {
        try writeBIO("PEM_write_bio_PUBKEY") { PEM_write_bio_PUBKEY($0, key.pkey) == 1 }
    }
}

/// A private signing key. Immutable and shareable across threads.
public struct PrivateKey: Sendable {
    let key: EVPKey
    init(_ key: EVPKey) { self.key = key }

    public var type: KeyType { key.type }
    public var bits: Int { key.bits }

    /// Generates a new key through OpenSSL EVP: P-256 for ES256, Ed25519 for EdDSA, RSA for RS256/PS256.
    /// - Parameter rsaBits: modulus size for RSA (default 3072; less than 2048 is refused).
    public static func generate(for alg: JWSAlgorithm, rsaBits: Int32 = 3072) throws(JOSEError) -> PrivateKey {
        let name: String
        switch alg.keyType {
        case .ecP256: name = "EC"
        case .ed25519: name = "ED25519"
        case .rsa:
            name = "RSA"
            if rsaBits < minimumRSABits { throw .weakKey("RSA keys must have at least \(minimumRSABits) bits") }
        }
        guard let ctx = EVP_PKEY_CTX_new_from_name(nil, name, nil) else {
            throw .cryptoFailure("EVP_PKEY_CTX_new_from_name: \(drainOpenSSLErrors())")
        }
        defer { EVP_PKEY_CTX_free(ctx) }
        try check(EVP_PKEY_keygen_init(ctx) == 1, "keygen_init")
        switch alg.keyType {
        case .ecP256: try check(EVP_PKEY_CTX_set_group_name(ctx, "P-256") == 1, "set_group_name")
        case .rsa: try check(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, rsaBits) == 1, "set_rsa_keygen_bits")
        case .ed25519: break
        }
        var pkey: OpaquePointer?
        try check(EVP_PKEY_generate(ctx, &pkey) == 1, "EVP_PKEY_generate")
        guard let pkey else { throw .cryptoFailure("EVP_PKEY_generate returned no key") }
        return PrivateKey(try EVPKey(taking: pkey))
    }

    /// Reads a PKCS#8 PEM private key (`BEGIN PRIVATE KEY` or `BEGIN ENCRYPTED PRIVATE KEY`; also the traditional
    /// `BEGIN EC PRIVATE KEY` / `BEGIN RSA PRIVATE KEY` forms `openssl` may write).
    /// - Parameter passphrase: needed for an encrypted key; never prompts on a terminal.
    /// - Throws: ``JOSEError/wrongPassphrase`` when an encrypted key does not decrypt, ``JOSEError/invalidPEM``
    ///   when the text is not a private key PEM, ``JOSEError/weakKey``/``JOSEError/invalidKey`` for unusable keys.
    public init(pem: String, passphrase: String? = nil) throws(JOSEError) {
        let encrypted = pem.contains("ENCRYPTED")
        let pkey: OpaquePointer? = withMemBIO(pem) { bio in
            if let passphrase {
                return passphrase.withCString { p in
                    PEM_read_bio_PrivateKey(bio, nil, nil, UnsafeMutableRawPointer(mutating: p))
                }
            }
            // A callback that refuses, so OpenSSL never prompts on the terminal.
            return PEM_read_bio_PrivateKey(bio, nil, { _, _, _, _ in -1 }, nil)
        }
        guard let pkey else {
            // PEM-layer errors (no END line, bad base64) mean a damaged file, not a wrong passphrase.
            let code = ERR_peek_error()
            let why = drainOpenSSLErrors()
            if !pem.contains("-----END ")
                || (ERR_GET_LIB(code) == ERR_LIB_PEM && ERR_GET_REASON(code) != PEM_R_BAD_DECRYPT
                    && ERR_GET_REASON(code) != PEM_R_BAD_PASSWORD_READ)
            {
                throw .invalidPEM("damaged PEM: \(why)")
            }
            if encrypted {
                throw passphrase == nil
                    ? .wrongPassphrase("this key is encrypted and no passphrase was given") : .wrongPassphrase()
            }
            throw .invalidPEM("not a private key PEM: \(why)")
        }
        self.key = try EVPKey(taking: pkey)
    }

    /// Writes the key as PKCS#8 PEM, encrypted with AES-256-CBC under a scrypt/PBKDF2-derived key
    /// (`BEGIN ENCRYPTED PRIVATE KEY`, PKCS#5 v2.0) when a passphrase is given.
    public func pkcs8PEM(passphrase: String?) throws(JOSEError) -> String {
        try writeBIO("PEM_write_bio_PKCS8PrivateKey") { bio in
            if let passphrase {
                let bytes = Array(passphrase.utf8)
                return bytes.withUnsafeBufferPointer { p in
                    PEM_write_bio_PKCS8PrivateKey(
                        bio,
                        key.pkey,
                        EVP_aes_256_cbc(),
                        UnsafeRawPointer(p.baseAddress).map {
                            UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: CChar.self))
                        },
                        Int32(p.count),
                        nil,
                        nil
                    ) == 1
                }
            }
            return PEM_write_bio_PKCS8PrivateKey(bio, key.pkey, nil, nil, 0, nil, nil) == 1
        }
    }

    /// The matching public key (a fresh handle holding only the public half).
    public func publicKey() throws(JOSEError) -> PublicKey {
        let pem = try writeBIO("PEM_write_bio_PUBKEY") { PEM_write_bio_PUBKEY($0, key.pkey) == 1 }
        return try PublicKey(spkiPEM: pem)
    }
}

/// Runs `body` with a read-only memory BIO over `text`.
func withMemBIO<T>(_ text: String, _ body: (OpaquePointer) -> T?) -> T? {
    let bytes = Array(text.utf8)
    return bytes.withUnsafeBytes { b -> T? in
        guard let bio = BIO_new_mem_buf(b.baseAddress, Int32(b.count)) else { return nil }
        defer { BIO_free(bio) }
        return body(bio)
    }
}

/// Runs `write` against a fresh memory BIO and returns what it wrote.
func writeBIO(_ what: String, _ write: (OpaquePointer) -> Bool) throws(JOSEError) -> String {
    guard let bio = BIO_new(BIO_s_mem()) else { throw .cryptoFailure("BIO_new") }
    defer { BIO_free(bio) }
    try check(write(bio), what)
    var ptr: UnsafeMutablePointer<CChar>?
    let len = COpenSSL_BIO_get_mem_data(bio, &ptr)
    guard let ptr, len > 0 else { throw .cryptoFailure("\(what) wrote nothing") }
    return String(decoding: UnsafeRawBufferPointer(start: ptr, count: len), as: UTF8.self)
}
