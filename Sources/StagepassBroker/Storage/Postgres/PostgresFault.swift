import PostgresNIO

/// Classifies PostgreSQL failures as ``StorageFault``s, in one place, as ``StorageFault/classify(_:readOnlyFileSystem:)``
/// does for SQLite: the same causes (and `unreachable`), so a front end answers 503 `storage_unavailable` with
/// `Retry-After` whichever backend failed. Everything else (a constraint, a syntax error) stays the broker's own bug.
///
/// SQLSTATE classes: <https://www.postgresql.org/docs/current/errcodes-appendix.html>
enum PostgresFault {
    /// The fault an error of PostgresNIO stands for, or nil when it is not a storage fault.
    static func classify(_ error: any Error) -> StorageFault? {
        switch error {
        case let f as StorageFault:
            return f
        case let e as PostgresTransactionError:
            guard let inner = e.closureError ?? e.beginError ?? e.commitError else { return nil }
            return classify(inner)
        case let e as PSQLError:
            if let state = e.serverInfo?[.sqlState] {
                return classify(sqlState: state).map { StorageFault($0, sqlState: state) }
            }
            switch e.code {
            case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed,
                .sslUnsupported, .failedToAddSSLHandler:
                return StorageFault(.unreachable, sqlState: "\(e.code)")
            default:
                return nil
            }
        default:
            // The pool's own error (module `_ConnectionPoolModule`, not importable): after repeated connection
            // failures it stops trying for a while ("circuit breaker tripped") and fails requests at once.
            if String(reflecting: type(of: error)).hasSuffix("ConnectionPoolError") {
                return StorageFault(.unreachable, sqlState: "pool")
            }
            return nil
        }
    }

    /// The cause a SQLSTATE stands for, or nil.
    static func classify(sqlState state: String) -> StorageFault.Cause? {
        switch state {
        case "53100": .diskFull  // disk_full
        case "25006": .readOnly  // read_only_sql_transaction (a hot standby, default_transaction_read_only)
        case "55P03", "40001", "40P01": .locked  // lock_not_available; serialization/deadlock after the retries
        case "XX001", "XX002": .corrupt  // data_corrupted, index_corrupted
        case "58030": .ioError  // io_error
        case "53300", "57P01", "57P02", "57P03", "57P05": .unreachable  // too many connections; shutting down/starting
        default:
            // Class 08: connection exception.
            state.hasPrefix("08") ? .unreachable : nil
        }
    }
}
