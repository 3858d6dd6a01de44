import Synchronization

/// Throttling with growing delays (OWASP Authentication Cheat Sheet, "Protect against automated attacks").
///
/// Each key (`acct:NAME` per account name, known or not; `addr:IP` per client address; `factor:USERID` per user's
/// second factor) counts recent attempts. Every attempt is **reserved before any password or factor work**
/// (``reserve(_:)``: one atomic store operation that checks and counts), so a burst of concurrent attempts is
/// evaluated at most ``Policy/freeFailures`` times before the delay applies. A success gives its reservation back
/// (``succeeded(account:address:)``); a failure keeps it. The first ``Policy/freeFailures`` attempts are free; after
/// that the next one is refused until `baseDelay · 2^(n − freeFailures)` seconds (capped at ``Policy/maxDelay``) have
/// passed since the last one. Counts older than ``Policy/window`` are forgotten.
///
/// Password attempts also count against a **global budget** (``Policy/globalFailures`` per ``Policy/globalWindow``,
/// fixed windows): a flood of fresh account names from fresh addresses trips no per-account or per-address key, but
/// it spends this budget, after which every password attempt is refused with ``BrokerError/overloaded(retryAfter:)``
/// until the window ends (``reservePassword(account:address:)``). Known and unknown names count the same (an
/// attempt is reserved before the account is looked up, and a success gives its reservation back), so the budget
/// says nothing about which names exist.
///
/// On top of the counts, ``InFlightLimiter`` caps how many attempts per account and per address run at once in this
/// process (``Policy/maxConcurrentPerAccount``, ``Policy/maxConcurrentPerAddress``).
public struct Throttle: Sendable {
    public struct Policy: Sendable, Hashable {
        public var freeFailures: Int
        public var baseDelay: Int64
        public var maxDelay: Int64
        public var window: Int64
        /// Factor failures (for one user) after which the account is locked until an admin unlocks it.
        public var lockoutAfterFactorFailures: Int
        /// Password or factor attempts for one account evaluated at the same time; more are refused at once.
        public var maxConcurrentPerAccount: Int
        /// Password or factor attempts from one client address evaluated at the same time.
        public var maxConcurrentPerAddress: Int
        /// Password attempts (all account names, all addresses; successes give theirs back) allowed per
        /// ``globalWindow``; past it every password attempt gets ``BrokerError/overloaded(retryAfter:)``.
        public var globalFailures: Int
        /// The fixed window of ``globalFailures``, seconds.
        public var globalWindow: Int64
        /// Password hashes allowed to wait for a hashing worker, per worker (one worker per core); more are refused
        /// at once with ``BrokerError/overloaded(retryAfter:)`` (see ``WorkPool``).
        public var hashQueuePerWorker: Int
        /// The longest a password hash may wait for a worker before it is refused instead of run, seconds.
        public var hashMaxWait: Int64

        public init(
            freeFailures: Int = 3,
            baseDelay: Int64 = 2,
            maxDelay: Int64 = 900,
            window: Int64 = 3600,
            lockoutAfterFactorFailures: Int = 10,
            maxConcurrentPerAccount: Int = 2,
            maxConcurrentPerAddress: Int = 8,
            globalFailures: Int = 600,
            globalWindow: Int64 = 60,
            hashQueuePerWorker: Int = 4,
            hashMaxWait: Int64 = 1
        ) {
            self.freeFailures = freeFailures
            self.baseDelay = baseDelay
            self.maxDelay = maxDelay
            self.window = window
            self.lockoutAfterFactorFailures = lockoutAfterFactorFailures
            self.maxConcurrentPerAccount = maxConcurrentPerAccount
            self.maxConcurrentPerAddress = maxConcurrentPerAddress
            self.globalFailures = globalFailures
            self.globalWindow = globalWindow
            self.hashQueuePerWorker = hashQueuePerWorker
            self.hashMaxWait = hashMaxWait
        }

