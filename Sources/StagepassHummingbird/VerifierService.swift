import Foundation
import ServiceLifecycle
import StagepassVerify
import StagepassVerifyFetch

/// A ``Verifier`` whose JWKS and status list are fetched over HTTP(S) in the background, as a `Service` for the
/// application's `ServiceGroup` (Hummingbird: `Application(router:services:)`).
///
/// The refresh loops are ``URLKeySource/run()`` and ``URLStatusListSource/run()`` (StagepassVerifyFetch): the JWKS
/// after its Cache-Control max-age, the status list after the shorter of its `ttl` and max-age; a request never waits
/// for a fetch. Until the first JWKS arrives every token is `unknown_key`; until the first status list arrives (when
/// one is configured) every token is `status_unavailable` — the service fails closed, and ``isReady`` says when
/// both are in.
///
/// File sources (a JWKS or status list copied to disk) are re-read by the verifier itself when the file changes;
/// the service then has nothing to run and returns at graceful shutdown.
public final class StagepassVerifierService: Service, Sendable {
    public let verifier: Verifier
    private let keySource: any KeySource
    private let statusSource: (any StatusListSource)?
    private let keyLoop: URLKeySource?
    private let statusLoop: URLStatusListSource?

    /// A verifier over a JWKS URL and, optionally, a status list URL; nothing is fetched before ``run()``.
    /// - Parameters:
    ///   - configuration: issuer, audiences, leeway, lifetime cap, status max age, verified-token cache size.
    ///   - getter: the HTTP client (tests supply their own).
    public convenience init(
        configuration: VerifierConfiguration,
        jwks: URL,
        statusList: URL? = nil,
        getter: any HTTPGetting = URLSessionGetter()
    ) {
        let keys = URLKeySource(url: jwks, getter: getter)
        let lists = statusList.map { URLStatusListSource(url: $0, getter: getter) }
        self.init(configuration: configuration, keys: keys, statusLists: lists)
    }

    /// A verifier over any key and status-list sources; ``run()`` runs the refresh loops of the URL sources among
    /// them.
    public init(
        configuration: VerifierConfiguration,
        keys: any KeySource,
        statusLists: (any StatusListSource)? = nil,
        clock: (@Sendable () -> Int64)? = nil
    ) {
        keySource = keys
        statusSource = statusLists
        keyLoop = keys as? URLKeySource
        statusLoop = statusLists as? URLStatusListSource
        verifier = Verifier(configuration: configuration, keys: keys, statusLists: statusLists, clock: clock)
    }

    /// Whether a key set is held and, when a status list source is configured, a status list document.
    public var isReady: Bool {
        let now = Int64(Date().timeIntervalSince1970)
        guard keySource.current(now: now) != nil else { return false }
        guard let statusSource else { return true }
        return !statusSource.documents(now: now).isEmpty
    }

    /// Runs the refresh loops until the service group shuts down gracefully or the task is cancelled.
    public func run() async throws {
        let keyLoop = self.keyLoop
        let statusLoop = self.statusLoop
        guard keyLoop != nil || statusLoop != nil else {
            try? await gracefulShutdown()
            return
        }
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                if let keyLoop { group.addTask { await keyLoop.run() } }
                if let statusLoop { group.addTask { await statusLoop.run() } }
                await group.waitForAll()
            }
        }
    }
}
