import CArgon2
import Dispatch
import Foundation
import Synchronization

/// Admission control for costly CPU work (Argon2id): a bounded set of workers behind a bounded queue, with a
/// maximum wait. Work past those bounds is refused at once with ``BrokerError/overloaded(retryAfter:)`` instead of
/// queueing without end, so a flood of sign-in attempts costs the broker at most `workers` cores and every caller
/// gets an answer quickly: the result, or a refusal it can retry after `Retry-After` seconds.
///
/// Two steps, so that a caller can be refused before it touches anything else (a throttle reservation, a database
/// row):
///
/// ```swift
/// let admission = try WorkPool.passwords.admit(limits)       // refused here when the queue is full
/// let ticket = try throttle.reserve(keys)                     // only admitted attempts are counted
/// let ok = try await admission.run { hasher.verify(pw, against: phc) }   // refused if it waited too long
/// ```
///
/// - ``admit(_:)`` takes one place among `workers + limits.queue`; none left → refused, nothing taken.
/// - ``Admission/run(_:)`` queues the work (FIFO) for the next free worker. When its turn comes after more than
///   `limits.maxWaitMilliseconds` in the queue, the work is not run and the call throws ``BrokerError/overloaded(retryAfter:)``.
/// - An admission that is never run gives its place back when it is dropped.
///
/// Workers are serial Dispatch queues the pool owns (threads of their own, off the Swift cooperative pool; see
/// ``BrokerExecutor``).
public final class WorkPool: Sendable {
    /// The queue bound and the maximum wait; read per admission, so a policy reload applies at once.
    public struct Limits: Sendable, Hashable {
        /// Admitted work waiting for a worker, beyond the `workers` that run.
        public var queue: Int
        /// The longest an admitted job may wait for a worker before it is refused instead of run, in milliseconds.
        public var maxWaitMilliseconds: Int64

        public init(queue: Int, maxWaitMilliseconds: Int64) {
            self.queue = queue
            self.maxWaitMilliseconds = maxWaitMilliseconds
        }
    }

    /// Argon2id password hashing and verification: one worker per core.
    public static let passwords = WorkPool(
        label: "stagepass.broker.passwords",
        workers: ProcessInfo.processInfo.activeProcessorCount
    )

    /// Workers (lanes) that run jobs, at most one job each at a time.
    public let workers: Int
    private let lanes: [DispatchQueue]
    private let state: Mutex<State>
    /// Monotonic nanoseconds (injectable for tests).
    private let now: @Sendable () -> UInt64
    /// A moving average of a job's run time (nanoseconds), for the `Retry-After` estimate.
    private let averageRunNanos = Atomic<Int>(0)

    private struct State {
        /// Admissions outstanding: reserved, queued or running.
        var admitted = 0
        var running = 0
        var peakRunning = 0
        var refused = 0
        /// Jobs waiting for a worker; each returns the call that answers its caller.
        var queue: [@Sendable () -> @Sendable () -> Void] = []
        /// Lanes with no drain loop, ready to take the next job.
        var idle: [Int]
    }

    /// A pool with `workers` lanes (at least 1).
    /// - Parameters:
    ///   - label: The lanes' label.
    ///   - workers: How many jobs run at once.
    ///   - now: Monotonic time in nanoseconds; nil for `DispatchTime.now()`.
    public init(label: String, workers: Int, now: (@Sendable () -> UInt64)? = nil) {
        let n = max(1, workers)
        self.workers = n
        self.lanes = (0..<n).map { DispatchQueue(label: "\(label).\($0)") }
        self.state = Mutex(State(idle: Array((0..<n).reversed())))
        self.now = now ?? { DispatchTime.now().uptimeNanoseconds }
    }

    /// Takes a place for one job.
    /// - Parameter limits: The queue bound and maximum wait.
    /// - Returns: The admission; run it with ``Admission/run(_:)`` or drop it.
    /// - Throws: ``BrokerError/overloaded(retryAfter:)`` when `workers + limits.queue` jobs are already admitted;
    ///   nothing is taken then.
    public func admit(_ limits: Limits) throws -> Admission {
        let capacity = workers + max(0, limits.queue)
        let outcome: Int? = state.withLock { s in
            guard s.admitted < capacity else {
                s.refused += 1
                return nil
            }
            s.admitted += 1
            return s.admitted
        }
        guard outcome != nil else { throw BrokerError.overloaded(retryAfter: retryAfter(backlog: capacity)) }
        return Admission(pool: self, maxWaitNanos: limits.maxWaitMilliseconds * 1_000_000)
    }

    /// Admits and runs `work` in one step (see ``admit(_:)`` and ``Admission/run(_:)``).
    public func run<T: Sendable>(_ limits: Limits, _ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await admit(limits).run(work)
    }

