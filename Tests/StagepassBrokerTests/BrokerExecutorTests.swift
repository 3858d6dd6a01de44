import Foundation
import StagepassBroker
import Synchronization
import Testing

/// ``BrokerExecutor``: blocking work runs on the executor's own thread, never on the cooperative pool.
@Suite struct BrokerExecutorTests {
    struct Refused: Error, Equatable {}

    @Test func runsTheWorkOnItsQueueAndHandsBackTheResult() async throws {
        let executor = BrokerExecutor(label: "test.run")
        #expect(!executor.isCurrent)
        let result = try await executor.run { (executor.isCurrent, 6 * 7) }
        #expect(result == (true, 42))
        #expect(!executor.isCurrent)
        await #expect(throws: Refused()) { try await executor.run { throw Refused() } }
    }

    /// More blocked jobs than the cooperative pool has threads, released only by a task that itself needs a pool
    /// thread: this finishes only if the blocked work holds no pool thread (inline, it would deadlock until the
    /// waits time out).
    @Test func blockedWorkLeavesTheCooperativePoolFree() async throws {
        final class Waiting: Sendable { let count = Atomic<Int>(0) }
        let jobs = ProcessInfo.processInfo.activeProcessorCount + 2
        let gate = DispatchSemaphore(value: 0)
        let waiting = Waiting()
        let released = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<jobs {
                let executor = BrokerExecutor(label: "test.blocked.\(i)")
                group.addTask {
                    try await executor.run {
                        waiting.count.add(1, ordering: .sequentiallyConsistent)
                        return gate.wait(timeout: .now() + 10) == .success
                    }
                }
            }
            group.addTask {
                while waiting.count.load(ordering: .sequentiallyConsistent) < jobs {
                    try await Task.sleep(for: .milliseconds(5))
                }
                for _ in 0..<jobs { gate.signal() }
                return true
            }
            var all: [Bool] = []
            for try await ok in group { all.append(ok) }
            return all
        }
        #expect(released == Array(repeating: true, count: jobs + 1))
    }

    /// Two jobs that each wait for the other finish only if two lanes run them at the same time.
    @Test func lanesRunSideBySide() async throws {
        let executor = BrokerExecutor(label: "test.lanes", lanes: 2)
        let a = DispatchSemaphore(value: 0)
        let b = DispatchSemaphore(value: 0)
        async let first = executor.run {
            a.signal()
            return b.wait(timeout: .now() + 10) == .success
        }
        async let second = executor.run {
            b.signal()
            return a.wait(timeout: .now() + 10) == .success
        }
        #expect(try await [first, second] == [true, true])
        #expect(try await BrokerExecutor.blocking.run { BrokerExecutor.blocking.isCurrent })
    }

    @Test func keyStoreRunsOnTheKeysExecutor() async throws {
        let dir = try TempDir()
        let store = try makeStore(dir.keys, clock: ManualClock(1_700_000_000))
        #expect(await store.isOnKeysExecutor())
        #expect(!BrokerExecutor.keys.isCurrent)
        _ = try await store.rotate()  // generates the first keys there
        #expect(await store.isInitialized)
    }
}

extension KeyStore {
    fileprivate func isOnKeysExecutor() -> Bool { BrokerExecutor.keys.isCurrent }
}
