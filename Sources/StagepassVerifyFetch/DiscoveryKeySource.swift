import Foundation
import StagepassJOSE
import StagepassVerify
import Synchronization

/// The keys of an OpenID Connect issuer found through its discovery document (OpenID Connect Discovery 1.0 §4:
/// `{issuer}/.well-known/openid-configuration` → `jwks_uri`), cached like ``URLKeySource``:
///
/// - ``current(now:)`` returns the last good key set at once and never fetches.
/// - ``refreshIfDue(now:)`` is what a background loop calls: it re-fetches when the JWKS response's Cache-Control
///   max-age (default 300 s, at most 1 hour) has passed, or after 30 s when the last fetch failed.
/// - ``refetchForUnknownKid(now:)`` re-fetches at once when a token names a kid the set does not hold, at most once
///   per ``minRefetchInterval`` (30 s): a token can make the source fetch, but not more often than that.
/// - ``ready(now:)`` waits for a first key set when none is held yet.
///
/// Every fetch is bounded by the getter's timeout (5 s by default): a slow issuer delays a caller by at most that,
/// and an unreachable one leaves no key set, so its tokens are refused (fail closed). A document whose `issuer` is
/// not exactly the configured one is refused (Discovery §4.3), and a bad JWKS keeps the last good set.
public final class DiscoveryKeySource: KeySource {
    private struct State {
        var jwksURL: URL?
        var keys: KeySet?
        var nextRefresh: Int64 = .min
        var lastUnknownKidFetch: Int64 = .min
        var lastError: String?
        var fetches = 0
    }

    /// The issuer identifier (the tokens' `iss`), exactly.
    public let issuer: String
    /// The algorithm of RSA keys without `alg` (``KeySet/init(jwks:rsaAlgorithm:)``).
    public let rsaAlgorithm: JWSAlgorithm?
    public let minRefetchInterval: Int64
    private let getter: any HTTPGetting
    private let state = Mutex(State())

    /// Creates the source without fetching.
    /// - Parameters:
    ///   - issuer: the issuer URL (`https://token.actions.githubusercontent.com`); the discovery document is read from
    ///     `issuer + "/.well-known/openid-configuration"`.
    ///   - getter: the HTTP client (its timeout bounds every fetch).
    public init(
        issuer: String,
        rsaAlgorithm: JWSAlgorithm? = .RS256,
        minRefetchInterval: Int64 = 30,
        getter: any HTTPGetting = URLSessionGetter(timeout: 5)
    ) {
        self.issuer = issuer
        self.rsaAlgorithm = rsaAlgorithm
        self.minRefetchInterval = minRefetchInterval
        self.getter = getter
    }

    public func current(now: Int64) -> KeySet? { state.withLock { $0.keys } }

    /// Never fetches inside a synchronous verification: the asynchronous caller uses ``refetchForUnknownKid(now:)``.
    public func refreshForUnknownKey(now: Int64) -> KeySet? { nil }

    /// Why the last fetch failed (nil after a success), for error messages.
    public var lastError: String? { state.withLock { $0.lastError } }
    /// How many JWKS fetches were made (diagnostics and tests).
    public var fetchCount: Int { state.withLock { $0.fetches } }

    /// Fetches the discovery document (when the JWKS URL is not known yet, or the last fetch failed) and the JWKS.
    /// - Returns: seconds until the next scheduled fetch.
    /// - Throws: ``FetchError`` (transport, HTTP status, a discovery document for another issuer, a JWKS that is not
    ///   one); the last good key set is kept.
    @discardableResult
    public func refresh(now: Int64) async throws -> Int64 {
        do {
            var url = state.withLock { s in s.lastError == nil ? s.jwksURL : nil }
            if url == nil { url = try await discover() }
            guard let url else { throw FetchError(message: "no jwks_uri") }
            state.withLock { $0.fetches += 1 }
            let (body, maxAge) = try await getter.get(url)
            let keys: KeySet
            do { keys = try KeySet(jwksJSON: body, rsaAlgorithm: rsaAlgorithm) } catch {
                throw FetchError(message: "the JWKS of \(issuer) is not a key set: \(error.detail)")
            }
            let next = min(max(maxAge ?? URLKeySource.defaultMaxAge, 1), 3600)
            state.withLock { s in
                s.jwksURL = url
                s.keys = keys
                s.lastError = nil
                s.nextRefresh = now + next
            }
            return next
        } catch {
            let message = (error as? FetchError)?.message ?? "\(error)"
            state.withLock { s in
                s.lastError = message
                s.nextRefresh = now + 30
            }
            throw FetchError(message: message)
        }
    }

    /// The background loop's step: fetches if the schedule says so.
    public func refreshIfDue(now: Int64) async {
        let due = state.withLock { now >= $0.nextRefresh }
        if due { _ = try? await refresh(now: now) }
    }

    /// A key set to verify with: the held one, or (none held yet) the result of one fetch now.
    public func ready(now: Int64) async -> KeySet? {
        if let keys = current(now: now) { return keys }
        _ = try? await refresh(now: now)
        return current(now: now)
    }

    /// A token named a kid the held set lacks: re-fetch now unless one such re-fetch happened within
    /// ``minRefetchInterval``. - Returns: whether a re-fetch was made (and succeeded).
    public func refetchForUnknownKid(now: Int64) async -> Bool {
        let allowed = state.withLock { s -> Bool in
            guard
                s.lastUnknownKidFetch == .min
                    || now.subtractingReportingOverflow(s.lastUnknownKidFetch).partialValue >= minRefetchInterval
            else { return false }
            s.lastUnknownKidFetch = now
            return true
        }
        guard allowed else { return false }
        return (try? await refresh(now: now)) != nil
    }

    /// OpenID Connect Discovery 1.0 §4: the configuration document's `issuer` must be exactly the issuer it was read
    /// for, and its `jwks_uri` is where the keys are.
    private func discover() async throws -> URL {
        let base = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        guard let url = URL(string: base + "/.well-known/openid-configuration") else {
            throw FetchError(message: "\(issuer) is not a URL")
        }
        let (body, _) = try await getter.get(url)
        guard let doc = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            throw FetchError(message: "the discovery document of \(issuer) is not a JSON object")
        }
        guard let iss = doc["issuer"] as? String, iss == issuer else {
            throw FetchError(message: "the discovery document at \(url) names another issuer")
        }
        guard let jwks = doc["jwks_uri"] as? String, let jwksURL = URL(string: jwks),
            jwksURL.scheme == "https" || jwksURL.scheme == "http"
        else {
            throw FetchError(message: "the discovery document of \(issuer) has no usable jwks_uri")
        }
        return jwksURL
    }
}
