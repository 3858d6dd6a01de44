import StagepassJOSE
import Synchronization

/// What a verifier accepts, fixed when it is created (go-oidc / go-jose `Expected` style: safe defaults).
///
/// The durations are bounded (``VerifierLimits``): a configuration that would accept a token long expired, an
/// arbitrarily long-lived token, or a status list of any age is refused with a ``VerifierConfigurationError``
/// instead of silently weakening every check.
public struct VerifierConfiguration: Sendable {
    /// The only accepted `iss` (RFC 7519 §4.1.1).
    public private(set) var issuer: String
    /// Accepted audiences: a token is accepted if any of its `aud` values is one of these (RFC 7519 §4.1.3).
    public private(set) var audiences: [String]
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds (default 30; 0 ... ``VerifierLimits/maxLeeway``).
    public private(set) var leeway: Int64
    /// Longest accepted `exp - iat`, in seconds (default 3600; 1 ... ``VerifierLimits/maxLifetime``).
    public private(set) var maxLifetime: Int64
    /// Fail-closed age limit for status lists: older than this (since fetched) and tokens are
    /// `status_unavailable`. nil: only the list's own `exp` limits it (1 ... ``VerifierLimits/maxStatusMaxAge``).
    public private(set) var statusMaxAge: Int64?
    /// Verified tokens kept so a repeated token costs a hash lookup (0 or less disables the cache).
    public var cacheCapacity: Int
    /// Which kind of JWT is expected (default: a Stagepass access token, `typ` `at+jwt`).
    public var profile: TokenProfile = .accessToken
    /// How old a DPoP proof may be (its `iat` before now, plus ``leeway``), in seconds (default 60;
    /// 1 ... ``VerifierLimits/maxDPoPProofAge``; RFC 9449 §11.1).
    public private(set) var dpopProofMaxAge: Int64
    /// DPoP proofs remembered for the replay check (``DPoPReplayCache``; at least 1, default 65536). When this many
    /// unexpired proofs are held, new proofs are refused (`dpop_replay_cache_full`) until some expire.
    public var dpopReplayCapacity: Int

    /// - Throws: ``VerifierConfigurationError`` when a duration is negative, zero where it must be positive, or
    ///   above its ``VerifierLimits`` cap.
    public init(
        issuer: String,
        audiences: [String],
        leeway: Int64 = 30,
        maxLifetime: Int64 = 3600,
        statusMaxAge: Int64? = nil,
        cacheCapacity: Int = 16384,
        dpopProofMaxAge: Int64 = 60,
        dpopReplayCapacity: Int = 65536
    ) throws(VerifierConfigurationError) {
        try VerifierLimits.check(leeway: leeway, maxLifetime: maxLifetime, statusMaxAge: statusMaxAge)
        guard (1...VerifierLimits.maxDPoPProofAge).contains(dpopProofMaxAge) else {
            throw VerifierConfigurationError(
                .invalidDPoPProofMaxAge,
                "DPoP proof max age \(dpopProofMaxAge) s is outside 1...\(VerifierLimits.maxDPoPProofAge) s"
            )
        }
        self.dpopProofMaxAge = dpopProofMaxAge
        self.dpopReplayCapacity = max(1, dpopReplayCapacity)
        self.issuer = issuer
        self.audiences = audiences
        self.leeway = leeway
        self.maxLifetime = maxLifetime
        self.statusMaxAge = statusMaxAge
        self.cacheCapacity = cacheCapacity
    }
}

/// The kind of JWT a ``Verifier`` accepts (RFC 8725 §3.11: explicit typing keeps one kind of token from being
/// accepted as another).
public enum TokenProfile: Sendable, Hashable {
    /// A Stagepass access token: `typ` must be `at+jwt` (RFC 9068 §2.1, §4); `jti` is required.
    case accessToken
    /// An OpenID Connect ID token from a CI platform (GitHub Actions, GitLab CI, Buildkite): `typ`, when present,
    /// must be `JWT` (RFC 7519 §5.1, compared case-insensitively); `at+jwt` is refused, so a Stagepass access token is
    /// never taken for a CI identity. `jti` is optional (Buildkite's tokens carry none); the caller decides how a
    /// token without one is recognised again.
    case idToken
}

/// The bounds of a ``VerifierConfiguration`` (Specs/token-profile.md, "Verifier bounds"), shared by the Swift
/// library, the C ABI and `stagepass verify`.
public enum VerifierLimits {
    /// The largest clock skew a verifier tolerates: 5 minutes (RFC 7519 §4.1.4 "a small leeway, usually no more than
    /// a few minutes"). A larger leeway is a configuration mistake that keeps expired tokens alive.
    public static let maxLeeway: Int64 = 300
    /// The longest token lifetime (`exp - iat`) a verifier may accept: 24 hours. Stage lifetimes are minutes; the
    /// broker's own cap for any signed object is one rotation period.
    public static let maxLifetime: Int64 = 86_400
    /// The largest fail-closed status-list age: 24 hours.
    public static let maxStatusMaxAge: Int64 = 86_400
    /// The largest accepted DPoP proof age: 5 minutes (RFC 9449 §11.1: "a relatively brief period of time"). The
    /// replay record must hold every proof this long.
    public static let maxDPoPProofAge: Int64 = 300

