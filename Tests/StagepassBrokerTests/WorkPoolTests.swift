import Dispatch
import Synchronization
import Testing

@testable import StagepassBroker

/// A monotonic clock the test moves by hand.
final class FakeNanos: Sendable {
    private let value = Atomic<UInt64>(1_000_000_000)
    func now() -> UInt64 { value.load(ordering: .relaxed) }
    func advance(milliseconds: UInt64) { value.add(milliseconds * 1_000_000, ordering: .relaxed) }
}

/// Jobs that block until the test opens the gate (with a generous safety timeout, so a failing test ends).
final class Gate: Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    func wait() { _ = semaphore.wait(timeout: .now() + 30) }
    func open(_ count: Int = 1) { for _ in 0..<count { semaphore.signal() } }
}

/// Counters shared with jobs on other threads.
final class Meter: Sendable {
    let inside = Atomic<Int>(0)
    let peak = Atomic<Int>(0)
    let runs = Atomic<Int>(0)
    let ran = Atomic<Bool>(false)
}

/// Polls `condition` until it holds (or about ten seconds pass); returns whether it held.
func eventually(_ condition: () -> Bool) async -> Bool {
    for _ in 0..<1000 {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

@Suite struct WorkPoolTests {
    static let roomy = WorkPool.Limits(queue: 1000, maxWaitMilliseconds: 60_000)

    @Test func capacityIsHonouredUnderRealConcurrency() async throws {
        let pool = WorkPool(label: "test.capacity", workers: 3)
        let gate = Gate()
        let meter = Meter()
        try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<40 {
                group.addTask {
                    try await pool.run(Self.roomy) {
                        let n = meter.inside.add(1, ordering: .relaxed).newValue
                        meter.peak.max(n, ordering: .relaxed)
                        gate.wait()
                        meter.inside.subtract(1, ordering: .relaxed)
                        return i
                    }
                }
            }
            // All 40 are admitted; three run (blocked at the gate) and the others wait their turn.
            #expect(await eventually { pool.statistics.admitted == 40 && pool.statistics.running == 3 })
            #expect(pool.statistics.queued == 37)
            let running = meter.inside.load(ordering: .relaxed)
            #expect(running == 3)
            gate.open(40)
            var done: Set<Int> = []
            for try await i in group { done.insert(i) }
            #expect(done == Set(0..<40))
        }
        let observedPeak = meter.peak.load(ordering: .relaxed)
        #expect(observedPeak == 3)
        let s = pool.statistics
        #expect(s.peakRunning == 3 && s.admitted == 0 && s.running == 0 && s.queued == 0 && s.refused == 0)
    }

    @Test func aFullQueueRefusesAtOnceAndRunsNothing() async throws {
        let pool = WorkPool(label: "test.overflow", workers: 1)
        let limits = WorkPool.Limits(queue: 2, maxWaitMilliseconds: 60_000)
        let gate = Gate()
        let meter = Meter()
        async let blocker: Void = pool.run(limits) {
            gate.wait()
            meter.runs.add(1, ordering: .relaxed)
        }
        #expect(await eventually { pool.statistics.running == 1 })
        let queued = [try pool.admit(limits), try pool.admit(limits)]
        do {
            _ = try pool.admit(limits)
            Issue.record("a third waiting job should be refused")
        } catch let e as BrokerError {
            #expect(e == .overloaded)
            #expect((e.retryAfter ?? 0) >= 1)
        }
        #expect(pool.statistics.refused == 1 && pool.statistics.admitted == 3)
        gate.open()
        try await blocker
        for admission in queued { try await admission.run { meter.runs.add(1, ordering: .relaxed) } }
        let runs = meter.runs.load(ordering: .relaxed)
        #expect(runs == 3)
        #expect(pool.statistics.admitted == 0)
    }

    @Test func workThatWaitedTooLongIsRefusedWithoutRunning() async throws {
        let clock = FakeNanos()
        let pool = WorkPool(label: "test.wait", workers: 1, now: { clock.now() })
        let limits = WorkPool.Limits(queue: 4, maxWaitMilliseconds: 100)
        let gate = Gate()
        let meter = Meter()
        async let blocker: Void = pool.run(limits) { gate.wait() }
        #expect(await eventually { pool.statistics.running == 1 })
        let late = Task { try await pool.run(limits) { meter.ran.store(true, ordering: .relaxed) } }
        #expect(await eventually { pool.statistics.queued == 1 })
        clock.advance(milliseconds: 101)
        gate.open()
        try await blocker
        await #expect(throws: BrokerError.overloaded) { try await late.value }
        let didRun = meter.ran.load(ordering: .relaxed)
        #expect(!didRun)
        #expect(pool.statistics.admitted == 0)
        // Within the wait, work runs.
        #expect(try await pool.run(limits) { 7 } == 7)
    }

    @Test func anAdmissionGivesItsPlaceBackWhenReleasedOrDropped() async throws {
        let pool = WorkPool(label: "test.release", workers: 1)
        let limits = WorkPool.Limits(queue: 0, maxWaitMilliseconds: 60_000)
        let first = try pool.admit(limits)
        #expect(throws: BrokerError.overloaded) { _ = try pool.admit(limits) }
        first.release()
        first.release()  // idempotent
        #expect(pool.statistics.admitted == 0)
        await #expect(throws: BrokerError.self) { try await first.run { 1 } }  // a released place runs nothing
        do { _ = try pool.admit(limits) }  // dropped at the end of the scope
        #expect(pool.statistics.admitted == 0)
        #expect(try await pool.run(limits) { 2 } == 2)
    }

    @Test func passwordHashingRunsOnThePool() async throws {
        let pool = WorkPool(label: "test.hash", workers: 2)
        let hasher = try PasswordHasher(parameters: .testing, pool: pool)
        let phc = try await hasher.hashOffPool("correct horse", limits: Self.roomy)
        #expect(phc.hasPrefix("$argon2id$"))
        #expect(try await hasher.verifyOffPool("correct horse", against: phc, admission: pool.admit(Self.roomy)))
        #expect(!(try await hasher.verifyOffPool("wrong horse", against: phc, admission: pool.admit(Self.roomy))))
        let malformed = try await hasher.verifyOffPool("x", against: "not a phc", admission: pool.admit(Self.roomy))
        #expect(!malformed)
        #expect(pool.statistics.peakRunning >= 1 && pool.statistics.admitted == 0)
    }
}
