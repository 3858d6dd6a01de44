import Foundation
import Logging
import ServiceLifecycle
import StagepassBroker
import StagepassVerify
import StagepassVerifyFetch

/// Moves signing keys through their states on schedule (``KeyStore/runSchedule(every:)``); stops on graceful
/// shutdown.
struct KeyScheduleService: Service {
    let keys: KeyStore
    let interval: Duration

    func run() async throws {
        let keys = self.keys
        let interval = self.interval
        try await cancelWhenGracefulShutdown { await keys.runSchedule(every: interval) }
    }
}

/// Re-signs the token status lists ahead of their `ttl` (draft-ietf-oauth-status-list-20 §13.7), so verifiers that
/// refresh find a fresh list without waiting for a signature; stops on graceful shutdown. Failures are logged and
/// retried at the next interval: the request path signs a list itself when it must.
struct StatusListRefreshService: Service {
    let tokens: TokenBroker
    let logger: Logger

    func run() async throws {
        let tokens = self.tokens
        let logger = self.logger
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                // Half the ttl, as the publisher's cache rule; at least 30 s.
                let ttl = tokens.policy.current.tokens.statusListTTL
                do {
                    try await Task.sleep(for: .seconds(max(30, ttl / 2)))
                } catch {
                    return
                }
                do {
                    let count = try await tokens.statusLists.count()
                    for n in 1...max(1, count) { _ = try await tokens.statusLists.list(n) }
                } catch {
                    logger.warning("status list refresh failed", metadata: ["error_type": "\(type(of: error))"])
                }
            }
        }
    }
}

/// Keeps the trusted CI issuers' keys fresh in the background (each issuer's JWKS re-fetched when its Cache-Control
/// max-age has passed), so a job's token is verified against cached keys without waiting on its platform; stops on
/// graceful shutdown.
struct CIIssuerRefreshService: Service {
    let tokens: TokenBroker

    /// The networked key source of a CI issuer: discovery document, then JWKS (StagepassVerifyFetch), each fetch
    /// bounded by the issuer's `fetch_timeout`.
    static let discoveryFetcher: CIKeyDirectory.Fetcher = { issuer, rsa, timeout in
        DiscoveryKeySource(issuer: issuer, rsaAlgorithm: rsa, getter: URLSessionGetter(timeout: TimeInterval(timeout)))
    }

    func run() async throws {
        let tokens = self.tokens
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await tokens.ciKeys.refreshDue(tokens.policy.current, now: tokens.human.clock.now())
                do { try await Task.sleep(for: .seconds(5)) } catch { return }
            }
        }
    }
}

extension DiscoveryKeySource: CIIssuerKeySource {}
