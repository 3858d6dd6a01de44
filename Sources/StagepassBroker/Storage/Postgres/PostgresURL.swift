public import Foundation

/// A PostgreSQL connection URL, as `stagepass serve --database` takes it:
///
/// - `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (TCP; `postgresql://` is accepted too);
/// - `postgres://USER@/DATABASE?host=/run/postgresql` (a Unix socket directory; the socket is
///   `DIR/.s.PGSQL.PORT`, port 5432 unless given).
///
/// Query parameters: `host` (a socket directory), `sslmode` (`disable`, `prefer` or `require`; default `disable` on
/// loopback addresses and sockets, `prefer` elsewhere). Without a password in the URL, `PGPASSWORD` is used if set.
/// ``redacted`` (also ``description``) never shows the password.
public struct PostgresURL: Sendable, Hashable, CustomStringConvertible {
    public enum TLSMode: String, Sendable, Hashable {
        case disable, prefer, require
    }

    /// Where the server listens.
    public enum Endpoint: Sendable, Hashable {
        case tcp(host: String, port: Int)
        /// The socket file itself (`DIR/.s.PGSQL.PORT`).
        case socket(path: String)
    }

    public var endpoint: Endpoint
    public var user: String
    public var password: String?
    public var database: String
    public var tls: TLSMode

    /// Why a URL was refused (the message never contains the password).
    public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        public let description: String
    }

    /// - Parameter environment: read for `PGPASSWORD` when the URL carries no password.
    /// - Throws: ``ParseError``.
    public init(_ string: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard let c = URLComponents(string: string), let scheme = c.scheme?.lowercased(),
            scheme == "postgres" || scheme == "postgresql"
        else {
            throw ParseError(description: "a database URL looks like postgres://USER@HOST:PORT/DATABASE")
        }
        guard let user = c.user, !user.isEmpty else {
            throw ParseError(description: "the database URL names no user (postgres://USER@HOST/DATABASE)")
        }
        let path = c.path.hasPrefix("/") ? String(c.path.dropFirst()) : c.path
        guard !path.isEmpty, !path.contains("/") else {
            throw ParseError(description: "the database URL names no database (postgres://USER@HOST/DATABASE)")
        }
        var query: [String: String] = [:]
        for item in c.queryItems ?? [] { query[item.name] = item.value ?? "" }
        for name in query.keys where !["host", "sslmode"].contains(name) {
            throw ParseError(description: "unknown database URL parameter '\(name)' (known: host, sslmode)")
        }
        let port = c.port ?? 5432
        guard (1...65535).contains(port) else { throw ParseError(description: "database port out of range") }
        let local: Bool
        if let dir = query["host"], !dir.isEmpty {
            guard dir.hasPrefix("/") else {
                throw ParseError(description: "host= must be an absolute socket directory")
            }
            endpoint = .socket(path: (dir as NSString).appendingPathComponent(".s.PGSQL.\(port)"))
            local = true
        } else {
            guard let host = c.host, !host.isEmpty else {
                throw ParseError(description: "the database URL names no host (or ?host=/socket/dir)")
            }
            endpoint = .tcp(host: host, port: port)
            local = ["127.0.0.1", "::1", "localhost"].contains(host) || host.hasPrefix("127.")
        }
        if let mode = query["sslmode"] {
            guard let t = TLSMode(rawValue: mode) else {
                throw ParseError(description: "sslmode must be disable, prefer or require")
            }
            tls = t
        } else {
            tls = local ? .disable : .prefer
        }
        self.user = user
        self.password = c.password ?? environment["PGPASSWORD"]
        self.database = path
    }

    /// The URL without its password, for logs.
    public var redacted: String {
        let auth = user + (password == nil ? "" : ":***")
        switch endpoint {
        case .tcp(let host, let port):
            let h = host.contains(":") ? "[\(host)]" : host
            return "postgres://\(auth)@\(h):\(port)/\(database)?sslmode=\(tls.rawValue)"
        case .socket(let path):
            return "postgres://\(auth)@/\(database)?socket=\(path)"
        }
    }

    public var description: String { redacted }
}

/// The PostgreSQL store for a `postgres://` URL (``HumanBroker/open(dataDirectory:database:policy:policies:webAuthn:clock:hasherParameters:environment:)``).
/// A function of its own so that builds of the broker without the PostgreSQL backend (the fuzz targets) replace it.
func openPostgresStore(_ url: String, environment: [String: String]) throws -> any BrokerStore {
    try PostgresStore(url: try PostgresURL(url, environment: environment))
}
