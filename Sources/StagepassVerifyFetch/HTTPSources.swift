import Foundation
import StagepassVerify
import Synchronization

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Fetches one document over HTTP(S). The seam the sources use (tests supply their own).
public protocol HTTPGetting: Sendable {
    /// The body and the `max-age` of the response's Cache-Control (if any).
    /// - Throws: on a transport error or a status other than 200.
    func get(_ url: URL) async throws -> (body: [UInt8], maxAge: Int64?)
}

/// ``HTTPGetting`` over URLSession (asynchronous: nothing blocks a thread while a request is in flight).
public struct URLSessionGetter: HTTPGetting {
    public let timeout: TimeInterval
    public init(timeout: TimeInterval = 10) { self.timeout = timeout }

    public func get(_ url: URL) async throws -> (body: [UInt8], maxAge: Int64?) {
        var request = URLRequest(url: url, cachePolicy: .reloadIgnoringLocalCacheData, timeoutInterval: timeout)
        request.setValue("application/json, application/statuslist+jwt", forHTTPHeaderField: "Accept")
        let (data, response) = try await Self.perform(request)
        guard let http = response as? HTTPURLResponse else { throw FetchError(message: "no HTTP response from \(url)") }
        guard http.statusCode == 200 else { throw FetchError(message: "HTTP \(http.statusCode) from \(url)") }
        return ([UInt8](data), HTTPFetch.maxAge(http.value(forHTTPHeaderField: "Cache-Control")))
    }
}

extension URLSessionGetter {
    /// One request through a completion handler, deliberately not `URLSession.data(for:)`: on Linux, cancelling the
    /// awaiting task makes FoundationNetworking cancel the data task from inside the task's cancellation handler, which
    /// can deadlock with the response being delivered at that moment (both wait for the same task-status lock). A
    /// refresh loop is cancelled at shutdown, so its fetch must not be: a request runs to its answer or its
    /// `timeoutInterval`, whichever comes first, and the cancelled loop then ends.
    public static func perform(_ request: URLRequest) async throws -> (Data, URLResponse) {
        try await withCheckedThrowingContinuation { continuation in
            URLSession.shared.dataTask(with: request) { data, response, error in
                if let error {
                    continuation.resume(throwing: error)
                } else if let response {
                    continuation.resume(returning: (data ?? Data(), response))
                } else {
                    continuation.resume(
                        throwing: FetchError(message: "no response from \(request.url?.absoluteString ?? "")")
                    )
                }
            }.resume()
        }
    }
}

public enum HTTPFetch {
    /// `max-age` from a Cache-Control header (RFC 9111 §5.2.2.1); `no-store`/`no-cache` mean 0.
    public static func maxAge(_ header: String?) -> Int64? {
        guard let header else { return nil }
        var age: Int64?
        for part in header.split(separator: ",") {
            let p = part.trimmingCharacters(in: .whitespaces).lowercased()
            if p == "no-store" || p == "no-cache" { return 0 }
            if p.hasPrefix("max-age="), let v = Int64(p.dropFirst(8)) { age = max(0, v) }
        }
        return age
    }

    /// Seconds until a status list is fetched again: the shorter of the list's `ttl` (draft-ietf-oauth-status-list
    /// §5.1: how long a consumer may cache it) and the response's Cache-Control max-age (RFC 9111 §5.2.2.1), else
    /// `fallback`; never below `floor` (a `max-age=0` server is not polled in a busy loop) nor above `ceiling`.
    public static func statusListRefresh(
        ttl: Int64?,
        maxAge: Int64?,
        fallback: Int64 = 60,
        floor: Int64 = 1,
        ceiling: Int64 = 3600
    ) -> Int64 {
        let candidates = [ttl, maxAge].compactMap { $0 }
        let chosen = candidates.min() ?? fallback
        return min(max(chosen, floor), ceiling)
    }

    /// The `ttl` claim of a status list token, read without verifying it: only a refresh-scheduling hint (the
    /// verifier verifies the list before using it, and its max age fails closed whatever this says).
    static func unverifiedTTL(_ jwt: String) -> Int64? {
        let parts = jwt.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let payload = try? Base64URLLite.decode(String(parts[1])),
            let obj = try? JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any],
            let ttl = obj["ttl"] as? Int, ttl > 0
        else { return nil }
        return Int64(ttl)
    }
}

/// base64url without padding (RFC 7515 §2), enough to read a `ttl` hint.
enum Base64URLLite {
    static func decode(_ s: String) throws -> [UInt8] {
        var t = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while t.count % 4 != 0 { t += "=" }
        guard let d = Data(base64Encoded: t) else { throw FetchError(message: "not base64url") }
        return [UInt8](d)
    }
}

public struct FetchError: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// A JWKS served over HTTP(S), kept fresh by a background loop (``run()``), never fetched inside a verification.
///
/// - ``current(now:)`` returns the last good key set at once (nil before the first fetch: tokens are then
///   `unknown_key`).
/// - ``refreshForUnknownKey(now:)`` never waits: it asks the loop for an early re-fetch, at most one per
///   ``minRefetchInterval`` (30 s by default), and returns nil; the token that named the unknown kid is
///   `unknown_key`, later ones see the new set.
/// - ``run()`` fetches now and then again when the response's Cache-Control max-age (default 300 s) has passed, or
///   early on request; it returns when its task is cancelled. Run it in the application's task group or
///   ServiceGroup (structured concurrency: no detached tasks or threads).
public final class URLKeySource: KeySource {
    private struct State {
        var keys: KeySet?
        var lastUnknownKidFetch: Int64 = .min
    }
    public let url: URL
    public let minRefetchInterval: Int64
    public static let defaultMaxAge: Int64 = 300
    private let getter: any HTTPGetting
    private let state = Mutex(State())
    private let wake: AsyncStream<Void>
    private let wakeContinuation: AsyncStream<Void>.Continuation