    /// Checks the three durations against the bounds.
    /// - Throws: ``VerifierConfigurationError`` naming the first value out of range.
    public static func check(
        leeway: Int64,
        maxLifetime: Int64,
        statusMaxAge: Int64?
    ) throws(VerifierConfigurationError) {
        guard (0...maxLeeway).contains(leeway) else {
            throw VerifierConfigurationError(.invalidLeeway, "leeway \(leeway) s is outside 0...\(maxLeeway) s")
        }
        guard (1...Self.maxLifetime).contains(maxLifetime) else {
            throw VerifierConfigurationError(
                .invalidMaxLifetime,
                "max lifetime \(maxLifetime) s is outside 1...\(Self.maxLifetime) s"
            )
        }
        if let statusMaxAge, !(1...maxStatusMaxAge).contains(statusMaxAge) {
            throw VerifierConfigurationError(
                .invalidStatusMaxAge,
                "status max age \(statusMaxAge) s is outside 1...\(maxStatusMaxAge) s"
            )
        }
    }
}

/// A ``VerifierConfiguration`` value out of its bounds (``VerifierLimits``): nothing was created.
///
/// `code` is stable (`invalid_leeway`, `invalid_max_lifetime`, `invalid_status_max_age`);
/// `detail` names the value and the allowed range and is not part of `==`.
public struct VerifierConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    enum Code: String, Sendable {
        case invalidLeeway = "invalid_leeway"
        case invalidMaxLifetime = "invalid_max_lifetime"
        case invalidStatusMaxAge = "invalid_status_max_age"
        case invalidDPoPProofMaxAge = "invalid_dpop_proof_max_age"
    }

    private let _code: Code
    /// The value and the allowed range, for humans.
    public let detail: String

    init(_ code: Code, _ detail: String) {
        _code = code
        self.detail = detail
    }

    /// The stable machine-readable code, e.g. `invalid_leeway`.
    public var code: String { _code.rawValue }
    public var description: String { "\(code): \(detail)" }

    public static func == (l: Self, r: Self) -> Bool { l._code == r._code }
    public func hash(into hasher: inout Hasher) { hasher.combine(_code) }

    /// The leeway is negative or above ``VerifierLimits/maxLeeway``.
    public static let invalidLeeway = Self(.invalidLeeway, "")
    /// The max lifetime is not positive or above ``VerifierLimits/maxLifetime``.
    public static let invalidMaxLifetime = Self(.invalidMaxLifetime, "")
    /// The status max age is not positive or above ``VerifierLimits/maxStatusMaxAge``.
    public static let invalidStatusMaxAge = Self(.invalidStatusMaxAge, "")
    /// The DPoP proof max age is not positive or above ``VerifierLimits/maxDPoPProofAge``.
    public static let invalidDPoPProofMaxAge = Self(.invalidDPoPProofMaxAge, "")
}

/// What one caller requires of one token (checked after signature and time).
public struct Requirements: Sendable, Hashable {
    /// Accepted roles (any of); empty = any role.
    public var roles: [String]
    /// Required stage; nil = any.
    public var stage: String?
    /// Pattern over `client_id`, `*` matching any run of characters; nil = any (a token without `client_id` fails
    /// any pattern).
    public var pipeline: String?

    public init(roles: [String] = [], stage: String? = nil, pipeline: String? = nil) {
        self.roles = roles
        self.stage = stage
        self.pipeline = pipeline
    }

    public static let none = Requirements()
}

/// A `status` claim's reference into a status list (draft-ietf-oauth-status-list §6.1).
public struct StatusReference: Sendable, Hashable {
    public let uri: String
    public let index: Int
}

/// A token that passed every check. `payload` is the exact claims JSON that was signed (never re-serialized).
///
/// A value type over one immutable box, so copying it (every cache hit returns a copy) retains one object
/// instead of each of its strings and arrays.
public struct VerifiedToken: Sendable {
    private final class Storage: Sendable {
        let kid: String
        let alg: JWSAlgorithm
        let issuer: String
        let subject: String
        let audiences: [String]
        let expiresAt: Int64
        let issuedAt: Int64
        let notBefore: Int64?
        let jti: String
        let clientID: String?
        let role: String?
        let stage: String?
        let sessionID: String?
        let status: StatusReference?
        let confirmationThumbprint: String?
        let payload: [UInt8]

