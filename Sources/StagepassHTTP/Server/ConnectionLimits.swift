import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// How the server treats connections: their deadlines, how many it holds at once (per client address and in total),
/// and how long shutdown lets requests in flight finish. `stagepass serve` sets them from its flags.
public struct ConnectionLimits: Sendable, Equatable {
    public var timeouts: ConnectionTimeouts
    /// Connections held at once, all clients together (before the open-file limit caps it, see ``effectiveMaxConnections(openFiles:)``).
    public var maxConnections: Int
    /// Connections held at once from one client address.
    public var maxConnectionsPerAddress: Int
    /// How long requests in flight may still finish after SIGTERM/SIGINT before their connections are closed.
    public var drainTimeout: Duration

    /// File descriptors kept free for everything that is not a connection (database, key store, event loops, logs).
    public static let openFileHeadroom = 128
    /// Accepted ranges, in seconds (timeouts) and counts; outside them `stagepass serve` reports a usage error.
    public static let headerTimeoutRange = 0.001...600.0
    public static let bodyTimeoutRange = 0.001...3600.0
    public static let idleTimeoutRange = 0.001...3600.0
    public static let drainTimeoutRange = 0.0...600.0
    public static let connectionsRange = 1...1_000_000

    public init(
        timeouts: ConnectionTimeouts = .init(),
        maxConnections: Int = 4096,
        maxConnectionsPerAddress: Int = 256,
        drainTimeout: Duration = .seconds(10)
    ) {
        self.timeouts = timeouts
        self.maxConnections = maxConnections
        self.maxConnectionsPerAddress = maxConnectionsPerAddress
        self.drainTimeout = drainTimeout
    }

    /// The total cap in force under an open-file limit: never more connections than descriptors left after the
    /// headroom, so `accept` never fails for want of one (and the listener never spins on EMFILE).
    public func effectiveMaxConnections(openFiles: UInt64) -> Int {
        let available = openFiles > UInt64(Int.max) ? Int.max : Int(openFiles)
        return max(1, min(maxConnections, available - Self.openFileHeadroom))
    }
}

/// Every connection the server holds: admits a new one only under both caps, and closes the rest when shutdown's
/// drain time is up. A lock rather than an actor: a connection is admitted synchronously, in its channel initializer
/// on its event loop, and released from its close callback there.
final class ConnectionRegistry: Sendable {
    private struct State {
        var open: [ObjectIdentifier: any Channel] = [:]
        var perAddress: [String: Int] = [:]
        var refusedTotal = 0
        var refusedSinceLog = 0
        var refusedByAddressSinceLog = 0
        var lastRefusalLog: NIODeadline?
        var forciblyClosed = 0
    }

    let maxConnections: Int
    let maxPerAddress: Int
    let logger: Logger
    /// At most one refusal log line per this interval, carrying the count since the previous one.
    let refusalLogInterval: TimeAmount
    private let state = NIOLockedValueBox(State())

    init(maxConnections: Int, maxPerAddress: Int, logger: Logger, refusalLogInterval: TimeAmount = .seconds(10)) {
        self.maxConnections = maxConnections
        self.maxPerAddress = maxPerAddress
        self.logger = logger
        self.refusalLogInterval = refusalLogInterval
    }

    /// The key a client is counted under: its IP address (any port); a Unix socket peer counts as one client.
    static func clientKey(_ address: SocketAddress?) -> String { address?.ipAddress ?? "local" }

    /// Admits `channel` if both caps allow it, and releases it when it closes. False: the caller closes it at once.
    func admit(_ channel: any Channel) -> Bool {
        let key = Self.clientKey(channel.remoteAddress)
        let id = ObjectIdentifier(channel)
        let now = NIODeadline.now()
        let (admitted, report) = state.withLockedValue { s -> (Bool, (Int, Int)?) in
            let fromAddress = s.perAddress[key, default: 0]
            if s.open.count < maxConnections, fromAddress < maxPerAddress {
                s.open[id] = channel
                s.perAddress[key] = fromAddress + 1
                return (true, nil)
            }
            s.refusedTotal += 1
            s.refusedSinceLog += 1
            if fromAddress >= maxPerAddress { s.refusedByAddressSinceLog += 1 }
            guard s.lastRefusalLog.map({ now - $0 >= refusalLogInterval }) ?? true else { return (false, nil) }
            s.lastRefusalLog = now
            defer { (s.refusedSinceLog, s.refusedByAddressSinceLog) = (0, 0) }
            return (false, (s.refusedSinceLog, s.refusedByAddressSinceLog))
        }
        if let (count, byAddress) = report {
            logger.warning(
                "refused \(count) connection(s) over the connection caps (\(byAddress) over the per-address cap \(maxPerAddress), the rest over the total cap \(maxConnections)); at most one such line every \(refusalLogInterval.nanoseconds / 1_000_000_000) s"
            )
        }
        guard admitted else { return false }
        channel.closeFuture.whenComplete { [self] _ in release(id, key: key) }
        return true
    }

    private func release(_ id: ObjectIdentifier, key: String) {
        state.withLockedValue { s in
            guard s.open.removeValue(forKey: id) != nil else { return }
            let left = s.perAddress[key, default: 1] - 1
            s.perAddress[key] = left > 0 ? left : nil
        }
    }

    var openCount: Int { state.withLockedValue { $0.open.count } }
    var refusedTotal: Int { state.withLockedValue { $0.refusedTotal } }
    var forciblyClosed: Int { state.withLockedValue { $0.forciblyClosed } }
    func openCount(from address: SocketAddress?) -> Int {
        state.withLockedValue { $0.perAddress[Self.clientKey(address), default: 0] }
    }

    /// Closes every connection still open (shutdown's drain time is up); returns how many it closed.
    @discardableResult
    func closeAll() -> Int {
        let channels = state.withLockedValue { s -> [any Channel] in
            let all = Array(s.open.values)
            s.forciblyClosed += all.count
            return all
        }
        for channel in channels { channel.close(promise: nil) }
        return channels.count
    }
}
