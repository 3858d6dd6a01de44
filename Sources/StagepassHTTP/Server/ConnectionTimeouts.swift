import Hummingbird
import NIOCore
import NIOHTTPTypes

/// The three per-connection deadlines: how long a client may take to send a request head once it started (or, on a
/// new connection, to start at all), to send a request body, and to send nothing between two requests.
public struct ConnectionTimeouts: Sendable, Equatable {
    public var header: Duration
    public var body: Duration
    public var idle: Duration

    public init(header: Duration = .seconds(10), body: Duration = .seconds(30), idle: Duration = .seconds(60)) {
        self.header = header
        self.body = body
        self.idle = idle
    }
}

/// Where a connection is in its request cycle, and which deadline runs. Pure state: the handlers below apply its
/// answers to the channel.
///
/// - a new connection waits for its first request head: the header deadline runs from accept;
/// - between requests (after a response) the idle deadline runs until the first byte of the next request, then the
///   header deadline runs until its head is complete;
/// - once a head arrived the body deadline runs until the request's end;
/// - while the broker answers no deadline runs (shutdown's drain bounds that).
struct ConnectionClock: Equatable {
    enum Phase: Equatable { case new, idle, readingHead, readingBody, responding }
    /// What runs after an event: arm a deadline of this length (replacing any), cancel it, or leave it.
    enum Timer: Equatable {
        case arm(Duration)
        case cancel
        case keep
    }
    /// What to do when the running deadline passes.
    enum Expiry: Equatable {
        /// A request was partly read and not answered: answer 408, then close.
        case requestTimeout
        /// Nothing of a request was read (or the answer had begun): close.
        case close
    }

    let timeouts: ConnectionTimeouts
    private(set) var phase = Phase.new
    /// Bytes of a next request arrived while the broker was still answering the previous one (pipelining).
    private var bytesWhileResponding = false
    /// The response to the request being read has begun (the broker may answer before reading the whole body).
    private var responseStarted = false

    init(timeouts: ConnectionTimeouts) { self.timeouts = timeouts }

    mutating func activated() -> Timer {
        phase = .new
        return .arm(timeouts.header)
    }

    mutating func bytesArrived() -> Timer {
        switch phase {
        case .idle:
            phase = .readingHead
            return .arm(timeouts.header)
        case .responding:
            bytesWhileResponding = true
            return .keep
        case .new:
            phase = .readingHead
            return .keep  // the header deadline already runs from accept
        case .readingHead, .readingBody:
            return .keep
        }
    }

    mutating func headReceived() -> Timer {
        phase = .readingBody
        responseStarted = false
        return .arm(timeouts.body)
    }

    mutating func endReceived() -> Timer {
        phase = .responding
        bytesWhileResponding = false
        return .cancel
    }

    mutating func responseHeadWritten() { responseStarted = true }

    mutating func responseEndWritten() -> Timer {
        guard phase == .responding else { return .keep }  // answered before the body ended: the body deadline stays
        if bytesWhileResponding {
            phase = .readingHead
            return .arm(timeouts.header)
        }
        phase = .idle
        return .arm(timeouts.idle)
    }

    func expired() -> Expiry {
        switch phase {
        case .readingHead: return .requestTimeout
        case .readingBody: return responseStarted ? .close : .requestTimeout
        case .new, .idle, .responding: return .close
        }
    }
}

/// One connection's deadline, shared by its two handlers on the channel's event loop: the raw-bytes handler (which
/// sees the first byte of a request and can write a 408 below the HTTP codec) and the request-part handler (which
/// sees heads, ends and responses).
final class ConnectionDeadline {
    private(set) var clock: ConnectionClock
    private var scheduled: Scheduled<Void>?
    /// The raw-bytes handler's context: a 408 is written from there, as bytes, whatever the codec's state.
    var rawContext: ChannelHandlerContext?

    init(timeouts: ConnectionTimeouts) { clock = ConnectionClock(timeouts: timeouts) }

    func apply(_ timer: ConnectionClock.Timer) {
        switch timer {
        case .keep: return
        case .cancel:
            scheduled?.cancel()
            scheduled = nil
        case .arm(let length):
            scheduled?.cancel()
            guard let context = rawContext else { return }
            scheduled = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(length)) { [self] in
                self.fire()
            }
        }
    }

    func update(_ change: (inout ConnectionClock) -> ConnectionClock.Timer) { apply(change(&clock)) }

    private func fire() {
        scheduled = nil
        guard let context = rawContext, context.channel.isActive else { return }
        switch clock.expired() {
        case .close:
            context.close(promise: nil)
        case .requestTimeout:
            let answer = "HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
            context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: answer)), promise: nil)
            context.close(promise: nil)
        }
    }

    func stop() {
        scheduled?.cancel()
        scheduled = nil
        rawContext = nil
    }
}

/// First in the pipeline, before the HTTP decoder: starts the header deadline when the connection becomes active and
/// notices the first byte of each next request. Passes every byte on unchanged.
final class ConnectionBytesHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let deadline: ConnectionDeadline

    init(deadline: ConnectionDeadline) { self.deadline = deadline }

    func handlerAdded(context: ChannelHandlerContext) {
        deadline.rawContext = context
        if context.channel.isActive { deadline.update { $0.activated() } }
    }

    func handlerRemoved(context: ChannelHandlerContext) { deadline.stop() }

    func channelActive(context: ChannelHandlerContext) {
        deadline.update { $0.activated() }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline.apply(.cancel)
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if Self.unwrapInboundIn(data).readableBytes > 0 { deadline.update { $0.bytesArrived() } }
        context.fireChannelRead(data)
    }
}

/// After the HTTP codec: moves the deadline on with each request head, request end and finished response.
final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let deadline: ConnectionDeadline

    init(deadline: ConnectionDeadline) { self.deadline = deadline }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head: deadline.update { $0.headReceived() }
        case .end: deadline.update { $0.endReceived() }
        case .body: break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch Self.unwrapOutboundIn(data) {
        case .head(let head) where head.status.kind != .informational:
            deadline.update {
                $0.responseHeadWritten()
                return .keep
            }
        case .end: deadline.update { $0.responseEndWritten() }
        case .head, .body: break
        }
        context.write(data, promise: promise)
    }
}
