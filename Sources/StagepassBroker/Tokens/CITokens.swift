import Foundation
public import StagepassJOSE
public import StagepassVerify
import Synchronization

/// The keys of one trusted CI issuer, as the broker needs them: the verifier's ``KeySource`` (never fetching inside a
/// verification) plus the asynchronous steps the broker takes around it, each bounded by the issuer's fetch timeout.
/// `StagepassVerifyFetch.DiscoveryKeySource` is the networked implementation; ``PinnedKeySource`` the air-gapped one.
public protocol CIIssuerKeySource: KeySource {
    /// The held key set, or (none held yet) the result of one fetch now; nil when the issuer cannot be reached.
    func ready(now: Int64) async -> KeySet?
    /// Re-fetches because a token named an unknown kid, unless that happened within the last 30 s.
    /// - Returns: whether a re-fetch happened and succeeded.
    func refetchForUnknownKid(now: Int64) async -> Bool
    /// The background refresh step: fetches when the schedule (Cache-Control max-age) says so.
    func refreshIfDue(now: Int64) async
    /// Why the last fetch failed, if it did.
    var lastError: String? { get }
}

/// A pinned JWKS file (`jwks_file`, for air-gapped brokers): read when first needed, read again when a token names an
/// unknown kid (at most once per 30 s) or when the background step finds the file changed; never fetched from the
/// network.
public final class PinnedKeySource: CIIssuerKeySource {
    private struct State {
        var keys: KeySet?
        var error: String?
        var lastUnknownKidRead: Int64 = .min
        var stamp: String?
    }
    public let path: String
    public let rsaAlgorithm: JWSAlgorithm
    private let state = Mutex(State())

    public init(path: String, rsaAlgorithm: JWSAlgorithm = .RS256) {
        self.path = path
        self.rsaAlgorithm = rsaAlgorithm
    }

    public func current(now: Int64) -> KeySet? { state.withLock { $0.keys } }
    public func refreshForUnknownKey(now: Int64) -> KeySet? { nil }
    public var lastError: String? { state.withLock { $0.error } }

    public func ready(now: Int64) async -> KeySet? {
        if let keys = current(now: now) { return keys }
        _ = read()
        return current(now: now)
    }

    public func refetchForUnknownKid(now: Int64) async -> Bool {
        let allowed = state.withLock { s -> Bool in
            guard s.lastUnknownKidRead == .min || now - s.lastUnknownKidRead >= 30 else { return false }
            s.lastUnknownKidRead = now
            return true
        }
        return allowed && read()
    }

    public func refreshIfDue(now: Int64) async {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        let stamp = attributes.map { "\($0[.modificationDate] ?? "")|\($0[.size] ?? "")" }
        if stamp != state.withLock({ $0.stamp }) { _ = read() }
    }

    /// Reads the file; a bad or missing file keeps the last good set.
    private func read() -> Bool {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        let stamp = attributes.map { "\($0[.modificationDate] ?? "")|\($0[.size] ?? "")" }
        guard let data = FileManager.default.contents(atPath: path) else {
            state.withLock { $0.error = "cannot read the pinned JWKS file \(path)" }
            return false
        }
        do {
            let keys = try KeySet(jwksJSON: [UInt8](data), rsaAlgorithm: rsaAlgorithm)
            state.withLock { s in
                s.keys = keys
                s.error = nil
                s.stamp = stamp
            }
            return true
        } catch {
            state.withLock { $0.error = "the pinned JWKS file \(path) is not a key set: \(error.detail)" }
            return false
        }
    }
}

/// The key sources of the trusted CI issuers, one per (issuer URL, pinned file), created when first needed and kept
/// across policy reloads that do not change them.
public final class CIKeyDirectory: Sendable {
    /// Makes the networked source of an issuer: (issuer URL, RSA algorithm, fetch timeout in seconds).
    public typealias Fetcher = @Sendable (String, JWSAlgorithm, Int64) -> any CIIssuerKeySource

    private let fetcher: Fetcher?
    private let sources = Mutex<[String: any CIIssuerKeySource]>([:])

    /// - Parameter fetcher: nil: only issuers with a pinned `jwks_file` can be used (others fail closed).
    public init(fetcher: Fetcher? = nil) { self.fetcher = fetcher }

    private static func key(_ i: CIIssuerPolicy) -> String {
        "\(i.issuer)\u{0}\(i.jwksFile ?? "")\u{0}\(i.rsaAlgorithm.rawValue)\u{0}\(i.fetchTimeout)"
    }

    /// The source for `issuer`, nil when it has no pinned file and no fetcher was configured.
    public func source(for issuer: CIIssuerPolicy) -> (any CIIssuerKeySource)? {
        let key = Self.key(issuer)
        return sources.withLock { all in
            if let s = all[key] { return s }
            let made: (any CIIssuerKeySource)?
            if let file = issuer.jwksFile {
                made = PinnedKeySource(path: file, rsaAlgorithm: issuer.rsaAlgorithm)
            } else {
                made = fetcher?(issuer.issuer, issuer.rsaAlgorithm, issuer.fetchTimeout)
            }
            if let made { all[key] = made }
            return made
        }
    }

