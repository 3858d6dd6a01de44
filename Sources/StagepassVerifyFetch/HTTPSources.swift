import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import StagepassVerify
import Synchronization

/// HTTP(S) sources for the verifier, kept out of the Foundation-free core: the JWKS and status lists fetched from
/// the broker, cached per `Cache-Control: max-age`, refreshed in the background, and re-fetched at most once per
/// `minRefetchInterval` when a token names an unknown kid.
public enum HTTPFetch {
    /// Fetches `url` synchronously. Returns the body and the `max-age` of its Cache-Control (if any).
    /// - Throws: `URLError` or ``FetchError``.
    public static func get(_ url: URL, timeout: TimeInterval = 10) throws -> (body: [UInt8], maxAge: Int64?) {
        var request = URLRequest(url: url, cachePolicy: .reloadIgnoringLocalCacheData, timeoutInterval: timeout)
        request.setValue("application/json, application/statuslist+jwt", forHTTPHeaderField: "Accept")
        let box = Mutex<Result<(Data, HTTPURLResponse), any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let task = URLSession.shared.dataTask(with: request) { data, response, error in
            if let error {
                box.withLock { $0 = .failure(error) }
            } else if let http = response as? HTTPURLResponse, let data {
                box.withLock { $0 = .success((data, http)) }
            } else {
                box.withLock { $0 = .failure(FetchError(message: "no HTTP response")) }
            }
            done.signal()
        }
        task.resume()
        done.wait()
        guard let result = box.withLock({ $0 }) else { throw FetchError(message: "no result") }
        let (data, response) = try result.get()
        guard response.statusCode == 200 else { throw FetchError(message: "HTTP \(response.statusCode) from \(url)") }
        return ([UInt8](data), maxAge(response.value(forHTTPHeaderField: "Cache-Control")))
    }

    /// `max-age` from a Cache-Control header (RFC 9111 §5.2.2.1); `no-store`/`no-cache` mean 0.
    static func maxAge(_ header: String?) -> Int64? {
        guard let header else { return nil }
        var age: Int64?
        for part in header.split(separator: ",") {
            let p = part.trimmingCharacters(in: .whitespaces).lowercased()
            if p == "no-store" || p == "no-cache" { return 0 }
            if p.hasPrefix("max-age="), let v = Int64(p.dropFirst(8)) { age = max(0, v) }
        }
        return age
    }
}

public struct FetchError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// A JWKS served over HTTP(S).
public final class URLKeySource: KeySource {
    private struct State {
        var keys: KeySet
        var fetchedAt: Int64
        var maxAge: Int64
        var refreshing = false
        var lastUnknownKidFetch: Int64 = .min
    }
    public let url: URL
    public let minRefetchInterval: Int64
    private let state: Mutex<State>
    private static let defaultMaxAge: Int64 = 300

    /// Fetches the JWKS once now.
    /// - Parameter minRefetchInterval: at most one fetch per this many seconds because of an unknown kid.
    /// - Throws: when the first fetch fails or is not a JWKS (a configuration error).
    public init(url: URL, minRefetchInterval: Int64 = 30, now: Int64 = Int64(Date().timeIntervalSince1970)) throws {
        self.url = url
        self.minRefetchInterval = minRefetchInterval
        let (body, maxAge) = try HTTPFetch.get(url)
        let keys = try KeySet(jwksJSON: body)
        state = Mutex(State(keys: keys, fetchedAt: now, maxAge: maxAge ?? URLKeySource.defaultMaxAge))
    }

    public func current(now: Int64) -> KeySet? {
        let (keys, stale) = state.withLock { s -> (KeySet, Bool) in
            let stale = now - s.fetchedAt >= s.maxAge && !s.refreshing
            if stale { s.refreshing = true }
            return (s.keys, stale)
        }
        if stale {
            // Background refresh: callers keep the cached set meanwhile.
            Thread.detachNewThread { [self] in _ = self.fetch(now: now) }
        }
        return keys
    }

    public func refreshForUnknownKey(now: Int64) -> KeySet? {
        let allowed = state.withLock { s -> Bool in
            guard now - s.lastUnknownKidFetch >= minRefetchInterval else { return false }
            s.lastUnknownKidFetch = now
            return true
        }
        return allowed ? fetch(now: now) : nil
    }

    private func fetch(now: Int64) -> KeySet? {
        let fetched = try? HTTPFetch.get(url)
        return state.withLock { s in
            s.refreshing = false
            guard let fetched, let keys = try? KeySet(jwksJSON: fetched.body) else { return nil }
            s.keys = keys
            s.fetchedAt = now
            s.maxAge = fetched.maxAge ?? URLKeySource.defaultMaxAge
            return keys
        }
    }
}

/// A status list token served over HTTP(S); re-fetched when its Cache-Control max-age (or the list's `ttl`,
/// whichever the server gave) has passed. A failed fetch keeps the old document, whose age then grows until the
/// verifier's fail-closed `statusMaxAge` rejects tokens.
public final class URLStatusListSource: StatusListSource {
    private struct State {
        var doc: StatusListDocument?
        var maxAge: Int64
        var refreshing = false
    }
    public let url: URL
    private let state: Mutex<State>

    /// Fetches once now. - Throws: when the first fetch fails (a configuration error).
    public init(url: URL, now: Int64 = Int64(Date().timeIntervalSince1970)) throws {
        self.url = url
        let (body, maxAge) = try HTTPFetch.get(url)
        let jwt = String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        state = Mutex(State(doc: StatusListDocument(jwt: jwt, fetchedAt: now), maxAge: maxAge ?? 60))
    }

    public func documents(now: Int64) -> [StatusListDocument] {
        let (doc, stale) = state.withLock { s -> (StatusListDocument?, Bool) in
            let stale = !s.refreshing && (s.doc.map { now - $0.fetchedAt >= s.maxAge } ?? true)
            if stale { s.refreshing = true }
            return (s.doc, stale)
        }
        if stale {
            Thread.detachNewThread { [self] in
                let fetched = try? HTTPFetch.get(url)
                state.withLock { s in
                    s.refreshing = false
                    guard let fetched else { return }
                    let jwt = String(decoding: fetched.body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                    s.doc = StatusListDocument(jwt: jwt, fetchedAt: Int64(Date().timeIntervalSince1970))
                    s.maxAge = fetched.maxAge ?? 60
                }
            }
        }
        return doc.map { [$0] } ?? []
    }
}