    /// Creates the source without fetching (call ``refresh()`` or ``run()``).
    public init(url: URL, minRefetchInterval: Int64 = 30, getter: any HTTPGetting = URLSessionGetter()) {
        self.url = url
        self.minRefetchInterval = minRefetchInterval
        self.getter = getter
        (wake, wakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    public func current(now: Int64) -> KeySet? { state.withLock { $0.keys } }

    public func refreshForUnknownKey(now: Int64) -> KeySet? {
        let allowed = state.withLock { s -> Bool in
            guard
                now.subtractingReportingOverflow(s.lastUnknownKidFetch).partialValue >= minRefetchInterval
                    || s.lastUnknownKidFetch == .min
            else { return false }
            s.lastUnknownKidFetch = now
            return true
        }
        if allowed { wakeContinuation.yield() }
        return nil
    }

    /// Fetches once now and installs the key set if it parses (a bad document keeps the last good set).
    /// - Returns: the max-age to wait before the next fetch.
    /// - Throws: ``FetchError`` / URL errors / ``JOSEError``-derived errors when the fetch or the document fails.
    @discardableResult
    public func refresh() async throws -> Int64 {
        let (body, maxAge) = try await getter.get(url)
        let keys = try KeySet(jwksJSON: body)
        state.withLock { $0.keys = keys }
        return maxAge ?? URLKeySource.defaultMaxAge
    }

    /// The refresh loop (see the type's documentation). Errors are retried after at most 30 s.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            let (timer, tick) = AsyncStream.makeStream(of: Int64.self, bufferingPolicy: .bufferingNewest(1))
            // Child 1: sleeps the scheduled interval, then asks for a fetch.
            group.addTask {
                for await seconds in timer {
                    try? await Task.sleep(for: .seconds(max(1, seconds)))
                    if Task.isCancelled { return }
                    self.wakeContinuation.yield()
                }
            }
            // Child 2: performs every fetch (one at a time), scheduling the next.
            group.addTask {
                tick.yield((try? await self.refresh()).map { max(1, $0) } ?? 30)
                for await _ in self.wake {
                    if Task.isCancelled { break }
                    let next = (try? await self.refresh()).map { max(1, $0) } ?? 30
                    tick.yield(next)
                }
                tick.finish()
            }
            await withTaskCancellationHandler {
                await group.waitForAll()
            } onCancel: {
                self.wakeContinuation.finish()
                tick.finish()
            }
        }
    }
}

/// A status list token served over HTTP(S), kept by a background loop (``run()``) and handed to the verifier's
/// ``StatusListHolder`` through ``documents(now:)`` (which never fetches).
///
/// Re-fetched after the shorter of the list's `ttl` claim and the response's Cache-Control max-age
/// (``HTTPFetch/statusListRefresh(ttl:maxAge:fallback:floor:ceiling:)``); a failed fetch is retried after at most
/// 30 s and keeps the old document, whose age then grows until the verifier's fail-closed status max age rejects
/// tokens. Before the first successful fetch there is no document: a verifier with this source configured answers
/// `status_unavailable`.
public final class URLStatusListSource: StatusListSource {
    public let url: URL
    private let getter: any HTTPGetting
    private let clock: @Sendable () -> Int64
    private let doc = Mutex<StatusListDocument?>(nil)
    private let maxAge: Int64?

    /// Creates the source without fetching (call ``refresh()`` or ``run()``).
    /// - Parameter maxAge: a fail-closed age limit attached to each fetched document.
    public init(
        url: URL,
        maxAge: Int64? = nil,
        getter: any HTTPGetting = URLSessionGetter(),
        clock: (@Sendable () -> Int64)? = nil
    ) {
        self.url = url
        self.maxAge = maxAge
        self.getter = getter
        self.clock = clock ?? { Int64(Date().timeIntervalSince1970) }
    }

    public func documents(now: Int64) -> [StatusListDocument] { doc.withLock { $0.map { [$0] } ?? [] } }

    /// Fetches once now and keeps the body as the current document (the verifier verifies it).
    /// - Returns: seconds until the next fetch is due.
    /// - Throws: ``FetchError`` or URL errors.
    @discardableResult
    public func refresh() async throws -> Int64 {
        let (body, cacheMaxAge) = try await getter.get(url)
        let jwt = String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        doc.withLock { $0 = StatusListDocument(jwt: jwt, fetchedAt: clock(), maxAge: maxAge) }
        return HTTPFetch.statusListRefresh(ttl: HTTPFetch.unverifiedTTL(jwt), maxAge: cacheMaxAge)
    }

    /// Fetches now, then whenever the previous document is due (see the type's documentation), until cancelled.
    public func run() async {
        while !Task.isCancelled {
            let next = (try? await refresh()) ?? 30
            do { try await Task.sleep(for: .seconds(next)) } catch { return }
        }
    }
}
