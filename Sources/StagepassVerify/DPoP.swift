import StagepassJOSE
import Synchronization

/// How a DPoP-bound access token is presented (RFC 9449 §7.1): the `DPoP` request header and the request it came
/// with.
///
/// Passing a presentation to ``Verifier/verify(_:requirements:dpop:at:)`` means the request used the `DPoP`
/// authorization scheme; passing nil means the `Bearer` scheme (RFC 6750), which a bound token is never accepted
/// with (`dpop_required`).
public struct DPoPPresentation: Sendable {
    /// The compact JWS from the `DPoP` header (RFC 9449 §4.1).
    public var proof: String
    /// The request's HTTP method, as sent (`GET`, `POST`, …; compared case-sensitively, RFC 9110 §9.1).
    public var method: String
    /// The request's target URI (`https://deploy.example/api/deploy?x=1`); its query and fragment are ignored.
    public var url: String

    public init(proof: String, method: String, url: String) {
        self.proof = proof
        self.method = method
        self.url = url
    }
}

/// What a DPoP proof that passed every check says (RFC 9449 §4.2).
public struct DPoPProofClaims: Sendable, Hashable {
    /// The RFC 7638 thumbprint of the proof's `jwk`: the `jkt` a token bound to this key carries in `cnf`
    /// (RFC 9449 §6.1, RFC 7800 §3.1).
    public let thumbprint: String
    /// The proof's `jti` (unique per proof; the replay record's key together with ``thumbprint``).
    public let jti: String
    /// The proof's `iat`.
    public let issuedAt: Int64
    /// The proof's algorithm (ES256 or EdDSA).
    public let algorithm: JWSAlgorithm
    /// When a replay record of this proof may be forgotten: past it, ``DPoPProofChecker`` refuses the proof as too
    /// old anyway.
    public let replayExpiresAt: Int64
}

/// The checks of RFC 9449 §4.3 on one DPoP proof JWT, shared by the broker's token endpoint and the offline
/// verifier. Stateless: the "seen once" rule (§4.3 step 12, §11.1) is the caller's (``DPoPReplayCache`` in the
/// verifier, a table in the broker's store).
///
/// Accepted proofs: `typ` `dpop+jwt`; `alg` ES256 or EdDSA; `jwk` a public EC P-256 or OKP Ed25519 key (a member of
/// a private key is refused) matching `alg`; no `crit`; a valid signature by that key (ES256 in either low- or
/// high-S form: the proof's identity is its `jti`, not its signature bytes); `jti` a non-empty string of at most
/// ``maxJTIBytes`` bytes; `htm` equal to the method; `htu` equal to the URL after normalisation
/// (``normalizedTargetURI(_:)``); `iat` an integer within `[now - maxAge - leeway, now + leeway]`; and, when an
/// access token is given, `ath` equal to base64url(SHA-256(token)) (§4.3 step 11).
public struct DPoPProofChecker: Sendable {
    /// The longest proof accepted, in bytes (a P-256 or Ed25519 proof is about 500).
    public static let maxProofBytes = 4096
    /// The longest `jti` accepted, in bytes.
    public static let maxJTIBytes = 128
    /// The algorithms a proof may use (RFC 9449 §5.1 `dpop_signing_alg_values_supported`).
    public static let algorithms: [JWSAlgorithm] = [.ES256, .EdDSA]

    /// How old a proof may be (its `iat` before now), in seconds, before the leeway.
    public let maxAge: Int64
    /// Clock skew tolerated in both directions, in seconds.
    public let leeway: Int64
    /// Proof keys already imported (nil: none kept).
    private let keys: DPoPKeyCache?

    /// - Parameter keyCache: how many proof keys to keep imported (0: none). Importing a P-256 point costs about as
    ///   much as verifying a signature, and a client signs all its proofs with one key.
    public init(maxAge: Int64 = 60, leeway: Int64 = 30, keyCache: Int = 0) {
        self.maxAge = max(1, maxAge)
        self.leeway = max(0, leeway)
        self.keys = keyCache > 0 ? DPoPKeyCache(capacity: keyCache) : nil
    }

