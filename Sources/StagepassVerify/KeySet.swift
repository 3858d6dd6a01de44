import StagepassJOSE

/// An immutable snapshot of verification keys, indexed by `kid`.
///
/// Built from a JWKS (RFC 7517 §5) with these rules (RFC 8725 §3.1: the algorithm is fixed per key, never
/// chosen by the token):
/// - a key without `kid` is skipped (tokens must name their key; an unknown kid is an error, never a fallback);
/// - a key whose `use` is present and not `sig` is skipped (RFC 7517 §4.2);
/// - the key's algorithm is its `alg`; without `alg`, EC P-256 means ES256 and OKP Ed25519 means EdDSA, and an RSA
///   key is skipped (RS256 or PS256 would be a guess); an `alg` outside the allow-list (`none`, HS*) is skipped;
/// - a key that OpenSSL refuses (off-curve point, RSA under 2048 bits) is skipped and reported in ``skipped``.
public struct KeySet: Sendable {
    public struct Entry: Sendable {
        public let kid: String
        public let alg: JWSAlgorithm
        public let key: PublicKey
    }

    public let entries: [String: Entry]
    /// Keys left out and why (for diagnostics; never fatal).
    public let skipped: [(kid: String?, reason: String)]

    /// - Parameter rsaAlgorithm: the algorithm of RSA keys that carry no `alg` (nil: such keys are skipped). A CI
    ///   issuer's configuration may fix it (its discovery document's `id_token_signing_alg_values_supported`);
    ///   a key's own `alg` always wins.
    public init(jwks: JWKS, rsaAlgorithm: JWSAlgorithm? = nil) {
        var entries = [String: Entry]()
        var ambiguous = Set<String>()
        var skipped = [(kid: String?, reason: String)]()
        for jwk in jwks.keys {
            guard let kid = jwk.kid else {
                skipped.append((nil, "no kid"))
                continue
            }
            if let use = jwk.use, use != "sig" {
                skipped.append((kid, "use is \(use)"))
                continue
            }
            let alg: JWSAlgorithm
            if let name = jwk.alg {
                guard let a = JWSAlgorithm(rawValue: name) else {
                    skipped.append((kid, "alg \(name) not accepted"))
                    continue
                }
                alg = a
            } else if jwk.kty == "EC" {
                alg = .ES256
            } else if jwk.kty == "OKP" {
                alg = .EdDSA
            } else if jwk.kty == "RSA", let rsa = rsaAlgorithm, rsa == .RS256 || rsa == .PS256 {
                alg = rsa
            } else {
                skipped.append((kid, "RSA key without alg"))
                continue
            }
            do {
                let key = try jwk.publicKey()
                guard key.type == alg.keyType else {
                    skipped.append((kid, "alg \(alg.rawValue) does not fit the key type"))
                    continue
                }
                // A kid on more than one usable key is ambiguous: none of them is used, however many there are.
                if ambiguous.contains(kid) || entries[kid] != nil {
                    skipped.append((kid, "duplicate kid"))
                    ambiguous.insert(kid)
                    entries[kid] = nil
                    continue
                }
                entries[kid] = Entry(kid: kid, alg: alg, key: key)
            } catch {
                skipped.append((kid, error.detail))
            }
        }
        self.entries = entries
        self.skipped = skipped
    }

    /// Parses a JWKS document.
    /// - Throws: ``JOSEError`` when the document is not a JWKS at all.
    public init(jwksJSON: [UInt8], rsaAlgorithm: JWSAlgorithm? = nil) throws(JOSEError) {
        self.init(jwks: try JWKS(json: jwksJSON), rsaAlgorithm: rsaAlgorithm)
    }

    public subscript(kid: String) -> Entry? { entries[kid] }
}
