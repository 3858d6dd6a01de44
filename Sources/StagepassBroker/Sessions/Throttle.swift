/// Throttling with growing delays (OWASP Authentication Cheat Sheet, "Protect against automated attacks").
///
/// Each key (`acct:NAME` per account name, known or not; `addr:IP` per client address; `factor:USERID` per user's
/// second factor) counts recent failures. The first ``Policy/freeFailures`` are free; after that the next attempt is
/// refused until `baseDelay · 2^(failures − freeFailures)` seconds (capped at ``Policy/maxDelay``) have passed since the
/// last failure. Failures older than ``Policy/window`` are forgotten. A success clears the key.
public struct Throttle: Sendable {
    public struct Policy: Sendable, Hashable {
        public var freeFailures: Int
        public var baseDelay: Int64
        public var maxDelay: Int64
        public var window: Int64
        /// Factor failures (for one user) after which the account is locked until an admin unlocks it.
        public var lockoutAfterFactorFailures: Int
        public init(
            freeFailures: Int = 3, baseDelay: Int64 = 2, maxDelay: Int64 = 900, window: Int64 = 3600,
            lockoutAfterFactorFailures: Int = 10
        ) {
            self.freeFailures = freeFailures
            self.baseDelay = baseDelay
            self.maxDelay = maxDelay
            self.window = window
            self.lockoutAfterFactorFailures = lockoutAfterFactorFailures
        }
        public static let `default` = Policy()
    }

    public let store: any BrokerStore
    public let clock: BrokerClock
    public let policy: Policy

    public init(store: any BrokerStore, clock: BrokerClock, policy: Policy = .default) {
        self.store = store
        self.clock = clock
        self.policy = policy
    }

    public static func accountKey(_ name: String) -> String { "acct:" + name }
    public static func addressKey(_ address: String) -> String { "addr:" + address }
    public static func factorKey(_ userId: String) -> String { "factor:" + userId }

    /// Delay required after `failures` failures.
    public func delay(after failures: Int) -> Int64 {
        guard failures >= policy.freeFailures else { return 0 }
        let exp = min(failures - policy.freeFailures, 30)
        let d = policy.baseDelay.multipliedReportingOverflow(by: Int64(1) << Int64(exp))
        return d.overflow ? policy.maxDelay : min(d.partialValue, policy.maxDelay)
    }

    /// Throws ``BrokerError/throttled(retryAfter:)`` if any key is still waiting out its delay.
    public func check(_ keys: [String]) throws {
        let now = clock.now()
        var wait: Int64 = 0
        for key in keys {
            guard let r = try store.throttle(key: key), now - r.lastFailureAt < policy.window else { continue }
            let until = r.lastFailureAt + delay(after: r.failures)
            if until > now { wait = max(wait, until - now) }
        }
        if wait > 0 { throw BrokerError.throttled(retryAfter: wait) }
    }

    /// Counts one failure on each key; returns the new failure counts.
    @discardableResult
    public func fail(_ keys: [String]) throws -> [Int] {
        let now = clock.now()
        return try keys.map { key in
            var failures = 1
            if let r = try store.throttle(key: key), now - r.lastFailureAt < policy.window { failures = r.failures + 1 }
            try store.putThrottle(ThrottleRecord(key: key, failures: failures, lastFailureAt: now))
            return failures
        }
    }

    /// Clears the keys after a success.
    public func succeed(_ keys: [String]) throws {
        for k in keys { try store.clearThrottle(key: k) }
    }
}
