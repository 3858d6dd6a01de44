import Dispatch
import Foundation
import Logging
import Synchronization

/// The one place where ``PostgresStore``'s synchronous methods wait for PostgresNIO's asynchronous calls.
///
/// ``BrokerStore`` is synchronous: the services call it on ``BrokerExecutor/storage`` lanes and the command-line
/// tool on its command threads. PostgresNIO is asynchronous. ``wait(_:)`` starts the asynchronous work as a task and
/// blocks the calling thread on a semaphore until the task finishes.
///
/// That is only sound off the Swift cooperative pool: a cooperative thread blocked here serves nothing else while it
/// waits. So that a caller on the pool still cannot deadlock the store, every bridged task (and the client's
/// `run()`, see ``PostgresStore``) prefers ``executor``, a task executor of its own threads: the database work never
/// needs a cooperative thread to make progress. Calls that come from an asynchronous context other than the broker's
/// own lanes or the main thread are counted and logged once (``misplacedCalls``), never trapped.
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
        let outcome = Outcome<T>()
        let job = UncheckedSendable(work)
        Task(executorPreference: executor) {
            do { outcome.set(.success(try await job.value())) } catch { outcome.set(.failure(error)) }
            done.signal()
        }
        done.wait()
        guard let result = outcome.get() else {
            throw StoreError.backend("PostgreSQL call finished without a result")
        }
        return try result.get()
    }

    /// Counts (and logs once) a call from an asynchronous context off the broker's lanes and the main thread.
    private func noteCallingContext() {
        let inTask = withUnsafeCurrentTask { $0 != nil }
        guard inTask, !Thread.isMainThread else { return }
        if BrokerExecutor.storage.isCurrent || BrokerExecutor.keys.isCurrent || BrokerExecutor.passwords.isCurrent {
            return
        }
        misplaced.wrappingAdd(1, ordering: .relaxed)
        if !warned.exchange(true, ordering: .relaxed) {
            logger.warning(
                "PostgreSQL store called from an asynchronous context off the storage lanes (the cooperative pool?): run storage calls through BrokerExecutor.storage"
            )
        }
    }
}

/// Carries a value the compiler cannot prove `Sendable` across a task boundary; used only where the sender blocks
/// until the receiver is done with it (``PostgresBridge/wait(_:)``).
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// The result of one bridged call, handed from the task to the waiting thread.
private final class Outcome<T>: @unchecked Sendable {
    // Invariant: `value` is only touched under `lock`.
    private let lock = NSLock()
    private var value: Result<T, any Error>?

    func set(_ result: Result<T, any Error>) { lock.withLock { value = result } }
    func get() -> Result<T, any Error>? { lock.withLock { value } }
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