        /// The bounds of a ``WorkPool`` with `workers` workers under this policy.
        public func hashLimits(workers: Int) -> WorkPool.Limits {
            WorkPool.Limits(
                queue: max(0, hashQueuePerWorker) * max(1, workers),
                maxWaitMilliseconds: max(0, hashMaxWait) * 1000
            )
        }
        public static let `default` = Policy()
    }

    public let store: any BrokerStore
    public let clock: BrokerClock
    /// Read on every call, so a policy reload applies at once.
    let currentPolicy: @Sendable () -> Policy
    /// Attempts in flight in this process.
    let inFlight: InFlightLimiter

    public var policy: Policy { currentPolicy() }

    public init(store: any BrokerStore, clock: BrokerClock, policy: Policy = .default) {
        self.init(store: store, clock: clock, inFlight: InFlightLimiter()) { policy }
    }

    init(
        store: any BrokerStore,
        clock: BrokerClock,
        inFlight: InFlightLimiter,
        policy: @escaping @Sendable () -> Policy
    ) {
        self.store = store
        self.clock = clock
        self.inFlight = inFlight
        self.currentPolicy = policy
    }

    public static func accountKey(_ name: String) -> String { "acct:" + name }
    public static func addressKey(_ address: String) -> String { "addr:" + address }
    public static func factorKey(_ userId: String) -> String { "factor:" + userId }
    /// The global password budget's key for the fixed window `window` (two keys that alternate: a key was last
    /// used two windows ago at the latest, so its count has lapsed, and the table holds two rows, not one per window).
    public static func globalKey(window: Int64) -> String { "global:password:" + String(window & 1) }

    /// Delay required after `failures` counted attempts.
    public func delay(after failures: Int) -> Int64 { Self.delay(after: failures, policy: policy) }

    static func delay(after failures: Int, policy: Policy) -> Int64 {
        guard failures >= policy.freeFailures else { return 0 }
        let exp = min(failures - policy.freeFailures, 30)
        let d = policy.baseDelay.multipliedReportingOverflow(by: Int64(1) << Int64(exp))
        return d.overflow ? policy.maxDelay : min(d.partialValue, policy.maxDelay)
    }

    /// One reserved attempt: what ``reserve(_:)`` counted, so that it can be given back.
    public struct Ticket: Sendable {
        public let keys: [String]
        /// The counts after this attempt, in key order.
        public let counts: [Int]
        let previous: [Int64?]
        let at: Int64
    }

    /// Reserves one attempt on every key, atomically (see ``BrokerStore/reserveAttempt(keys:now:window:delay:)``).
    /// - Throws: ``BrokerError/throttled(retryAfter:)`` when a key still waits; nothing is counted then.
    @discardableResult
    public func reserve(_ keys: [String]) async throws -> Ticket {
        let p = policy
        let now = clock.now()
        switch try await store.reserveAttempt(
            keys: keys,
            now: now,
            window: p.window,
            delay: { Self.delay(after: $0, policy: p) }
        )
        {
        case .reserved(let counts, let previous): return Ticket(keys: keys, counts: counts, previous: previous, at: now)
        case .throttled(let wait): throw BrokerError.throttled(retryAfter: wait)
        }
    }

