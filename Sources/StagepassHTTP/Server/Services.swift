import Foundation
import Logging
import ServiceLifecycle
import StagepassBroker
import StagepassVerify
import StagepassVerifyFetch

/// Moves signing keys through their states on schedule (``KeyStore/runSchedule(every:)``); stops on graceful
/// shutdown.
/// With a schedule lease (brokers sharing a PostgreSQL database), only the lease holder ticks.
struct KeyScheduleService: Service {
    let keys: KeyStore
    let interval: Duration
    var lease: ScheduleLease?
    var logger = Logger(label: "stagepass.keys")

    func run() async throws {
        let (keys, interval, logger) = (self.keys, self.interval, self.logger)
        guard let lease else {
            try await cancelWhenGracefulShutdown { await keys.runSchedule(every: interval) }
            return
        }
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                // Without the lease, look again soon: a new holder ticks at once (an empty keyring gets its keys).
                guard lease.isHeld else {
                    do { try await Task.sleep(for: .milliseconds(250)) } catch { return }
                    continue
                }
                do {
                    try await keys.tick(now: keys.configuration.clock.now())
                } catch {
                    logger.error("key schedule tick failed", metadata: ["error": "\(error)"])
                }
                do { try await Task.sleep(for: interval) } catch { return }
            }
        }
    }
}

/// For brokers sharing a PostgreSQL database: competes for the schedule lease, and applies what the other brokers
/// announce (``BrokerChange``): a keyring change is re-read at once, a policy reload reloads this broker's own policy
/// file. Every `checkInterval` the keyring version is compared as well, in case an announcement was lost.
struct ReplicaService: Service {
    let store: PostgresStore
    let keys: KeyStore
    let policy: PolicyHolder
    let audit: any AuditSink
    let lease: ScheduleLease
    let leaseInterval: Duration
    let checkInterval: Duration
    let logger: Logger

    func run() async throws {
        let (store, keys, policy, audit, lease, logger) = (
            self.store, self.keys, self.policy, self.audit, self.lease, self.logger
        )
        let (leaseInterval, checkInterval) = (self.leaseInterval, self.checkInterval)
        let refreshKeys: @Sendable () async -> Void = {
            do { try await keys.refreshFromDisk() } catch {
                logger.error("re-reading the database keyring failed", metadata: ["error": "\(error)"])
            }
        }
        try await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await store.holdLease(lease, every: leaseInterval) }
                group.addTask {
                    await store.listenForChanges(resync: refreshKeys) { change in
                        switch change {
                        case .keyring: await refreshKeys()
                        case .policy(let from):
                            guard from != store.instance else { return }
                            await Self.reloadPolicy(policy, audit: audit, logger: logger)
                        }
                    }
                }
                group.addTask {
                    while !Task.isCancelled {
                        do { try await Task.sleep(for: checkInterval) } catch { return }
                        await refreshKeys()
                    }
                }
            }
        }
    }

    /// Another broker reloaded its policy: reload this broker's file (all or nothing), audited like a reload by an
    /// administrator.
    static func reloadPolicy(_ policy: PolicyHolder, audit: any AuditSink, logger: Logger) async {
        guard let file = policy.file else { return }
        do {
            let p: AccessPolicy
            // Reading the file blocks: on a blocking lane, off the cooperative pool.
            do { p = try await BrokerExecutor.blocking.run { try AccessPolicy.load(file: file) } } catch {
                try await audit.record(
                    AuditEvent(
                        action: "policy.load",
                        actor: "broker",
                        subject: file,
                        result: "failure",
                        reason: "\(error)",
                        details: ["applied": "none", "trigger": "another broker reloaded"]
                    )
                )
                throw error
            }
            let changed = PolicySections.changed(from: policy.current, to: p)
            policy.replace(p)
            try await audit.record(
                AuditEvent(
                    action: "policy.load",
                    actor: "broker",
                    subject: file,
                    details: [
                        "roles": String(p.roles.count), "stages": String(p.stages.count), "applied": "all",
                        "changed": changed.isEmpty ? "none" : changed.joined(separator: ","),
                        "trigger": "another broker reloaded",
                    ]
                )
            )
            logger.notice("policy reloaded from \(file): another broker reloaded its policy")
        } catch {
            logger.error("reloading the policy after another broker did failed; the running policy is unchanged")
        }
    }
}

/// Re-signs the token status lists ahead of their `ttl` (draft-ietf-oauth-status-list-20 §13.7), so verifiers that
/// refresh find a fresh list without waiting for a signature; stops on graceful shutdown. Failures are logged and
/// retried at the next interval: the request path signs a list itself when it must.
///
/// With a schedule lease (brokers sharing a PostgreSQL database), only the lease holder refreshes ahead of time.
struct StatusListRefreshService: Service {
    let tokens: TokenBroker
    let logger: Logger
    var lease: ScheduleLease?

    func run() async throws {
        let tokens = self.tokens
        let (logger, lease) = (self.logger, self.lease)
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                // Half the ttl, as the publisher's cache rule; at least 30 s.
                let ttl = tokens.policy.current.tokens.statusListTTL
                do {
                    try await Task.sleep(for: .seconds(max(30, ttl / 2)))
                } catch {
                    return
                }
                if let lease, !lease.isHeld { continue }
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