    /// The background refresh: every issuer of `policy` whose keys are due is re-fetched (one at a time, each bounded
    /// by its timeout).
    public func refreshDue(_ policy: AccessPolicy, now: Int64) async {
        for name in policy.ciIssuers.keys.sorted() {
            guard let i = policy.ciIssuers[name], let s = source(for: i) else { continue }
            await s.refreshIfDue(now: now)
        }
    }
}

/// Why a CI token itself was refused (before any policy rule): a ``VerificationErrorCode`` name, or `replayed`,
/// `untrusted_issuer`, `issuer_unavailable`.
public struct CITokenRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: String
    public var detail: String
    public init(_ code: String, _ detail: String) {
        self.code = code
        self.detail = detail
    }
    public var description: String { "\(code): \(detail)" }
}

extension TokenBroker {
    /// Verifies a CI platform's OIDC token offline with the verifier core (RFC 7519 §7.2; RFC 8725): its `iss` picks
    /// a trusted issuer (exact match), then header rules, `kid` in that issuer's JWKS, signature, `iss`, `aud` (the
    /// issuer's configured audience), `exp`/`nbf`/`iat` with the issuer's leeway and lifetime cap. An unknown kid
    /// makes one re-fetch of the issuer's keys (at most one per 30 s per issuer) and one more try. Nothing in the
    /// token makes the broker fetch anything but that issuer's own JWKS.
    /// - Throws: ``CITokenRefusal``; `issuer_unavailable` when the issuer's keys cannot be had within its timeout.
    public func verifyCIToken(_ token: String, now: Int64) async throws(CITokenRefusal) -> CIIdentity {
        let p = policy.current
        guard token.utf8.count <= Verifier.maxTokenBytes else {
            throw CITokenRefusal("malformed", "the CI token is larger than \(Verifier.maxTokenBytes) bytes")
        }
        // The unverified `iss` only selects which issuer's keys and rules to verify with; it is verified below.
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let payload = try? Base64URL.decode(String(parts[1])),
            let raw = try? JSONValue.parse(payload), let iss = raw["iss"]?.stringValue
        else { throw CITokenRefusal("malformed", "the CI token is not a signed JWT with an iss claim") }
        guard let issuer = p.ciIssuers.values.first(where: { $0.issuer == iss }) else {
            throw CITokenRefusal("wrong_issuer", "'\(iss.prefix(200))' is not a trusted CI issuer")
        }
        if let allowed = p.ciGuardrails.allowedIssuers, !allowed.contains(issuer.name) {
            throw CITokenRefusal(
                "wrong_issuer",
                "the CI issuer '\(issuer.name)' is not allowed on this server (ci_guardrails.allowed_issuers)"
            )
        }
        guard let source = ciKeys.source(for: issuer) else {
            throw CITokenRefusal(
                "issuer_unavailable",
                "the keys of the CI issuer '\(issuer.name)' cannot be fetched by this broker (set jwks_file)"
            )
        }
        guard await source.ready(now: now) != nil else {
            throw CITokenRefusal(
                "issuer_unavailable",
                "the keys of the CI issuer '\(issuer.name)' cannot be had now: \(source.lastError ?? "no key set")"
            )
        }
        let configuration: VerifierConfiguration
        do {
            var c = try VerifierConfiguration(
                issuer: issuer.issuer,
                audiences: [issuer.audience],
                leeway: issuer.leeway,
                maxLifetime: issuer.maxTokenLifetime,
                cacheCapacity: 0
            )
            c.profile = .idToken
            configuration = c
        } catch {
            throw CITokenRefusal("issuer_unavailable", "the CI issuer '\(issuer.name)' is misconfigured: \(error)")
        }
        let verifier = Verifier(configuration: configuration, keys: source, clock: { now })
        let verified: VerifiedToken
        do {
            verified = try verifier.verify(token, at: now)
        } catch let unknown where unknown.code == .unknownKey {
            // One re-fetch (rate-limited per issuer), then one more try.
            guard await source.refetchForUnknownKid(now: now) else {
                let why =
                    source.lastError.map { "its keys could not be re-fetched: \($0)" }
                    ?? "its keys were re-fetched within the last 30 s"
                throw CITokenRefusal("unknown_key", "\(unknown.detail) of '\(issuer.name)' (\(why))")
            }
            do { verified = try verifier.verify(token, at: now) } catch {
                throw CITokenRefusal(error.code.name, "\(error.detail) of '\(issuer.name)', even after a re-fetch")
            }
        } catch {
            throw CITokenRefusal(error.code.name, error.detail)
        }
        let claims = verified.claims
        let replayKey: String
        if verified.jti.isEmpty {
            guard let digest = try? Crypto.sha256(Array(token.utf8)) else {
                throw CITokenRefusal("malformed", "cannot hash the CI token")
            }
            replayKey = "sha256:" + digest.map { String(format: "%02x", $0) }.joined()
        } else {
            guard verified.jti.utf8.count <= 256 else {
                throw CITokenRefusal("malformed", "the CI token's jti is longer than 256 bytes")
            }
            replayKey = verified.jti
        }
        return CIIdentity(
            issuerName: issuer.name,
            issuer: issuer.issuer,
            subject: verified.subject,
            replayKey: replayKey,
            expiresAt: verified.expiresAt,
            claims: CIIdentity.mapped(claims, issuer.mapping)
        )
    }
}
