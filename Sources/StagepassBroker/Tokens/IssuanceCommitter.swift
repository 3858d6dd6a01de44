import Dispatch
import Synchronization

/// Group commit of issued tokens: concurrent issuances hand their ledger row and `token.issue` audit record to
/// ``commit(_:)`` and suspend; one writer task takes everything waiting (at most ``maxBatch``),
/// writes it with ONE ``TokenStore/insertTokens(_:)`` transaction (one commit, one fsync) and resumes each waiter
/// with its own result: its row (with its `seq`) or its error. A waiter is resumed only after the transaction that
/// holds its row and audit record committed, so the caller signs and returns the token only then (invariant I12 of
/// Specs/threat-model.md).
///
/// There is no timer: while one batch commits, the next one gathers; with a single waiter a batch holds one token and
/// commits at once. The audit records of a batch chain in the order the waiters arrived.
///
/// ```swift
/// let committer = IssuanceCommitter(store: store)
/// let record = try await committer.commit(PendingToken(token: row, audit: entry, claimRequest: nil))
/// ```
public final class IssuanceCommitter: Sendable {
    /// Figures of the commits so far (tests, `/metrics`).
    public struct Stats: Sendable, Hashable {
        /// Write transactions run (successful or not).
        public var commits = 0
        /// Items handed to those transactions.
        public var items = 0
        /// The largest batch.
        public var largestBatch = 0
        /// Transactions that failed as a whole (every waiter of the batch got the error).
        public var failedCommits = 0
    }

    /// The default cap on one batch.
    public static let defaultMaxBatch = 256

    /// The batched write (``TokenStore/insertTokens(_:)`` of the store).
    let write: @Sendable ([PendingToken]) async throws -> [Result<TokenRecord, StoreError>]
    /// At most this many items in one transaction.
    public let maxBatch: Int

    private struct Waiter: Sendable {
        var item: PendingToken
        var continuation: CheckedContinuation<TokenRecord, any Error>
    }

    private struct State: Sendable {
        var pending: [Waiter] = []
        /// Whether the writer is draining `pending` (a new waiter then only appends).
        var running = false
        /// Tests only: while set, the writer does not start (waiters gather).
        var held = false
        var stats = Stats()
        var observer: (@Sendable (Int) -> Void)?
    }

    private let state = Mutex(State())

    /// - Parameters:
    ///   - store: Where the tokens are written.
    ///   - maxBatch: The cap on one transaction (at least 1).
    public convenience init(store: any TokenStore, maxBatch: Int = IssuanceCommitter.defaultMaxBatch) async {
        self.init(maxBatch: maxBatch) { batch in try await store.insertTokens(batch) }
    }

    /// A committer over any batched write (tests give one that fails).
    init(
        maxBatch: Int,
        write: @escaping @Sendable ([PendingToken]) async throws -> [Result<TokenRecord, StoreError>]
    ) {
        self.write = write
        self.maxBatch = max(1, maxBatch)
    }

    /// Writes `item` with whatever else is waiting and returns its row (with `seq`) once the transaction committed.
    /// - Throws: the item's own ``StoreError`` (e.g. `conflict`: its request is no longer `approved`), or the error
    ///   of the whole transaction (e.g. ``StorageFault``; nothing of the batch was written).
    public func commit(_ item: PendingToken) async throws -> TokenRecord {
        try await withCheckedThrowingContinuation { continuation in
            let start = state.withLock { s -> Bool in
                s.pending.append(Waiter(item: item, continuation: continuation))
                guard !s.running, !s.held else { return false }
                s.running = true
                return true
            }
            if start { Task { await self.drain() } }
        }
    }

    /// Commits and resumes batches until nothing waits.
    private func drain() async {
        while true {
            let batch: [Waiter] = state.withLock { s in
                guard !s.pending.isEmpty, !s.held else {
                    s.running = false
                    return []
                }
                let n = min(s.pending.count, maxBatch)
                let b = Array(s.pending.prefix(n))
                s.pending.removeFirst(n)
                return b
            }
            guard !batch.isEmpty else { return }
            let outcome: Result<[Result<TokenRecord, StoreError>], any Error>
            do { outcome = .success(try await write(batch.map(\.item))) } catch { outcome = .failure(error) }
            let observer = state.withLock { s in
                s.stats.commits += 1
                s.stats.items += batch.count
                s.stats.largestBatch = max(s.stats.largestBatch, batch.count)
                if case .failure = outcome { s.stats.failedCommits += 1 }
                return s.observer
            }
            switch outcome {
            case .success(let results):
                for (i, w) in batch.enumerated() {
                    if i < results.count {
                        w.continuation.resume(with: results[i].mapError { $0 as any Error })
                    } else {
                        w.continuation.resume(throwing: StoreError.backend("the ledger write returned no result"))
                    }
                }
            case .failure(let error):
                for w in batch { w.continuation.resume(throwing: error) }
            }
            observer?(batch.count)
        }
    }

    /// The figures so far.
    public var stats: Stats { state.withLock { $0.stats } }

    /// Calls `observer` with the size of every batch after it was written (the `stagepass_issuance_batch_size`
    /// histogram). Replaces any earlier observer.
    public func observeBatches(_ observer: @escaping @Sendable (Int) -> Void) {
        state.withLock { $0.observer = observer }
    }

    // MARK: tests

    /// Items waiting for the writer.
    var pendingCount: Int { state.withLock { $0.pending.count } }

    /// Keeps the writer from starting a batch, so that waiters gather (tests make batches of a known size with it).
    func hold() { state.withLock { $0.held = true } }

    /// Lets the writer run again and starts it if items wait.
    func release() {
        let start = state.withLock { s -> Bool in
            s.held = false
            guard !s.running, !s.pending.isEmpty else { return false }
            s.running = true
            return true
        }
        if start { Task { await self.drain() } }
    }
}
