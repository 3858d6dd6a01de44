import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ServiceLifecycle

/// The broker's HTTP/1.1 child channel: Hummingbird's `HTTP1Channel` behind the connection caps and with the
/// per-connection deadlines of ``ConnectionTimeouts``.
///
/// A connection over a cap is closed right after accept, before anything is read from it: the client sees the
/// connection close (or reset) with no response. An admitted connection gets ``ConnectionBytesHandler`` first in its
/// pipeline and ``RequestDeadlineHandler`` after the HTTP codec; Hummingbird's own idle timer is left off.
struct GuardedHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value

    /// Why a connection's setup failed: it was over a cap (and is closed already).
    struct Refused: Error {}

    let responder: HTTPChannelHandler.Responder
    let timeouts: ConnectionTimeouts
    let registry: ConnectionRegistry

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        guard registry.admit(channel) else {
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(Refused())
        }
        // Runs on the connection's event loop (the bootstrap submits it there), before the channel is registered.
        let deadline = NIOLoopBound(ConnectionDeadline(timeouts: timeouts), eventLoop: channel.eventLoop)
        do {
            try channel.pipeline.syncOperations.addHandler(ConnectionBytesHandler(deadline: deadline.value))
        } catch {
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(error)
        }
        let http = HTTP1Channel(
            responder: responder,
            configuration: .init(additionalChannelHandlers: [RequestDeadlineHandler(deadline: deadline.value)])
        )
        return http.setup(channel: channel, logger: logger)
    }

    func handle(value: Value, logger: Logger) async {
        await HTTP1Channel(responder: responder).handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 behind the connection caps of `registry`, with the deadlines of `timeouts`.
    static func guardedHTTP1(timeouts: ConnectionTimeouts, registry: ConnectionRegistry) -> HTTPServerBuilder {
        .init { responder in GuardedHTTP1Channel(responder: responder, timeouts: timeouts, registry: registry) }
    }
}

/// Runs the HTTP application and bounds its graceful shutdown: on SIGTERM/SIGINT the server stops accepting and closes
/// idle connections at once; requests in flight get `drainTimeout` to finish, then every connection still open is
/// closed. Logs what the drain cut off when the server has stopped.
struct DrainingHTTPService<App: ApplicationProtocol>: Service {
    let app: App
    let registry: ConnectionRegistry
    let drainTimeout: Duration
    let logger: Logger

    func run() async throws {
        let (registry, drainTimeout, logger) = (self.registry, self.drainTimeout, self.logger)
        try await withThrowingTaskGroup(of: Bool.self) { group in
            // true: the server has stopped (every connection closed); false: the drain watch ended.
            group.addTask {
                try await app.run()
                return true
            }
            group.addTask {
                do {
                    try await gracefulShutdown()
                    logger.notice(
                        "shutting down: no new connections; \(registry.openCount) open connection(s) get up to \(drainTimeout) to finish their requests"
                    )
                    try await Task.sleep(for: drainTimeout)
                } catch {
                    return false  // cancelled: the server stopped first
                }
                let closed = registry.closeAll()
                if closed > 0 {
                    logger.warning("drain time \(drainTimeout) is up: closing \(closed) connection(s) forcibly")
                }
                return false
            }
            while let serverStopped = try await group.next() {
                if serverStopped {
                    group.cancelAll()
                    break
                }
            }
        }
        logger.notice(
            "HTTP server stopped: \(registry.forciblyClosed) connection(s) closed forcibly (requests cut off), \(registry.refusedTotal) connection(s) refused over the caps while running"
        )
    }
}