        init(
            kid: String,
            alg: JWSAlgorithm,
            issuer: String,
            subject: String,
            audiences: [String],
            expiresAt: Int64,
            issuedAt: Int64,
            notBefore: Int64?,
            jti: String,
            clientID: String?,
            role: String?,
            stage: String?,
            sessionID: String?,
            status: StatusReference?,
            confirmationThumbprint: String?,
            payload: [UInt8]
        ) {
            self.kid = kid
            self.alg = alg
            self.issuer = issuer
            self.subject = subject
            self.audiences = audiences
            self.expiresAt = expiresAt
            self.issuedAt = issuedAt
            self.notBefore = notBefore
            self.jti = jti
            self.clientID = clientID
            self.role = role
            self.stage = stage
            self.sessionID = sessionID
            self.status = status
            self.confirmationThumbprint = confirmationThumbprint
            self.payload = payload
        }
    }

    private let storage: Storage

    init(
        kid: String,
        alg: JWSAlgorithm,
        issuer: String,
        subject: String,
        audiences: [String],
        expiresAt: Int64,
        issuedAt: Int64,
        notBefore: Int64?,
        jti: String,
        clientID: String?,
        role: String?,
        stage: String?,
        sessionID: String?,
        status: StatusReference?,
        confirmationThumbprint: String?,
        payload: [UInt8]
    ) {
        storage = Storage(
            kid: kid,
            alg: alg,
            issuer: issuer,
            subject: subject,
            audiences: audiences,
            expiresAt: expiresAt,
            issuedAt: issuedAt,
            notBefore: notBefore,
            jti: jti,
            clientID: clientID,
            role: role,
            stage: stage,
            sessionID: sessionID,
            status: status,
            confirmationThumbprint: confirmationThumbprint,
            payload: payload
        )
    }

    public var kid: String { storage.kid }
    public var alg: JWSAlgorithm { storage.alg }
    public var issuer: String { storage.issuer }
    public var subject: String { storage.subject }
    public var audiences: [String] { storage.audiences }
    public var expiresAt: Int64 { storage.expiresAt }
    public var issuedAt: Int64 { storage.issuedAt }
    public var notBefore: Int64? { storage.notBefore }
    public var jti: String { storage.jti }
    public var clientID: String? { storage.clientID }
    public var role: String? { storage.role }
    public var stage: String? { storage.stage }
    public var sessionID: String? { storage.sessionID }
    public var status: StatusReference? { storage.status }
    /// `cnf.jkt` (RFC 7800 §3.1, RFC 9449 §6.1): the RFC 7638 thumbprint of the key the token is bound to, or nil
    /// for a bearer token. A bound token is accepted only with a DPoP proof by that key.
    public var confirmationThumbprint: String? { storage.confirmationThumbprint }
    /// The claims object as signed (UTF-8 JSON).
    public var payload: [UInt8] { storage.payload }

    /// The claims as a JSON tree (parsed on demand).
    public var claims: JSONValue { (try? JSONValue.parse(payload)) ?? .null }
    /// The claims JSON text.
    public var payloadString: String { String(decoding: payload, as: UTF8.self) }
}

/// The offline verifier (Specs/token-profile.md). One instance serves any number of concurrent callers.
///
/// ```swift
/// let verifier = Verifier(
///     configuration: try .init(issuer: "https://stagepass.example", audiences: ["deploy-api"]),
///     keys: try FileKeySource(path: "/etc/stagepass/jwks.json"))
/// let token = try verifier.verify(bearer, requirements: .init(roles: ["deployer"], stage: "production"))
/// ```
///
/// Checks run in the order of ``VerificationErrorCode``; the first failure is thrown. The verifier never makes a
/// network request because of anything inside a token (`jku`, `x5u`, `jwk`, `x5c` are refused, status `uri`s are
/// only matched against lists the embedding application configured).
public final class Verifier: Sendable {
    /// Longest token accepted, in bytes.
    public static let maxTokenBytes = 16 * 1024
    /// Deepest JSON nesting accepted in header and claims.
    public static let maxJSONDepth = 16

    public let configuration: VerifierConfiguration
    /// Whether revocation is checked: a status list source was configured, or a list was offered through
    /// ``installStatusList(_:fetchedAt:maxAge:)`` (successfully or not: a refused list fails closed).
    public var checksStatus: Bool { statusOn.load(ordering: .acquiring) }
    /// The verifier's status lists (one per `sub`, each verified before it was installed).
    public let statusListHolder: StatusListHolder
    private let keys: any KeySource
    private let statusSource: (any StatusListSource)?
    private let statusOn: Atomic<Bool>
    private let cache: TokenCache
    private let now: @Sendable () -> Int64
    private let dpopChecker: DPoPProofChecker
    /// The DPoP proofs this verifier accepted (RFC 9449 §11.1).
    public let replayCache: DPoPReplayCache

