/// Storage of the hash-chained audit log (see ``HashChainAuditLog``). Appends are serialised: each record chains to
/// the one committed before it, whatever the number of concurrent writers.
public protocol AuditStore: Sendable {
    // MARK: audit
    /// Appends one record in a transaction: `chain` receives the previous record (nil for the first) and builds
    /// the new one. Records are never updated or deleted through this protocol.
    func appendAudit(
        time: Int64,
        event: String,
        chain: @escaping @Sendable (AuditRow?) throws -> AuditRow
    ) async throws -> AuditRow
    func auditRows(after seq: Int64, limit: Int) async throws -> [AuditRow]
    /// ``appendAudit(time:event:chain:)`` blocking the calling thread: for the key store's records only (see
    /// ``AuditSink/recordBlocking(_:)``), never called on the cooperative pool.
    func appendAuditBlocking(time: Int64, event: String, chain: (AuditRow?) throws -> AuditRow) throws -> AuditRow
    /// The canonical JSON of every record whose action starts with `prefix` (ASCII letters and dots), in chain
    /// order, blocking the calling thread: the key store reads its history with it (``AuditSink/keyEvents()``).
    func auditEventsBlocking(withActionPrefix prefix: String) throws -> [String]
}
