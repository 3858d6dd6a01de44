import Dispatch

/// Runs synchronous broker work — SQLite reads and writes, password and factor checks, key generation — on a
/// Dispatch worker thread and resumes with its result, so a handler never blocks a thread of Swift's cooperative
/// pool (which has one thread per core). The work is not cancelled with the task: it is short and runs to its end,
/// as a committed write must.
/// - Throws: whatever `work` throws, unchanged.
func offload<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global(qos: .userInitiated).async { continuation.resume(with: Result { try work() }) }
    }
}
