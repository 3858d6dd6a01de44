import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A real PostgreSQL server (Debian's `postgresql` package, `/usr/lib/postgresql/15/bin`) for the tests: one cluster
/// per test process, started on first use, each test in a database of its own (``createDatabase()``).
///
/// The cluster lives in a fresh temporary directory owned by the `postgres` user (initdb refuses root, so as root
/// every server command runs through `runuser -u postgres --`). It listens on 127.0.0.1 on a free port and on a
/// socket in that directory, with `trust` authentication (loopback only), `fsync=on`. A role `stagepass` (LOGIN,
/// CREATEDB) owns the test databases. When the process exits the cluster is stopped by PID (`pg_ctl stop -m
/// immediate`, then SIGKILL) and its directory removed.
final class PostgresCluster: Sendable {
    static let binDirectory = ProcessInfo.processInfo.environment["STAGEPASS_PG_BIN"] ?? "/usr/lib/postgresql/15/bin"

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    let directory: String
    let port: Int
    let socketDirectory: String
    let pid: Int32

    private static let started = Mutex<PostgresCluster?>(nil)
    private static let startResult: Result<PostgresCluster, Failure> = {
        do {
            let cluster = try PostgresCluster.start()
            started.withLock { $0 = cluster }
            atexit { PostgresCluster.stopStarted() }
            return .success(cluster)
        } catch let f as Failure {
            return .failure(f)
        } catch {
            return .failure(Failure(description: "\(error)"))
        }
    }()

    /// The process's cluster, started on first use.
    static func shared() throws -> PostgresCluster { try startResult.get() }

    private init(directory: String, port: Int, socketDirectory: String, pid: Int32) {
        self.directory = directory
        self.port = port
        self.socketDirectory = socketDirectory
        self.pid = pid
    }

    /// A new empty database owned by `stagepass`; returns its URL.
    func createDatabase() throws -> String {
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        try psql("CREATE DATABASE \(name) OWNER stagepass")
        return url(database: name)
    }

    func url(database: String) -> String { "postgres://stagepass@127.0.0.1:\(port)/\(database)" }

    /// Runs one SQL statement as the superuser (`postgres`) in `database`.
    func psql(_ sql: String, database: String = "postgres") throws {
        try Self.run(
            Self.binDirectory + "/psql",
            [
                "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d",
                database, "-c", sql,
            ]
        )
    }

    private static var isRoot: Bool { getuid() == 0 }

    /// A server command, as `postgres` when we are root.
    private static func server(_ tool: String, _ args: [String]) throws {
        if isRoot {
            try run("/usr/sbin/runuser", ["-u", "postgres", "--", binDirectory + "/" + tool] + args)
        } else {
            try run(binDirectory + "/" + tool, args)
        }
    }

    private static func start() throws -> PostgresCluster {
        guard FileManager.default.isExecutableFile(atPath: binDirectory + "/initdb") else {
            throw Failure(description: "no PostgreSQL server in \(binDirectory) (make deps installs postgresql)")
        }
        var template = Array((NSTemporaryDirectory() + "/sp-pg-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw Failure(description: "mkdtemp failed") }
        let dir = String(cString: made)
        let data = dir + "/data"
        let sockets = dir + "/sock"
        try FileManager.default.createDirectory(atPath: sockets, withIntermediateDirectories: true)
        if isRoot { try run("/bin/chown", ["-R", "postgres:postgres", dir]) }
        try server(
            "initdb",
            ["-D", data, "--auth=trust", "--username=postgres", "--encoding=UTF8", "--locale=C", "--no-sync"]
        )
        var lastError: (any Error)?
        for _ in 0..<3 {
            let port = try freePort()
            do {
                try server(
                    "pg_ctl",
                    [
                        "-D", data, "-l", dir + "/server.log", "-w", "-t", "60", "-o",
                        "-k \(sockets) -p \(port) -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200",
                        "start",
                    ]
                )
                let pidLine = try String(contentsOfFile: data + "/postmaster.pid", encoding: .utf8)
                    .split(separator: "\n").first.map(String.init)
                guard let pidLine, let pid = Int32(pidLine) else {
                    throw Failure(description: "no postmaster.pid")
                }
                let cluster = PostgresCluster(directory: dir, port: port, socketDirectory: sockets, pid: pid)
                try cluster.psql("CREATE ROLE stagepass LOGIN CREATEDB")
                return cluster
            } catch {
                lastError = error
            }
        }
        throw Failure(description: "cannot start PostgreSQL: \(lastError.map { "\($0)" } ?? "?")")
    }

    private static func stopStarted() {
        started.withLock { cluster in
            cluster?.stop()
            cluster = nil
        }
    }

    /// Stops the server (immediate mode, SIGKILL if it is still there) and removes its directory.
    func stop() {
        try? Self.server("pg_ctl", ["-D", directory + "/data", "-m", "immediate", "-w", "-t", "10", "stop"])
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago.
    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket failed") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Bool in
                bind(fd, p, len) == 0 && getsockname(fd, p, &len) == 0
            }
        }
        guard bound else { throw Failure(description: "bind failed") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Runs `executable` with `args` to completion (posix_spawn + waitpid: Foundation's `Process.waitUntilExit` can
    /// hang when called from a static initialiser), its output captured in a temporary file.
    @discardableResult
    static func run(_ executable: String, _ args: [String]) throws -> String {
        let output = NSTemporaryDirectory() + "/sp-pg-out-\(UUID().uuidString)"
        defer { unlink(output) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ([executable] + args).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard spawned == 0 else { throw Failure(description: "cannot run \(executable): errno \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        // WIFEXITED && WEXITSTATUS == 0
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            throw Failure(description: "\(executable) \(args.joined(separator: " ")) failed (\(status)): \(text)")
        }
        return text
    }
}
