import Dispatch
import Foundation
import Synchronization

/// Where the broker's blocking work runs: opening the store, reading the policy file, key generation and key-file
/// writes (fsync). Such work must never run on the Swift cooperative thread pool, whose few threads (one per core)
/// also serve every request: a thread stuck in a file read or in RSA key generation is a core that serves nothing.
/// (Storage calls need no lane: the store is asynchronous, see ``BrokerStore``.)
///
/// An executor is one or more serial Dispatch queues ("lanes"); a serial queue the program creates runs on a thread
/// of its own when it has work (libdispatch's "overcommit" threads). On Linux, `DispatchQueue.global()` is *not* a way
/// out: Swift's cooperative pool is built on those very global queues. There are two ways in:
///
/// - **Run a synchronous call** with ``run(_:)``; the calling task suspends (its thread goes back to the pool) until
///   the call returns on one of the executor's lanes:
///   ```swift
///   let policy = try await BrokerExecutor.blocking.run { try AccessPolicy.load(file: path) }
///   ```
/// - **Give an actor this executor** (as ``KeyStore`` does with ``keys``), so every method of the actor runs off the
///   pool, on the first lane, serially, with the actor's usual guarantees:
///   ```swift
///   public nonisolated var unownedExecutor: UnownedSerialExecutor { BrokerExecutor.keys.asUnownedSerialExecutor() }
///   ```
///
/// ``blocking`` has a lane per core; ``keys`` has one. Each has threads of its own, so a slow RSA key generation
/// never delays a policy reload. Argon2 runs on ``WorkPool/passwords`` instead: a bounded pool that refuses work past its queue, so a
/// burst of sign-ins never builds an unbounded backlog.
public final class BrokerExecutor: SerialExecutor {
    /// Occasional blocking calls of the server: opening the store, reading the policy file, closing a connection
    /// pool. A lane per core, at least two.
    public static let blocking = BrokerExecutor(
        label: "stagepass.broker.blocking",
        lanes: max(2, ProcessInfo.processInfo.activeProcessorCount)
    )
    /// ``KeyStore``'s executor: key generation, signing-key lookups, keyring and key-file writes.
    public static let keys = BrokerExecutor(label: "stagepass.broker.keys")

    /// Serial queues; `lanes[0]` also runs the jobs of actors that use this executor.
    private let lanes: [DispatchQueue]
    /// Round-robin choice of the lane for the next ``run(_:)``.
    private let nextLane = Atomic<Int>(0)
    /// Set on this executor's lanes only, so ``isCurrent`` can tell their threads from any other.
    private let marker = DispatchSpecificKey<Bool>()

    /// A new executor with queues of its own.
    /// - Parameters:
    ///   - label: The queues' label (shown in debuggers and crash reports).
    ///   - lanes: How many ``run(_:)`` calls may run at once (at least 1).
    public init(label: String, lanes: Int = 1) {
        self.lanes = (0..<max(1, lanes)).map { DispatchQueue(label: "\(label).\($0)") }
        for lane in self.lanes { lane.setSpecific(key: marker, value: true) }
    }

    /// Whether the caller is running on one of this executor's lanes.
    public var isCurrent: Bool { DispatchQueue.getSpecific(key: marker) ?? false }

    /// Runs `work` on one of this executor's lanes and returns its result (or rethrows its error). The calling task
    /// suspends meanwhile and holds no cooperative thread.
    ///
    /// - Parameter work: Synchronous, possibly blocking work.
    /// - Returns: What `work` returns.
    /// - Throws: Whatever `work` throws.
    public func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        let turn = nextLane.wrappingAdd(1, ordering: .relaxed).oldValue
        let lane = lanes[Int(turn.magnitude % UInt(lanes.count))]
        return try await withCheckedThrowingContinuation { continuation in
            lane.async { continuation.resume(with: Result { try work() }) }
        }
    }

    // MARK: SerialExecutor

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        lanes[0].async { job.runSynchronously(on: self.asUnownedSerialExecutor()) }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }

    /// Lets `assumeIsolated` succeed for an actor on this executor when called from the executor's first lane.
    public func checkIsolated() {
        dispatchPrecondition(condition: .onQueue(lanes[0]))
    }
}
