import Foundation
import GRDB

extension SQLiteStore {
    /// The canonical JSON of every audit event whose action starts with `prefix` (ASCII letters and dots only), in
    /// chain order, blocking the calling thread (``AuditStore/auditEventsBlocking(withActionPrefix:)``). Canonical
    /// events sort their keys, so `action` is the first member: the filter is a prefix match that SQLite runs
    /// without decoding the rows in Swift.
    public func auditEventsBlocking(withActionPrefix prefix: String) throws -> [String] {
        let pattern = "{\"action\":\"\(prefix)%"
        return try db.readBlocking { db in
            try String.fetchAll(
                db,
                sql: "SELECT event FROM audit_log WHERE event LIKE ? ESCAPE '\\' ORDER BY seq",
                arguments: [pattern.replacingOccurrences(of: "_", with: "\\_")]
            )
        }
    }
}
