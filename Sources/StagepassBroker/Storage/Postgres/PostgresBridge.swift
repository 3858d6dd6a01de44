import Dispatch
import Foundation
import Logging
import Synchronization

/// The one place where ``PostgresStore``'s few blocking calls wait for PostgresNIO's asynchronous ones.
///
/// ``BrokerStore`` is asynchronous; what blocks is opening and closing the store and the key store's calls (its
/// keyring through ``KeyringDatabase``, its audit records through ``AuditStore/appendAuditBlocking(time:event:chain:)``),
/// which run on ``BrokerExecutor/keys`` so that a key change never suspends half-way. ``wait(_:)`` starts the
/// asynchronous work as a task and blocks the calling thread on a semaphore until the task finishes.
///
/// That is only sound off the Swift cooperative pool: a cooperative thread blocked here serves nothing else while it
/// waits, and PostgresNIO's pool starts some tasks of its own on the pool, so callers blocking every cooperative
/// thread would stall it. Every bridged task (and the client's `run()`, see ``PostgresStore``) prefers ``executor``,
/// a task executor of its own threads, so the database work itself takes no cooperative thread. Calls that come
/// from an asynchronous context other than the broker's own lanes or the main thread are counted and logged once
/// (``misplacedCalls``), never trapped.
///
/// A call from one of ``executor``'s own threads would wait for itself; it is refused with ``StoreError/backend(_:)``.
final class PostgresBridge: Sendable {
    /// Runs the store's tasks: serial Dispatch queues, each on a thread of its own when it has work.
    let executor: QueueTaskExecutor
    private let logger: Logger
    private let warned = Atomic<Bool>(false)
    private let misplaced = Atomic<Int>(0)

    init(label: String, lanes: Int, logger: Logger) {
        executor = QueueTaskExecutor(label: label, lanes: lanes)
        self.logger = logger
    }

    /// How many calls came from an asynchronous context that is neither a broker lane nor the main thread (most
    /// likely the cooperative pool).
    var misplacedCalls: Int { misplaced.load(ordering: .relaxed) }

    /// Runs `work` on ``executor`` and blocks the calling thread until it finishes; returns its result or rethrows
    /// its error.
    ///
    /// - Parameter work: Asynchronous database work. It may capture non-`Sendable` values of the caller (a
    ///   non-escaping closure passed through `withoutActuallyEscaping`): the caller is blocked for the task's whole
    ///   life, so nothing it captured is used concurrently.
    /// - Throws: What `work` throws; ``StoreError/backend(_:)`` when called from ``executor`` itself.
    func wait<T>(_ work: @escaping () async throws -> T) throws -> T {
        if executor.isCurrent {
            throw StoreError.backend("a PostgreSQL store call from the store's own executor would wait for itself")
        }
        noteCallingContext()
        let done = DispatchSemaphore(value: 0)
        let job = Job(work)
        Task(executorPreference: executor) {
            job.finish(await job.run())
            done.signal()
        }
        done.wait()
        guard let result = job.result() else {
            throw StoreError.backend("PostgreSQL call finished without a result")
        }
        return try result.get()
    }

    /// Counts (and logs once) a call from an asynchronous context off the broker's lanes and the main thread.
    private func noteCallingContext() {
        let inTask = withUnsafeCurrentTask { $0 != nil }
        guard inTask, !Thread.isMainThread else { return }
        if BrokerExecutor.blocking.isCurrent || BrokerExecutor.keys.isCurrent {
            return
        }
        misplaced.wrappingAdd(1, ordering: .relaxed)
        if !warned.exchange(true, ordering: .relaxed) {
            logger.warning(
                "blocking PostgreSQL store call from an asynchronous context off the broker's lanes (the cooperative pool?): use the store's asynchronous calls"
            )
        }
    }
}

/// One bridged call: the work, handed to the task, and its result, handed back to the waiting thread.
///
/// The work closure may be a non-escaping closure of the caller made escaping by `withoutActuallyEscaping` (which
/// traps if the closure outlives its block): ``run()`` takes it out of the box and drops it before the result is
/// published, so no reference survives the caller's wait.
private final class Job<T>: @unchecked Sendable {
    // Invariant: `work` and `outcome` are only touched under `lock`.
    private let lock = NSLock()
    private var work: (() async throws -> T)?
    private var outcome: Result<T, any Error>?

    init(_ work: @escaping () async throws -> T) { self.work = work }

    /// Runs the work once; the closure is released when this returns.
    func run() async -> Result<T, any Error> {
        guard let work = take() else { return .failure(StoreError.backend("PostgreSQL call ran twice")) }
        do { return .success(try await work()) } catch { return .failure(error) }
    }

    private func take() -> (() async throws -> T)? {
        lock.withLock {
            let w = work
            work = nil
            return w
        }
    }

    func finish(_ result: Result<T, any Error>) { lock.withLock { outcome = result } }
    func result() -> Result<T, any Error>? { lock.withLock { outcome } }
}

/// A `TaskExecutor` on serial Dispatch queues of its own (round-robin), so that tasks preferring it never occupy a
/// cooperative thread.
final class QueueTaskExecutor: TaskExecutor {
    private let lanes: [DispatchQueue]
    private let next = Atomic<Int>(0)
    private let marker = DispatchSpecificKey<Bool>()

    init(label: String, lanes: Int) {
        self.lanes = (0..<max(1, lanes)).map { DispatchQueue(label: "\(label).\($0)") }
        for lane in self.lanes { lane.setSpecific(key: marker, value: true) }
    }

    /// Whether the caller runs on one of this executor's queues.
    var isCurrent: Bool { DispatchQueue.getSpecific(key: marker) ?? false }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let turn = next.wrappingAdd(1, ordering: .relaxed).oldValue
        let lane = lanes[Int(turn.magnitude % UInt(lanes.count))]
        lane.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }

    func asUnownedTaskExecutor() -> UnownedTaskExecutor { UnownedTaskExecutor(ordinary: self) }
}
