/// Storage of throttle counters. ``reserveAttempt(keys:now:window:delay:)`` is atomic: concurrent callers never
/// evaluate more attempts than the delays allow.
public protocol ThrottleStore: Sendable {
    // MARK: throttling
    func throttle(key: String) async throws -> ThrottleRecord?
    func putThrottle(_ record: ThrottleRecord) async throws
    func clearThrottle(key: String) async throws
    /// Reserves one attempt on every key, atomically, before any password or factor work: in one write transaction,
    /// if any key still waits out its delay nothing is written and ``ThrottleReservation/throttled(retryAfter:)`` is
    /// returned; otherwise every key's count grows by one (restarting at 1 past `window`) and the new counts are
    /// returned. `delay(n)` is the wait required after `n` counted attempts. Concurrent callers are serialised by
    /// the transaction, so no more attempts than allowed are ever evaluated.
    func reserveAttempt(
        keys: [String],
        now: Int64,
        window: Int64,
        delay: @escaping @Sendable (Int) -> Int64
    ) async throws
        -> ThrottleReservation
    /// Gives back one attempt reserved at `reservedAt` on `key` (a success, or input that proved nothing): the count
    /// drops by one and, unless another attempt was reserved since, the last attempt time goes back to `previous`
    /// (nil: there was none), so a success does not extend anyone's delay.
    func refundAttempt(key: String, reservedAt: Int64, previous: Int64?) async throws
}