    /// Checks `proof` for a request with `method` to `url`.
    /// - Parameters:
    ///   - accessToken: the access token the proof comes with (a resource request: `ath` is required and must
    ///     match); nil at the token endpoint, where a proof carries no `ath`.
    ///   - now: unix seconds.
    /// - Returns: the proof's key thumbprint, `jti` and `iat`.
    /// - Throws: ``VerificationError`` `bad_dpop_proof` naming the first failed check.
    public func check(
        _ proof: String,
        method: String,
        url: String,
        accessToken: String?,
        now: Int64
    ) throws(VerificationError) -> DPoPProofClaims {
        func bad(_ why: String) -> VerificationError { VerificationError(.badDPoPProof, why) }
        // RFC 9449 §4.3 step 2: a single well-formed JWT (JWS compact serialization, RFC 7515 §7.1).
        guard proof.utf8.count <= Self.maxProofBytes else { throw bad("proof larger than \(Self.maxProofBytes) bytes") }
        let parts = proof.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty, !parts[2].isEmpty else {
            throw bad("not a compact JWS of three segments")
        }
        let headerBytes: [UInt8]
        let claimBytes: [UInt8]
        let signature: [UInt8]
        do {
            headerBytes = try Base64URL.decode(String(decoding: parts[0], as: UTF8.self))
            claimBytes = try Base64URL.decode(String(decoding: parts[1], as: UTF8.self))
            signature = try Base64URL.decode(String(decoding: parts[2], as: UTF8.self))
        } catch {
            throw bad("a segment is not strict base64url")
        }
        let header: [String: JSONValue]
        let claims: [String: JSONValue]
        do {
            guard let h = try JSONValue.parse(headerBytes, maxDepth: 4).objectValue,
                let c = try JSONValue.parse(claimBytes, maxDepth: 4).objectValue
            else { throw bad("header and claims must be JSON objects") }
            header = h
            claims = c
        } catch let e as VerificationError {
            throw e
        } catch {
            throw bad("header or claims are not strict JSON")
        }
        // §4.3 step 4: typ is dpop+jwt (explicit typing, RFC 8725 §3.11).
        guard header["typ"]?.stringValue == "dpop+jwt" else { throw bad("typ must be dpop+jwt") }
        // RFC 7515 §4.1.11: no critical extensions are understood.
        guard header["crit"] == nil else { throw bad("crit is not supported") }
        // §4.3 step 5: an asymmetric algorithm we support (never none or a MAC).
        guard let algName = header["alg"]?.stringValue, let alg = JWSAlgorithm(rawValue: algName),
            Self.algorithms.contains(alg)
        else { throw bad("alg must be ES256 or EdDSA") }
        // §4.3 step 7: jwk is a public key; a private key member makes the whole proof invalid.
        guard case .object(let jwkMembers)? = header["jwk"] else { throw bad("jwk header is required") }
        for m in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] where jwkMembers[m] != nil {
            throw bad("jwk must not contain private key members")
        }
        let key: PublicKey
        let thumbprint: String
        // The members RFC 7638 §3.2 hashes identify the public key: the cache key (other members change nothing).
        let identity = ["kty", "crv", "x", "y"].map { jwkMembers[$0]?.stringValue ?? "" }.joined(separator: "\u{0}")
        do {
            // Parsed every time (the JWK's own rules decide alike with and without the cache); imported once.
            let jwk = try JWK(json: .object(jwkMembers))
            if let hit = keys?.lookup(identity) {
                (key, thumbprint) = hit
            } else {
                key = try jwk.publicKey()
                thumbprint = try jwk.thumbprint()
                keys?.insert(identity, (key, thumbprint))
            }
        } catch {
            throw bad("jwk is not a usable public key")
        }
        guard key.type == alg.keyType else { throw bad("jwk does not fit alg \(alg.rawValue)") }
        // §4.3 step 6: the signature verifies with the jwk (RFC 7515 §5.2 step 8).
        let signingInput = Array(proof.utf8.prefix(parts[0].count + 1 + parts[1].count))
        let valid: Bool
        if alg == .ES256 {
            // Either s form: a proof is identified by its jti, so ECDSA malleability changes nothing here.
            valid = key.verifyECDSARaw(signingInput: signingInput, signature: signature)
        } else {
            valid = key.verify(alg, signingInput: signingInput, signature: signature)
        }
        guard valid else { throw bad("signature does not verify with the proof's jwk") }
        // §4.2: jti, htm, htu, iat are required.
        guard let jti = claims["jti"]?.stringValue, !jti.isEmpty, jti.utf8.count <= Self.maxJTIBytes else {
            throw bad("jti must be a string of 1...\(Self.maxJTIBytes) bytes")
        }
        // §4.3 step 8: htm matches the request method.
        guard let htm = claims["htm"]?.stringValue else { throw bad("htm is required") }
        guard htm == method else { throw bad("htm \(htm) is not the request method \(method)") }
        // §4.3 step 9: htu matches the target URI, ignoring query and fragment (normalised per RFC 3986 §6.2.2-6.2.3).
        guard let htu = claims["htu"]?.stringValue else { throw bad("htu is required") }
        guard let want = Self.normalizedTargetURI(url) else { throw bad("the request URL is not an absolute URI") }
        guard Self.normalizedTargetURI(htu) == want else { throw bad("htu does not match the request URL") }
        // §4.3 step 10 / §11.1: iat within an acceptable window.
        guard let iat = claims["iat"]?.intValue else { throw bad("iat must be an integer NumericDate") }
        if sat(now, leeway) < iat { throw bad("proof issued in the future") }
        if sat(iat, sat(maxAge, leeway)) < now { throw bad("proof older than \(maxAge) s") }
        // §4.3 step 11: with an access token, ath is its base64url SHA-256 hash.
        if let accessToken {
            guard let ath = claims["ath"]?.stringValue else { throw bad("ath is required with an access token") }
            let digest: [UInt8]
            do { digest = try Crypto.sha256(accessToken.utf8) } catch { throw bad("cannot hash the access token") }
            guard Crypto.constantTimeEqual(Array(ath.utf8), Array(Base64URL.encode(digest).utf8)) else {
                throw bad("ath does not match the access token")
            }
        }
        return DPoPProofClaims(
            thumbprint: thumbprint,
            jti: jti,
            issuedAt: iat,
            algorithm: alg,
            replayExpiresAt: sat(iat, sat(maxAge, sat(leeway, 1)))
        )
    }

    /// The target URI as compared by the `htu` check (RFC 9449 §4.3 step 9): query and fragment removed, scheme
    /// and host lower-cased (RFC 3986 §6.2.2.1), the scheme's default port removed and an empty path made "/"
    /// (§6.2.3), hexadecimal digits of percent-encodings upper-cased (§6.2.2.1). Dot segments and percent-encoded
    /// unreserved characters are left as they are: both sides of a request name the same path the same way.
    /// - Returns: nil when `uri` is not an absolute `http` or `https` URI with a host.
    public static func normalizedTargetURI(_ uri: String) -> String? {
        var s = Substring(uri)
        if let cut = s.firstIndex(where: { $0 == "?" || $0 == "#" }) { s = s[..<cut] }
        guard let colon = s.firstRange(of: "://") else { return nil }
        let scheme = s[..<colon.lowerBound].lowercased()
        guard scheme == "https" || scheme == "http" else { return nil }
        let rest = s[colon.upperBound...]
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        var authority = rest[..<slash].lowercased()
        var path = String(rest[slash...])
        // Userinfo has no place in a request target (RFC 9110 §4.2.4).
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        if scheme == "https", authority.hasSuffix(":443") { authority.removeLast(4) }
        if scheme == "http", authority.hasSuffix(":80") { authority.removeLast(3) }
        if path.isEmpty { path = "/" }
        return scheme + "://" + authority + upperCasePercentEncodings(path)
    }

    private static func upperCasePercentEncodings(_ path: String) -> String {
        guard path.contains("%") else { return path }
        var out = [UInt8]()
        var pending = 0
        for b in path.utf8 {
            if pending > 0 {
                out.append(b >= UInt8(ascii: "a") && b <= UInt8(ascii: "f") ? b - 32 : b)
                pending -= 1
            } else {
                if b == UInt8(ascii: "%") { pending = 2 }
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Imported proof keys by their RFC 7638 members, with their thumbprints: bounded, FIFO eviction (a miss only costs
/// an import, so forgetting is harmless here, unlike in ``DPoPReplayCache``).
final class DPoPKeyCache: Sendable {
    private struct State {
        var map: [String: (PublicKey, String)] = [:]
        var order: [String] = []
        var next = 0
    }
    private let capacity: Int
    private let state: Mutex<State>

    init(capacity: Int) {
        self.capacity = max(1, capacity)
        self.state = Mutex(State())
    }

    func lookup(_ identity: String) -> (PublicKey, String)? { state.withLock { $0.map[identity] } }

    func insert(_ identity: String, _ entry: (PublicKey, String)) {
        state.withLock { s in
            guard s.map[identity] == nil else { return }
            if s.order.count < capacity {
                s.order.append(identity)
            } else {
                s.map[s.order[s.next]] = nil
                s.order[s.next] = identity
                s.next = (s.next + 1) % capacity
            }
            s.map[identity] = entry
        }
    }
}

/// The verifier's record of DPoP proofs already accepted (RFC 9449 §11.1): bounded in count and in time.
///
/// An entry is kept until its proof could no longer pass the `iat` window (``DPoPProofClaims/replayExpiresAt``),
/// then forgotten. When the cache holds `capacity` unexpired entries a new proof is refused
/// (`dpop_replay_cache_full`) rather than an unexpired entry evicted: evicting would let the evicted proof be
/// replayed, so a flood of proofs can make the verifier refuse requests for at most one proof lifetime but can never
/// make it accept a replay. Size the capacity above the peak number of DPoP requests per proof lifetime.
///
/// The record is per process (per ``Verifier``): several replicas of a deploy endpoint each keep their own, so a
/// proof could be replayed once against each replica. A proof is also bound to its method and URL, which limits
/// that to the replicas serving the same URL.
public final class DPoPReplayCache: Sendable {
    private struct State {
        var expiries: [String: Int64] = [:]
        /// Keys in insertion order, with the expiry they were inserted with (nearly sorted: iat varies by the skew).
        var queue: [(key: String, expiresAt: Int64)] = []
        var head = 0
        /// When the last full sweep ran: at most one per second, so a flood against a full cache costs a lookup
        /// per proof, not a sweep.
        var sweptAt = Int64.min
    }

    public let capacity: Int
    private let state: Mutex<State>

    public init(capacity: Int) {
        self.capacity = max(1, capacity)
        self.state = Mutex(State())
    }

    /// The number of unexpired entries as of the last insertion.
    public var count: Int { state.withLock { $0.expiries.count } }

    /// Records a proof seen at `now`.
    /// - Throws: ``VerificationError`` `dpop_replayed` when the key is already recorded and unexpired,
    ///   `dpop_replay_cache_full` when `capacity` unexpired entries leave no room (nothing is evicted).
    public func record(_ key: String, expiresAt: Int64, now: Int64) throws(VerificationError) {
        let outcome: VerificationErrorCode? = state.withLock { s in
            if let e = s.expiries[key], e > now { return .dpopReplayed }
            Self.purgeFront(&s, now: now)
            if s.expiries.count >= capacity, s.sweptAt != now {
                // The front may hold a later expiry than entries behind it: one full sweep before refusing.
                s.sweptAt = now
                s.expiries = s.expiries.filter { $0.value > now }
                s.queue = s.queue[s.head...].filter {
                    (s.expiries[$0.key] ?? .min) == $0.expiresAt && $0.expiresAt > now
                }
                s.head = 0
            }
            if s.expiries.count >= capacity { return .dpopReplayCacheFull }
            s.expiries[key] = expiresAt
            s.queue.append((key, expiresAt))
            return nil
        }
        switch outcome {
        case .dpopReplayed?: throw VerificationError(.dpopReplayed, "this DPoP proof (jti) was already used")
        case .some(let code):
            throw VerificationError(code, "the DPoP replay cache holds \(capacity) unexpired proofs")
        case nil: return
        }
    }

    /// The unexpired entries at `now` (key and the expiry it was recorded with), for a caller that keeps the record
    /// beyond the process (`stagepass verify --dpop-replay-file`).
    public func entries(now: Int64) -> [(key: String, expiresAt: Int64)] {
        state.withLock { s in s.expiries.filter { $0.value > now }.map { (key: $0.key, expiresAt: $0.value) } }
    }

    private static func purgeFront(_ s: inout State, now: Int64) {
        while s.head < s.queue.count, s.queue[s.head].expiresAt <= now {
            let (k, e) = s.queue[s.head]
            if s.expiries[k] == e { s.expiries[k] = nil }
            s.head += 1
        }
        // Compact once the consumed prefix dominates, so the queue stays O(capacity).
        if s.head > 1024, s.head * 2 > s.queue.count {
            s.queue.removeFirst(s.head)
            s.head = 0
        }
    }
}
