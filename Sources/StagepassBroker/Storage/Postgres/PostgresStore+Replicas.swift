import Foundation
import Logging
import PostgresNIO
import Synchronization

/// Whether this broker holds the schedule lease: the one broker among those sharing a database that runs the key
/// schedule and the status-list refresh (``PostgresStore/holdLease(_:every:)``). Others skip that work and still
/// serve every request.
public final class ScheduleLease: Sendable {
    private let held = Atomic<Bool>(false)
    private let changes = Atomic<Int>(0)

    public init() {}

    /// Whether the lease was held at its last check.
    public var isHeld: Bool { held.load(ordering: .acquiring) }

    /// How often the lease changed hands in this process (taken or lost).
    public var transitions: Int { changes.load(ordering: .relaxed) }

    /// Records the lease's state; returns whether it changed.
    @discardableResult
    func set(_ value: Bool) -> Bool {
        let old = held.exchange(value, ordering: .acquiringAndReleasing)
        if old != value { changes.wrappingAdd(1, ordering: .relaxed) }
        return old != value
    }
}

extension PostgresStore {
    /// Competes for the schedule lease until the task is cancelled: a session-level `pg_try_advisory_lock` on a
    /// connection taken from the pool and kept for as long as this runs. Every `interval` the holder checks that its
    /// connection still answers; the others try the lock. When the holder's process dies its connection closes and
    /// PostgreSQL releases the lock, so another broker takes it at its next try. On cancellation (shutdown) the lock
    /// is released at once.
    ///
    /// The lease saves duplicate work; it is not what keeps the keyring consistent: two brokers that both believe they
    /// hold it (a holder cut off from the database until its next check) still commit key changes one at a time
    /// (``commitKeyring(_:)`` is a compare-and-set on the keyring version).
    public func holdLease(_ lease: ScheduleLease, every interval: Duration) async {
        let (client, logger) = (self.client, self.logger)
        let space = Self.lockSpace + LockKey.scheduleLease.rawValue
        let log = Self.infoLogger("stagepass.lease")
        while !Task.isCancelled {
            do {
                try await client.withConnection { conn in
                    do {
                        while !Task.isCancelled {
                            if lease.isHeld {
                                try await Self.drain(conn.query("SELECT 1", logger: logger))
                            } else {
                                let got =
                                    try await Self.collect(
                                        conn.query("SELECT pg_try_advisory_lock(\(space), 0)", logger: logger)
                                    ).first?.decode(Bool.self) ?? false
                                if got, lease.set(true) {
                                    log.notice("schedule lease taken: this broker runs the key schedule")
                                }
                            }
                            try await Task.sleep(for: interval)
                        }
                    } catch {
                        // The connection goes back to the pool: it must not keep the lock.
                        if lease.isHeld {
                            lease.set(false)
                            log.notice("schedule lease released")
                            try? await Self.drain(
                                conn.query("SELECT pg_advisory_unlock(\(space), 0)", logger: logger)
                            )
                        }
                        throw error
                    }
                }
            } catch {
                if lease.set(false) { log.warning("schedule lease lost: \(Self.describe(error))") }
                if Task.isCancelled { return }
                try? await Task.sleep(for: interval)
            }
        }
        lease.set(false)
    }

    /// Calls `handle` with every change another broker announces on ``changeChannel`` until the task is cancelled,
    /// on a connection held for the purpose; after a connection loss it listens again (announcements sent meanwhile
    /// are lost: `resync` runs each time listening starts, and callers also check periodically).
    public func listenForChanges(
        resync: @escaping @Sendable () async -> Void,
        _ handle: @escaping @Sendable (BrokerChange) async -> Void
    ) async {
        let client = self.client
        let log = Self.infoLogger("stagepass.replicas")
        while !Task.isCancelled {
            do {
                try await client.withConnection { conn in
                    try await conn.listen(on: Self.changeChannel) { notifications in
                        await resync()
                        for try await n in notifications {
                            if let change = BrokerChange(payload: n.payload) { await handle(change) }
                        }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                log.warning("listening for other brokers' changes failed: \(Self.describe(error)); retrying")
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    static func infoLogger(_ label: String) -> Logger {
        var log = Logger(label: label)
        log.logLevel = .info
        return log
    }

    /// An error as text for the log: SQLSTATE and message of a server error, the type otherwise (never the query).
    static func describe(_ error: any Error) -> String {
        if let e = error as? PSQLError {
            let state = e.serverInfo?[.sqlState] ?? "-"
            let message = e.serverInfo?[.message] ?? "\(e.code)"
            return "\(state) \(message)"
        }
        return "\(type(of: error))"
    }
}