    /// Counters, for metrics and tests.
    public struct Statistics: Sendable, Hashable {
        /// Admissions outstanding (reserved, queued or running).
        public var admitted: Int
        public var running: Int
        /// The most jobs ever seen running at once.
        public var peakRunning: Int
        /// Jobs waiting for a worker.
        public var queued: Int
        /// Admissions refused because the queue was full (not those refused for waiting too long).
        public var refused: Int
    }

    public var statistics: Statistics {
        state.withLock { s in
            Statistics(
                admitted: s.admitted,
                running: s.running,
                peakRunning: s.peakRunning,
                queued: s.queue.count,
                refused: s.refused
            )
        }
    }

    /// Seconds a refused caller should wait: the time for the workers to clear `backlog` jobs at the average run
    /// time, rounded up, between 1 and 60.
    func retryAfter(backlog: Int) -> Int64 {
        let average = Int64(averageRunNanos.load(ordering: .relaxed))
        let nanos = average * Int64(backlog) / Int64(workers)
        return min(60, max(1, (nanos + 999_999_999) / 1_000_000_000))
    }

    /// One place in the pool: run it once, or drop it to give the place back.
    public final class Admission: Sendable {
        private let pool: WorkPool
        private let maxWaitNanos: Int64
        /// Whether the place was handed to a job or given back.
        private let settled = Atomic<Bool>(false)

        fileprivate init(pool: WorkPool, maxWaitNanos: Int64) {
            self.pool = pool
            self.maxWaitNanos = maxWaitNanos
        }

        deinit { release() }

        /// Gives the place back without running anything (idempotent; also done when the admission is dropped).
        public func release() {
            guard settle() else { return }
            pool.state.withLock { $0.admitted -= 1 }
        }

        private func settle() -> Bool {
            !settled.exchange(true, ordering: .acquiringAndReleasing)
        }

        /// Runs `work` on the next free worker, first come first served; the calling task suspends meanwhile.
        /// - Returns: What `work` returns.
        /// - Throws: ``BrokerError/overloaded(retryAfter:)`` when the turn came after the maximum wait (`work` did
        ///   not run); ``BrokerError/internalError(_:)`` when this admission was already used; else what `work`
        ///   throws.
        public func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
            guard settle() else { throw BrokerError.internalError("an admission runs one job") }
            let (pool, maxWait) = (self.pool, self.maxWaitNanos)
            // The wait is counted from here, the queueing: time the caller spent between admission and run (its own
            // storage work) is not the pool's backlog.
            let queuedAt = pool.now()
            return try await withCheckedThrowingContinuation { continuation in
                // The job returns how to answer its caller; the pool gives the place back first, so a caller that
                // resumes never sees its own job still counted.
                pool.enqueue {
                    let start = pool.now()
                    let waited = start >= queuedAt ? start - queuedAt : 0
                    guard waited <= UInt64(max(0, maxWait)) else {
                        let backlog = pool.state.withLock { $0.admitted }
                        let refusal = BrokerError.overloaded(retryAfter: pool.retryAfter(backlog: backlog))
                        return { continuation.resume(throwing: refusal) }
                    }
                    let result = Result { try work() }
                    pool.recordRunTime(pool.now() &- start)
                    return { continuation.resume(with: result) }
                }
            }
        }
    }

    /// Queues a job and starts a drain loop on an idle lane if there is one.
    private func enqueue(_ job: @escaping @Sendable () -> @Sendable () -> Void) {
        let lane: Int? = state.withLock { s in
            s.queue.append(job)
            return s.idle.popLast()
        }
        if let lane { lanes[lane].async { self.drain(lane) } }
    }

    /// Lowers the calling worker thread's scheduling priority to nice 10 (Linux nice values are per thread:
    /// `setpriority(2)` with a thread id), so that while every worker hashes, the threads that accept connections and
    /// answer `/healthz` and token requests still get the cores first. Best effort: a failure leaves the priority as is.
    private static func yieldToRequests() {
        _ = stagepass_set_thread_nice(10)
    }

    /// Runs queued jobs one after another on `lane` until the queue is empty, then marks the lane idle.
    private func drain(_ lane: Int) {
        Self.yieldToRequests()
        while true {
            let job: (@Sendable () -> @Sendable () -> Void)? = state.withLock { s in
                guard !s.queue.isEmpty else {
                    s.idle.append(lane)
                    return nil
                }
                s.running += 1
                s.peakRunning = max(s.peakRunning, s.running)
                return s.queue.removeFirst()
            }
            guard let job else { return }
            let answer = job()
            state.withLock { s in
                s.running -= 1
                s.admitted -= 1
            }
            answer()
        }
    }

    private func recordRunTime(_ nanos: UInt64) {
        let sample = Int(min(nanos, UInt64(Int.max / 8)))
        let old = averageRunNanos.load(ordering: .relaxed)
        // Exponential moving average, weight 1/8; a lost update under contention only delays the estimate.
        averageRunNanos.store(old == 0 ? sample : old + (sample - old) / 8, ordering: .relaxed)
    }
}
