import Foundation

/// The broker's notion of "now", injected everywhere so tests can move time (unix seconds).
public struct BrokerClock: Sendable {
    private let read: @Sendable () -> Int64

    public init(_ read: @escaping @Sendable () -> Int64) { self.read = read }

    /// Current unix time in seconds.
    public func now() -> Int64 { read() }

    /// The system wall clock.
    public static let system = BrokerClock { Int64(Date().timeIntervalSince1970) }
}

/// A manually driven clock for tests.
public final class ManualClock: @unchecked Sendable {
    // Invariant: `value` is only touched under `lock`.
    private let lock = NSLock()
    private var value: Int64

    public init(_ start: Int64) { value = start }

    public var clock: BrokerClock { BrokerClock { [self] in self.lock.withLock { self.value } } }
    public func advance(_ seconds: Int64) { lock.withLock { value += seconds } }
    public func set(_ t: Int64) { lock.withLock { value = t } }
}

/// One audit record as produced by a broker component, before it is chained and stored.
///
/// Every decision the broker makes becomes one of these: `action` names what happened
/// (`signin`, `factor.enrol`, `key.rotate`, `token.issue`, …), `result` is `success` / `failure` / `denied`,
/// and `factors` names the factors used (both of them on a successful sign-in, e.g. `["pwd","otp"]`).
/// Never put a secret or a full token in any field.
public struct AuditEvent: Sendable, Codable, Hashable {
    public var action: String
    public var actor: String?
    public var subject: String?
    public var result: String
    public var reason: String?
    public var factors: [String]
    public var details: [String: String]

    public init(
        action: String,
        actor: String? = nil,
        subject: String? = nil,
        result: String = "success",
        reason: String? = nil,
        factors: [String] = [],
        details: [String: String] = [:]
    ) {
        self.action = action
        self.actor = actor
        self.subject = subject
        self.result = result
        self.reason = reason
        self.factors = factors
        self.details = details
    }
}

/// Where audit events go. The hash-chained audit log implements it; `record` returns only once the event is durable.
///
/// The services call the asynchronous ``record(_:)``. The key store calls the blocking forms (``recordBlocking(_:)``,
/// ``keyEvents()``): it runs on an executor of its own (``BrokerExecutor/keys``), where blocking is allowed, and a
/// key change must not suspend half-way — an actor is reentrant at every `await`, so a second change could
/// interleave with the first between its audit record and its files.
public protocol AuditSink: Sendable {
    /// Records `event`; returns once it is durable.
    func record(_ event: AuditEvent) async throws
    /// Records `event`, blocking the calling thread until it is durable (key store only: never on the cooperative
    /// pool).
    func recordBlocking(_ event: AuditEvent) throws
    /// The event as a record to append inside another store transaction (so the change and its record commit
    /// together), or nil when this sink keeps its records elsewhere (then the caller records after the change).
    func chainedEntry(_ event: AuditEvent) throws -> AuditAppend?
    /// The signing-key events recorded so far (action `key.…`), oldest first, which the key store reconciles its
    /// keyring against (``KeyStore/reconcile()``); nil when this sink cannot read its records back (a process log).
    func keyEvents() throws -> [AuditEvent]?
}

extension AuditSink {
    /// For sinks whose blocking form never waits on I/O (memory, a log line).
    public func record(_ event: AuditEvent) async throws { try recordBlocking(event) }
    public func chainedEntry(_ event: AuditEvent) throws -> AuditAppend? { nil }
    public func keyEvents() throws -> [AuditEvent]? { nil }
}

/// An audit sink that keeps events in memory (tests, and components used before the audit log exists).
public final class MemoryAuditSink: AuditSink, @unchecked Sendable {
    // Invariant: `storage` is only touched under `lock`.
    private let lock = NSLock()
    private var storage: [AuditEvent] = []
    public init() {}
    public func recordBlocking(_ event: AuditEvent) throws { lock.withLock { storage.append(event) } }
    public var events: [AuditEvent] { lock.withLock { storage } }
    public func keyEvents() throws -> [AuditEvent]? { events.filter { $0.action.hasPrefix("key.") } }
}