    /// - Parameters:
    ///   - keys: the JWKS source (memory, file, or URL via StagepassVerifyFetch).
    ///   - statusLists: status list source, polled on each verification (a document not seen before is verified and
    ///     installed into ``statusListHolder``); nil leaves revocation checks off until a list is installed.
    ///   - clock: unix seconds; defaults to the system clock.
    public init(
        configuration: VerifierConfiguration,
        keys: any KeySource,
        statusLists: (any StatusListSource)? = nil,
        clock: (@Sendable () -> Int64)? = nil
    ) {
        self.configuration = configuration
        self.keys = keys
        self.statusSource = statusLists
        self.statusListHolder = StatusListHolder()
        self.statusOn = Atomic(statusLists != nil)
        self.cache = TokenCache(capacity: configuration.cacheCapacity)
        self.now = clock ?? { systemNow() }
        self.dpopChecker = DPoPProofChecker(
            maxAge: configuration.dpopProofMaxAge,
            leeway: configuration.leeway,
            keyCache: 1024
        )
        self.replayCache = DPoPReplayCache(capacity: configuration.dpopReplayCapacity)
    }

    /// Verifies a status list token against the verifier's current keys and installs it (``StatusListHolder``
    /// rules: a list replaces the one with the same `sub` only if it is not older). Turns status checking on, even
    /// when the list is refused: from then on a token whose list is missing, expired or too old is
    /// `status_unavailable`, never `ok`.
    /// - Parameters:
    ///   - jwt: the compact `statuslist+jwt`.
    ///   - fetchedAt: when it was obtained (unix seconds); nil = now. The list is judged as of this time (expired,
    ///     issued in the future); every verification judges its `exp` and age again.
    ///   - maxAge: fail-closed age limit for this copy (the stricter of this and ``VerifierConfiguration/statusMaxAge``).
    /// - Returns: what is installed for the list's `sub`.
    /// - Throws: ``StatusListError`` when the document is unusable or older than the installed list.
    @discardableResult
    public func installStatusList(
        _ jwt: String,
        fetchedAt: Int64? = nil,
        maxAge: Int64? = nil
    ) throws(StatusListError) -> StatusListInfo {
        statusOn.store(true, ordering: .releasing)
        let now = fetchedAt ?? self.now()
        return try statusListHolder.install(
            jwt,
            fetchedAt: now,
            maxAge: maxAge,
            keys: keys.current(now: now),
            now: now,
            leeway: configuration.leeway
        )
    }

    /// Verifies a compact JWS access token.
    /// - Parameters:
    ///   - token: the compact serialization (RFC 7515 §7.1).
    ///   - requirements: the caller's role/stage/pipeline requirements.
    ///   - at: the time to verify at (unix seconds); nil = the verifier's clock.
    /// - Returns: the verified token.
    /// - Throws: ``VerificationError`` naming the first failed check.
    public func verify(
        _ token: String,
        requirements: Requirements = .none,
        at: Int64? = nil
    ) throws(VerificationError) -> VerifiedToken {
        try verify(token, requirements: requirements, dpop: nil, at: at)
    }

    /// Verifies a compact JWS access token presented with the `DPoP` scheme (a presentation) or the `Bearer`
    /// scheme (nil).
    ///
    /// After every check of ``verify(_:requirements:at:)`` (same order, same codes), the sender constraint
    /// (RFC 9449 §7.1, RFC 7800): a token with `cnf.jkt` needs a presentation (`dpop_required`); the proof must pass
    /// ``DPoPProofChecker`` for this method and URL with `ath` matching the token (`bad_dpop_proof`), be signed by
    /// the key whose thumbprint is `cnf.jkt` (`dpop_key_mismatch`), and not have been accepted before
    /// (`dpop_replayed`, `dpop_replay_cache_full`). A presentation with a token that has no `cnf.jkt` is refused
    /// `dpop_key_mismatch` (the DPoP scheme asserts a binding the token does not have).
    ///
    /// ```swift
    /// let token = try verifier.verify(
    ///     accessToken, requirements: .init(stage: "production"),
    ///     dpop: .init(proof: dpopHeader, method: "POST", url: "https://deploy.example/api/deploy"))
    /// ```
    /// - Parameters:
    ///   - dpop: the `DPoP` header and the request it came with; nil for a bearer presentation.
    /// - Returns: the verified token; the proof is then recorded as used.
    /// - Throws: ``VerificationError`` naming the first failed check.
    public func verify(
        _ token: String,
        requirements: Requirements = .none,
        dpop: DPoPPresentation?,
        at: Int64? = nil
    ) throws(VerificationError) -> VerifiedToken {
        let now = at ?? self.now()
        let keySet = keys.current(now: now)
        let verified: VerifiedToken
        if let hit = cache.lookup(token), let ks = keySet, ks[hit.kid] != nil {
            verified = hit
        } else {
            verified = try verifyUncached(token, keySet: keySet, now: now)
            cache.insert(token, verified)
        }
        try checkTime(verified, now: now)
        try checkRequirements(verified, requirements)
        try checkStatus(verified, keySet: keySet, now: now)
        try checkBinding(verified, token: token, dpop: dpop, now: now)
        return verified
    }