    /// Reserves one password attempt: first on the global budget, then on the account and the address (atomically
    /// each, see ``reserve(_:)``). The ticket's keys are `[account, address, global]`, so ``succeeded(_:)`` clears the
    /// account and gives the others back, and ``refund(_:)`` gives all back.
    /// - Throws: ``BrokerError/overloaded(retryAfter:)`` when the global budget of this window is spent (until the
    ///   window ends); ``BrokerError/throttled(retryAfter:)`` when the account or address still waits. Nothing is
    ///   counted then.
    public func reservePassword(account: String, address: String) async throws -> Ticket {
        let p = policy
        let now = clock.now()
        let window = max(1, p.globalWindow)
        let index = now >= 0 ? now / window : 0
        let global = Self.globalKey(window: index)
        let budget = max(1, p.globalFailures)
        let globalPrevious: Int64?
        let globalCount: Int
        switch try await store.reserveAttempt(
            keys: [global],
            now: now,
            window: window,
            delay: { $0 >= budget ? window : 0 }
        )
        {
        case .reserved(let counts, let previous):
            globalCount = counts.first ?? 1
            globalPrevious = previous.first ?? nil
        case .throttled:
            throw BrokerError.overloaded(retryAfter: max(1, (index + 1) * window - now))
        }
        let rest: ThrottleReservation
        do {
            rest = try await store.reserveAttempt(
                keys: [account, address],
                now: now,
                window: p.window,
                delay: { Self.delay(after: $0, policy: p) }
            )
        } catch {
            try await store.refundAttempt(key: global, reservedAt: now, previous: globalPrevious)
            throw error
        }
        switch rest {
        case .reserved(let counts, let previous):
            return Ticket(
                keys: [account, address, global],
                counts: counts + [globalCount],
                previous: previous + [globalPrevious],
                at: now
            )
        case .throttled(let wait):
            try await store.refundAttempt(key: global, reservedAt: now, previous: globalPrevious)
            throw BrokerError.throttled(retryAfter: wait)
        }
    }

    /// Gives back the attempt on every key of the ticket (input that proved and guessed nothing, or a success on a
    /// shared key), leaving no trace of it.
    public func refund(_ ticket: Ticket) async throws {
        for (key, previous) in zip(ticket.keys, ticket.previous) {
            try await store.refundAttempt(key: key, reservedAt: ticket.at, previous: previous)
        }
    }

    /// After a success: clears the per-account (or per-factor) key — the first of the ticket — and gives back the
    /// others' reservations, so that people behind one address do not slow each other down by signing in.
    public func succeeded(_ ticket: Ticket) async throws {
        guard let first = ticket.keys.first else { return }
        try await store.clearThrottle(key: first)
        for (key, previous) in zip(ticket.keys, ticket.previous).dropFirst() {
            try await store.refundAttempt(key: key, reservedAt: ticket.at, previous: previous)
        }
    }

    /// Runs `body` while holding an in-flight slot for the account and the address.
    /// - Throws: ``BrokerError/throttled(retryAfter:)`` (1 s) when either already has its maximum in flight.
    public func limitingConcurrency<T>(
        account: String,
        address: String,
        _ body: () async throws -> T
    ) async throws
        -> T
    {
        let keys = try acquireSlots(account: account, address: address)
        defer { inFlight.release(keys) }
        return try await body()
    }

    /// The synchronous form of ``limitingConcurrency(account:address:_:)``.
    public func limitingConcurrency<T>(account: String, address: String, _ body: () throws -> T) throws -> T {
        let keys = try acquireSlots(account: account, address: address)
        defer { inFlight.release(keys) }
        return try body()
    }

    /// Takes one in-flight slot for the account and one for the address (both or neither); returns the keys to
    /// release.
    private func acquireSlots(account: String, address: String) throws -> [String] {
        let p = policy
        let slots = [(account, p.maxConcurrentPerAccount), (address, p.maxConcurrentPerAddress)]
        guard inFlight.acquire(slots) else { throw BrokerError.throttled(retryAfter: 1) }
        return slots.map(\.0)
    }
}

/// Counts attempts in flight per key in this process; all or none of a set of slots is taken.
public final class InFlightLimiter: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    public init() {}

    /// Takes one slot on each key if every key is below its limit; false (and nothing taken) otherwise.
    func acquire(_ slots: [(key: String, limit: Int)]) -> Bool {
        counts.withLock { c in
            guard slots.allSatisfy({ c[$0.key, default: 0] < $0.limit }) else { return false }
            for s in slots { c[s.key, default: 0] += 1 }
            return true
        }
    }

    func release(_ keys: [String]) {
        counts.withLock { c in
            for k in keys {
                let n = c[k, default: 0] - 1
                c[k] = n > 0 ? n : nil
            }
        }
    }

    /// Attempts in flight for `key` (tests).
    public func inFlight(_ key: String) -> Int { counts.withLock { $0[key, default: 0] } }
}
