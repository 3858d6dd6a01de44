/// Storage of the hash-chained audit log (see ``HashChainAuditLog``). Appends are serialised: each record chains to
/// the one committed before it, whatever the number of concurrent writers.
public protocol AuditStore: Sendable {
    // MARK: audit
    /// Appends one record in a transaction: `chain` receives the previous record (nil for the first) and builds
    /// the new one. Records are never updated or deleted through this protocol.
    func appendAudit(time: Int64, event: String, chain: (AuditRow?) throws -> AuditRow) throws -> AuditRow
    func auditRows(after seq: Int64, limit: Int) throws -> [AuditRow]
}