    /// RFC 9449 §7.1: the sender constraint of a `cnf.jkt` token, checked on every call (a proof is never cached).
    private func checkBinding(
        _ t: VerifiedToken,
        token: String,
        dpop: DPoPPresentation?,
        now: Int64
    ) throws(VerificationError) {
        guard let dpop else {
            // RFC 9449 §7.1 / RFC 6750: a bound token presented as a bearer token is refused.
            if t.confirmationThumbprint != nil {
                throw VerificationError(.dpopRequired, "the token is bound to a key (cnf.jkt): present a DPoP proof")
            }
            return
        }
        guard let jkt = t.confirmationThumbprint else {
            throw VerificationError(.dpopKeyMismatch, "the token is not bound to a key (no cnf.jkt)")
        }
        let proof = try dpopChecker.check(
            dpop.proof,
            method: dpop.method,
            url: dpop.url,
            accessToken: token,
            now: now
        )
        // RFC 9449 §4.3 step 12 / §6.1: the proof's key is the one the token is bound to.
        guard Crypto.constantTimeEqual(Array(proof.thumbprint.utf8), Array(jkt.utf8)) else {
            throw VerificationError(.dpopKeyMismatch, "the proof is signed by another key than the token's cnf.jkt")
        }
        // RFC 9449 §11.1: each proof once. Keyed by key and jti, so one client cannot spend another's jti.
        try replayCache.record(proof.thumbprint + " " + proof.jti, expiresAt: proof.replayExpiresAt, now: now)
    }

    // MARK: - Parsing, header, signature, static claims (cached)

    private func verifyUncached(
        _ token: String,
        keySet current: KeySet?,
        now: Int64
    ) throws(VerificationError) -> VerifiedToken {
        var token = token
        let r = token.withUTF8 { buf in
            Result<VerifiedToken, VerificationError> { () throws(VerificationError) in
                try verifyBytes(UnsafeRawBufferPointer(buf), keySet: current, now: now)
            }
        }
        return try r.get()
    }

    private func verifyBytes(
        _ t: UnsafeRawBufferPointer,
        keySet current: KeySet?,
        now: Int64
    ) throws(VerificationError) -> VerifiedToken {
        // RFC 8725 §3.11 / RFC 7515 §7.1: exactly three base64url segments, bounded size.
        guard t.count <= Verifier.maxTokenBytes else {
            throw VerificationError(.malformed, "token larger than \(Verifier.maxTokenBytes) bytes")
        }
        let dot1 = firstDot(t, from: 0) ?? -1
        let dot2 = dot1 < 0 ? -1 : firstDot(t, from: dot1 + 1) ?? -1
        if dot2 >= 0, firstDot(t, from: dot2 + 1) != nil {
            throw VerificationError(.malformed, "more than three segments")
        }
        // An empty signature segment is well-formed (RFC 7515 §7.1, alg "none"); it fails at the algorithm or
        // signature check instead.
        guard dot1 > 0, dot2 > dot1 + 1 else {
            throw VerificationError(.malformed, "not three segments with a header and claims")
        }
        let signingInput = UnsafeRawBufferPointer(rebasing: t[0..<dot2])
        // Decoded in segment order (header, claims, signature) so the first bad segment is the one reported; header
        // and signature live in scoped buffers, the claims in the array the verified token keeps.
        return try withDecodedSegment(UnsafeRawBufferPointer(rebasing: t[0..<dot1])) {
            header throws(VerificationError) in
            let payload: [UInt8]
            do {
                payload = try Base64URL.decode(UnsafeRawBufferPointer(rebasing: t[(dot1 + 1)..<dot2]))
            } catch {
                throw Verifier.badSegment
            }
            return try withDecodedSegment(UnsafeRawBufferPointer(rebasing: t[(dot2 + 1)...])) {
                signature throws(VerificationError) in
                try StrictJSON.withObject(
                    header,
                    maxDepth: Verifier.maxJSONDepth,
                    orThrow: { VerificationError(.malformed, "header: \($0.detail)") }
                ) { h throws(VerificationError) in
                    try payload.withUnsafeBytes { pb in
                        Result { () throws(VerificationError) in
                            try StrictJSON.withObject(
                                pb,
                                maxDepth: Verifier.maxJSONDepth,
                                orThrow: { VerificationError(.malformed, "claims: \($0.detail)") }
                            ) { c throws(VerificationError) in
                                try checkSigned(
                                    h,
                                    c,
                                    payload: payload,
                                    signingInput: signingInput,
                                    signature: signature,
                                    keySet: current,
                                    now: now
                                )
                            }
                        }
                    }.get()
                }
            }
        }
    }

