public import Foundation
import StagepassJOSE

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A `stagepass serve` process that uses a key store directory, as it announced itself there.
public struct RunningBroker: Sendable, Hashable {
    /// The broker's process id.
    public var pid: Int32
    /// A loopback base URL where the broker answers (its JWKS is `<url>/.well-known/jwks.json`).
    public var url: String
}

/// How a running broker tells the key commands that it uses a key store, so `stagepass keys rotate|import|compromise`
/// can wait until that broker publishes the change (Keys/README.md "A running broker").
///
/// Each broker writes `<keys>/.broker-<pid>.json` (`{"pid":…,"url":…}`, mode 0600) when it starts and removes it
/// when it stops. A note whose process is gone (e.g. killed) is ignored and removed by the next reader. The note carries
/// no secret: only where the public JWKS is served.
public enum RunningBrokers {
    static let prefix = ".broker-"
    static let suffix = ".json"

    /// Announces this process as a broker of the key store at `directory`, reachable at `url`.
    /// - Returns: the note's path, for ``withdraw(_:)``.
    /// - Throws: ``SecretFileError`` when the note cannot be written.
    @discardableResult
    public static func announce(directory: String, url: String, pid: Int32 = getpid()) throws -> String {
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw SecretFileError.ioFailure("cannot create \(directory): \(SecretFile.errnoText())")
        }
        let path = "\(directory)/\(prefix)\(pid)\(suffix)"
        let body = JSONValue.object(["pid": .int(Int64(pid)), "url": .string(url)]).serialized() + "\n"
        try SecretFile.write(Array(body.utf8), to: path)
        return path
    }

    /// Removes a note written by ``announce(directory:url:pid:)``.
    public static func withdraw(_ path: String) { _ = unlink(path) }

    /// The brokers whose process is alive and that announced themselves in `directory`; notes of dead processes are
    /// removed.
    public static func list(directory: String) -> [RunningBroker] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        var out: [RunningBroker] = []
        for name in names.sorted() where name.hasPrefix(prefix) && name.hasSuffix(suffix) {
            let path = "\(directory)/\(name)"
            guard let bytes = try? SecretFile.read(path), let v = try? JSONValue.parse(bytes),
                let pid = v["pid"]?.intValue.map(Int32.init(truncatingIfNeeded:)), pid > 0,
                let url = v["url"]?.stringValue
            else { continue }
            // kill(pid, 0): ESRCH means the process is gone; EPERM means it lives under another user.
            if kill(pid, 0) != 0 && errno == ESRCH {
                _ = unlink(path)
                continue
            }
            out.append(RunningBroker(pid: pid, url: url))
        }
        return out
    }

    /// A loopback URL for a server listening on `host:port` (a wildcard address is reached on loopback).
    public static func loopbackURL(host: String, port: Int) -> String {
        switch host {
        case "0.0.0.0", "": return "http://127.0.0.1:\(port)"
        case "::", "[::]": return "http://[::1]:\(port)"
        default:
            let bare = host.contains(":") && !host.hasPrefix("[")
            return bare ? "http://[\(host)]:\(port)" : "http://\(host):\(port)"
        }
    }
}
