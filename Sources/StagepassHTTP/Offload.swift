import StagepassBroker

/// Runs synchronous broker work — SQLite reads and writes, password and factor checks — on the broker's storage
/// lanes (``BrokerExecutor/storage``, threads of their own) and resumes with its result, so a handler never blocks a
/// thread of Swift's cooperative pool (one thread per core). The work is not cancelled with the task: it is short
/// and runs to its end, as a committed write must.
/// - Throws: whatever `work` throws, unchanged.
func offload<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await BrokerExecutor.storage.run(work)
}