    private static let badSegment = VerificationError(.malformed, "a segment is not strict base64url")

    /// Decodes one base64url segment into a scoped buffer: on the stack up to 1 KiB (what
    /// `withUnsafeTemporaryAllocation` keeps there without probing the stack bounds), on the heap beyond.
    private func withDecodedSegment<R>(
        _ segment: UnsafeRawBufferPointer,
        _ body: (UnsafeRawBufferPointer) throws(VerificationError) -> R
    ) throws(VerificationError) -> R {
        func decode(into buffer: UnsafeMutableRawBufferPointer) throws(VerificationError) -> R {
            let n: Int
            do {
                n = try Base64URL.decode(segment, into: buffer)
            } catch {
                throw Verifier.badSegment
            }
            return try body(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        let count = Base64URL.decodedCount(segment.count)
        if count <= 1024 {
            return try withUnsafeTemporaryAllocation(byteCount: count, alignment: 1) {
                (b) throws(VerificationError) -> R in
                try decode(into: b)
            }
        }
        let heap = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 1)
        defer { heap.deallocate() }
        return try decode(into: heap)
    }

    /// Header rules, key selection, signature, then the static claims (everything a cache hit may skip).
    private func checkSigned(
        _ h: StrictJSONRef,
        _ c: StrictJSONRef,
        payload: [UInt8],
        signingInput: UnsafeRawBufferPointer,
        signature: UnsafeRawBufferPointer,
        keySet current: KeySet?,
        now: Int64
    ) throws(VerificationError) -> VerifiedToken {
        // RFC 9068 §2.1 / §4: access tokens carry typ "at+jwt" and verifiers must check it (no other token type
        // can be substituted, RFC 8725 §3.11).
        switch configuration.profile {
        case .accessToken:
            guard let typ = h.member("typ"), typ.stringEquals("at+jwt") else {
                throw VerificationError(.wrongType, "typ must be at+jwt")
            }
        case .idToken:
            // RFC 7519 §5.1: "JWT" is the recommended value; media type names are case-insensitive.
            if let typ = h.member("typ"), typ.string?.lowercased() != "jwt" {
                throw VerificationError(.wrongType, "typ of an ID token must be JWT")
            }
        }
        // RFC 7515 §4.1.11: a recipient that does not understand a listed critical extension must reject.
        // Stagepass defines none, so any crit is refused.
        if h.member("crit") != nil { throw VerificationError(.unsupportedCriticalHeader, "crit is not supported") }
        // RFC 8725 §3.10 / RFC 7515 §4.1.2–4.1.6: keys are never taken from the token.
        // Four direct lookups: no array built on the hot path.
        if h.member("jku") != nil || h.member("jwk") != nil || h.member("x5u") != nil || h.member("x5c") != nil {
            throw VerificationError(.forbiddenHeader, "jku, jwk, x5u and x5c headers are never followed")
        }
        // RFC 7515 §4.1.4: kid selects the key; unknown kid is an error, never a fallback.
        guard let kid = h.member("kid")?.string else { throw VerificationError(.unknownKey, "kid missing") }
        var entry = current?[kid]
        if entry == nil { entry = keys.refreshForUnknownKey(now: now)?[kid] }
        guard let entry else { throw VerificationError(.unknownKey, "kid \(kid) is not in the key set") }
        // RFC 8725 §3.1: the key fixes the algorithm; the header must agree. none/HS* are never on the list.
        guard let alg = h.member("alg"), alg.stringEquals(entry.alg.rawValue) else {
            throw VerificationError(
                .unsupportedAlgorithm,
                "alg \(h.member("alg")?.string ?? "(missing)") is not the key's \(entry.alg.rawValue)"
            )
        }
        // RFC 7515 §5.2 step 8: signature over ASCII(header64 '.' payload64).
        guard entry.key.verify(entry.alg, signingInput: signingInput, signature: signature) else {
            throw VerificationError(.badSignature, "signature does not verify with kid \(kid)")
        }
        return try readClaims(c, payloadBytes: payload, entry: entry)
    }

    /// iss, aud, then the required claims (RFC 7519 §4.1; RFC 9068 §2.2 requires iss, exp, aud, sub, client_id,
    /// iat, jti; Stagepass treats client_id as optional for direct human tokens).
    private func readClaims(
        _ c: StrictJSONRef,
        payloadBytes: [UInt8],
        entry: KeySet.Entry
    ) throws(VerificationError) -> VerifiedToken {
        // RFC 7519 §4.1.1: iss must match exactly.
        let iss = c.member("iss")
        if let iss, !iss.stringEquals(configuration.issuer) {
            throw VerificationError(.wrongIssuer, "iss is not \(configuration.issuer)")
        }
        // RFC 7519 §4.1.3: aud is a string or an array of strings; one of them must be ours.
        var audiences = [String]()
        let aud = c.member("aud")
        if let aud {
            if let s = aud.string {
                audiences = [s]
            } else if aud.isArray {
                for i in 0..<aud.count {
                    guard let s = aud[i]?.string else {
                        throw VerificationError(.wrongAudience, "aud array holds a non-string")
                    }
                    audiences.append(s)
                }
            } else {
                throw VerificationError(.wrongAudience, "aud is neither a string nor an array")
            }
            guard audiences.contains(where: { configuration.audiences.contains($0) }) else {
                throw VerificationError(.wrongAudience, "no accepted audience in aud")
            }
        }
        func int(_ name: StaticString, _ member: StrictJSONRef? = nil) throws(VerificationError) -> Int64 {
            guard let v = member ?? c.member(name) else {
                throw VerificationError(.missingClaim, "\(name) is required")
            }
            // RFC 7519 §2 NumericDate; Stagepass requires integer seconds.
            guard let i = v.integer else {
                throw VerificationError(.missingClaim, "\(name) must be an integer NumericDate")
            }
            return i
        }
        func str(_ name: StaticString) throws(VerificationError) -> String {
            guard let v = c.member(name)?.string else {
                throw VerificationError(.missingClaim, "\(name) is required and must be a string")
            }
            return v
        }
        let exp = try int("exp")
        let iat = try int("iat")
        guard iss != nil else { throw VerificationError(.missingClaim, "iss is required") }
        guard aud != nil else { throw VerificationError(.missingClaim, "aud is required") }
        let sub = try str("sub")
        let jti: String
        if configuration.profile == .idToken, c.member("jti") == nil {
            jti = ""
        } else {
            jti = try str("jti")
        }
        var nbf: Int64?
        if let v = c.member("nbf") { nbf = try int("nbf", v) }
        // RFC 7519 §4.1 / OIDC Core §2: auth_time, when present, is a NumericDate.
        if let at = c.member("auth_time"), at.integer == nil {
            throw VerificationError(.missingClaim, "auth_time must be an integer NumericDate")
        }
        // The status reference is read here but judged only when a status list is configured (checkStatus):
        // an unusable reference is then `status_unavailable`.
        var status: StatusReference?
        if let sl = c.member("status")?.member("status_list"), let idx = sl.member("idx")?.integer, idx >= 0,
            idx <= Int64(Int32.max),
            let uri = sl.member("uri")?.string
        {
            status = StatusReference(uri: uri, index: Int(idx))
        }
        // RFC 7800 §3.1 / RFC 9449 §6.1: cnf is an object; Stagepass binds with jkt only. A cnf without a usable jkt
        // (another confirmation method, or a malformed one) names a binding this verifier cannot check: refused.
        var jkt: String?
        if let cnf = c.member("cnf") {
            guard let v = cnf.member("jkt")?.string, !v.isEmpty else {
                throw VerificationError(.missingClaim, "cnf must hold a jkt string")
            }
            jkt = v
        }
        return VerifiedToken(
            kid: entry.kid,
            alg: entry.alg,
            issuer: configuration.issuer,
            subject: sub,
            audiences: audiences,
            expiresAt: exp,
            issuedAt: iat,
            notBefore: nbf,
            jti: jti,
            clientID: c.member("client_id")?.string,
            role: c.member("role")?.string,
            stage: c.member("stage")?.string,
            sessionID: c.member("sid")?.string,
            status: status,
            confirmationThumbprint: jkt,
            payload: payloadBytes
        )
    }

    // MARK: - Checks repeated on every call (also on a cache hit)

    private func checkTime(_ t: VerifiedToken, now: Int64) throws(VerificationError) {
        let leeway = configuration.leeway
        // RFC 7519 §4.1.4: the current time must be before exp (plus leeway).
        if now >= sat(t.expiresAt, leeway) { throw VerificationError(.expired, "expired at \(t.expiresAt)") }
        // RFC 7519 §4.1.5
        if let nbf = t.notBefore, sat(now, leeway) < nbf {
            throw VerificationError(.notYetValid, "not valid before \(nbf)")
        }
        // RFC 7519 §4.1.6: an iat in the future means a bad clock or a forged token.
        if sat(now, leeway) < t.issuedAt {
            throw VerificationError(.issuedInFuture, "issued at \(t.issuedAt), in the future")
        }
        let (lifetime, overflow) = t.expiresAt.subtractingReportingOverflow(t.issuedAt)
        if overflow || lifetime > configuration.maxLifetime {
            throw VerificationError(.lifetimeExceeded, "lifetime exceeds \(configuration.maxLifetime) s")
        }
    }

    private func checkRequirements(_ t: VerifiedToken, _ r: Requirements) throws(VerificationError) {
        if !r.roles.isEmpty {
            guard let role = t.role, r.roles.contains(role) else {
                throw VerificationError(.roleMismatch, "role is not one of \(r.roles)")
            }
        }
        if let stage = r.stage, t.stage != stage { throw VerificationError(.stageMismatch, "stage is not \(stage)") }
        if let pattern = r.pipeline {
            guard let client = t.clientID, globMatch(pattern, client) else {
                throw VerificationError(.pipelineMismatch, "client_id does not match \(pattern)")
            }
        }
    }

    private func checkStatus(_ t: VerifiedToken, keySet: KeySet?, now: Int64) throws(VerificationError) {
        guard statusOn.load(ordering: .acquiring) else { return }
        // A polled source (file, URL cache, static): documents not offered before are verified and installed now;
        // a refused or older one changes nothing (StatusListHolder rules).
        if let source = statusSource {
            for doc in source.documents(now: now) where !statusListHolder.hasSeen(doc.jwt) {
                _ = try? statusListHolder.install(
                    doc.jwt,
                    fetchedAt: doc.fetchedAt,
                    maxAge: doc.maxAge,
                    keys: keySet,
                    now: now,
                    leeway: configuration.leeway
                )
            }
        }
        // draft-ietf-oauth-status-list-20 §6.1/§6.2: status.status_list.{idx, uri}.
        guard let ref = t.status else {
            throw VerificationError(.statusUnavailable, "token has no usable status claim")
        }
        guard let installed = statusListHolder.installed(for: ref.uri) else {
            throw VerificationError(.statusUnavailable, "no verified status list for \(ref.uri)")
        }
        let list = installed.list
        // The signing key may since have been withdrawn: only trust the list while its key is still present.
        guard let ks = keySet, ks[list.kid] != nil else {
            throw VerificationError(.statusUnavailable, "the status list's key is no longer in the key set")
        }
        // RFC 7519 §4.1.4 applied to the list (draft §5.1 exp): on or after exp + leeway it is expired.
        if let exp = list.exp, now >= sat(exp, configuration.leeway) {
            throw VerificationError(.statusUnavailable, "status list expired")
        }
        let limits = [configuration.statusMaxAge, installed.maxAge].compactMap { $0 }.filter { $0 > 0 }
        // The list's age counts from when it was issued (its iat) or fetched, whichever is older.
        if let maxAge = limits.min(),
            now.subtractingReportingOverflow(min(list.iat, installed.fetchedAt)).partialValue > maxAge
        {
            throw VerificationError(.statusUnavailable, "status list older than \(maxAge) s")
        }
        // draft-ietf-oauth-status-list §4.1: entry idx occupies `bits` bits starting at bit idx*bits, LSB first.
        guard let value = list.value(at: ref.index) else {
            throw VerificationError(.statusUnavailable, "status index out of range")
        }
        // §7.1: 0x00 VALID; anything else (0x01 INVALID, 0x02 SUSPENDED, …) is not accepted.
        if value != 0 { throw VerificationError(.revoked, "token is revoked (status \(value))") }
    }
}

/// The offset of the first `.` in `t` at or after `from` (memchr: the token is scanned at memory speed).
private func firstDot(_ t: UnsafeRawBufferPointer, from: Int) -> Int? {
    guard let base = t.baseAddress, from < t.count else { return nil }
    guard let hit = memchr(base + from, Int32(UInt8(ascii: ".")), t.count - from) else { return nil }
    return base.distance(to: UnsafeRawPointer(hit))
}

/// `*` matches any run of characters (including none); everything else matches itself. The one glob of Stagepass:
/// pipeline requirements here, CI claim rules in the broker's policy.
public func globMatch(_ pattern: String, _ text: String) -> Bool {
    // Over the UTF-8 bytes in place (no arrays per call).
    var pattern = pattern
    var text = text
    return pattern.withUTF8 { p in text.withUTF8 { s in globMatch(p, s) } }
}

private func globMatch(_ p: UnsafeBufferPointer<UInt8>, _ s: UnsafeBufferPointer<UInt8>) -> Bool {
    var pi = 0
    var si = 0
    var star = -1
    var mark = 0
    while si < s.count {
        if pi < p.count && p[pi] == UInt8(ascii: "*") {
            star = pi
            mark = si
            pi += 1
        } else if pi < p.count && p[pi] == s[si] {
            pi += 1
            si += 1
        } else if star >= 0 {
            pi = star + 1
            mark += 1
            si = mark
        } else {
            return false
        }
    }
    while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
    return pi == p.count
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Saturating addition for time arithmetic on attacker-chosen NumericDates (no wrap-around, RFC 8725 §3.8 spirit).
@inline(__always)
func sat(_ a: Int64, _ b: Int64) -> Int64 {
    let (r, o) = a.addingReportingOverflow(b)
    return o ? (b > 0 ? .max : .min) : r
}

func systemNow() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec)
}
