import Hummingbird
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
import Testing

@testable import StagepassHTTP

/// The connection deadlines and caps, on embedded channels with a manual event-loop clock.
@Suite struct ConnectionGuardTests {
    static let timeouts = ConnectionTimeouts(header: .seconds(10), body: .seconds(30), idle: .seconds(60))

    /// Drops raw bytes that passed the bytes handler, so request parts can be injected after it as a codec would.
    final class StandInCodec: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
    }

    /// A connected channel with both deadline handlers, and a function that delivers request parts after the codec.
    func connection() throws -> (EmbeddedChannel, (HTTPRequestPart) -> Void) {
        let channel = EmbeddedChannel()
        let deadline = ConnectionDeadline(timeouts: Self.timeouts)
        let codec = StandInCodec()
        try channel.pipeline.syncOperations.addHandler(ConnectionBytesHandler(deadline: deadline))
        try channel.pipeline.syncOperations.addHandler(codec)
        try channel.pipeline.syncOperations.addHandler(RequestDeadlineHandler(deadline: deadline))
        try channel.connect(to: SocketAddress(ipAddress: "192.0.2.1", port: 4000)).wait()
        let context = try channel.pipeline.syncOperations.context(handler: codec)
        return (channel, { context.fireChannelRead(NIOAny($0)) })
    }

    static let head = HTTPRequestPart.head(HTTPRequest(method: .post, scheme: "http", authority: "t", path: "/x"))
    static let ok = HTTPResponsePart.head(HTTPResponse(status: .ok))

    func bytes(_ channel: EmbeddedChannel, _ s: String) throws {
        try channel.writeInbound(channel.allocator.buffer(string: s))
    }

    func answer(_ channel: EmbeddedChannel) -> String? {
        (try? channel.readOutbound(as: ByteBuffer.self)).flatMap { $0 }.map { String(buffer: $0) }
    }

    @Test func aSilentConnectionIsClosedAfterTheHeaderTimeoutWithoutAnAnswer() throws {
        let (channel, _) = try connection()
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
        #expect(answer(channel) == nil)
    }

    @Test func aHalfSentHeadGets408AtTheHeaderTimeout() throws {
        let (channel, _) = try connection()
        try bytes(channel, "GET / HTTP/1.1\r\nHost: t\r\n")
        channel.embeddedEventLoop.advanceTime(by: .seconds(10))
        #expect(!channel.isActive)
        #expect(answer(channel)?.hasPrefix("HTTP/1.1 408 Request Timeout\r\n") == true)
    }

    @Test func aHalfSentBodyGets408AtTheBodyTimeoutCountedFromTheHead() throws {
        let (channel, deliver) = try connection()
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        try bytes(channel, "POST /x HTTP/1.1\r\n...")
        deliver(Self.head)
        // The head arrived in time: the header deadline no longer applies, the body one runs from here.
        channel.embeddedEventLoop.advanceTime(by: .seconds(29))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
        #expect(answer(channel)?.hasPrefix("HTTP/1.1 408") == true)
    }

    @Test func noDeadlineRunsWhileTheBrokerAnswersThenTheIdleOneRuns() throws {
        let (channel, deliver) = try connection()
        deliver(Self.head)
        deliver(.end(nil))
        channel.embeddedEventLoop.advanceTime(by: .seconds(600))
        #expect(channel.isActive)  // a slow answer is bounded by shutdown's drain, not by these deadlines
        try channel.writeOutbound(Self.ok)
        try channel.writeOutbound(HTTPResponsePart.end(nil))
        _ = try channel.readOutbound(as: HTTPResponsePart.self)
        _ = try channel.readOutbound(as: HTTPResponsePart.self)
        channel.embeddedEventLoop.advanceTime(by: .seconds(59))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
        #expect(answer(channel) == nil)  // idle: closed without an answer
    }

    @Test func theNextRequestsFirstByteStartsTheHeaderDeadline() throws {
        let (channel, deliver) = try connection()
        deliver(Self.head)
        deliver(.end(nil))
        try channel.writeOutbound(Self.ok)
        try channel.writeOutbound(HTTPResponsePart.end(nil))
        channel.embeddedEventLoop.advanceTime(by: .seconds(30))
        try bytes(channel, "GET")
        channel.embeddedEventLoop.advanceTime(by: .seconds(10))
        #expect(!channel.isActive)
    }

    @Test func anAnswerBegunBeforeTheBodyEndedIsNotFollowedBy408() {
        var clock = ConnectionClock(timeouts: Self.timeouts)
        _ = clock.activated()
        #expect(clock.headReceived() == .arm(.seconds(30)))
        #expect(clock.expired() == .requestTimeout)
        clock.responseHeadWritten()
        #expect(clock.responseEndWritten() == .keep)  // the body deadline stays
        #expect(clock.expired() == .close)
    }

    @Test func bytesOfAPipelinedRequestStartTheHeaderDeadlineAfterTheAnswer() {
        var clock = ConnectionClock(timeouts: Self.timeouts)
        _ = clock.activated()
        _ = clock.headReceived()
        #expect(clock.endReceived() == .cancel)
        #expect(clock.bytesArrived() == .keep)
        #expect(clock.responseEndWritten() == .arm(.seconds(10)))
        #expect(clock.phase == .readingHead)
    }

    // MARK: caps

    func client(_ ip: String) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.connect(to: SocketAddress(ipAddress: ip, port: 5000)).wait()
        return channel
    }

    @Test func theCapsRefuseByAddressAndInTotalAndAClosedConnectionFreesItsPlace() throws {
        let registry = ConnectionRegistry(maxConnections: 3, maxPerAddress: 2, logger: Logger(label: "test"))
        let a1 = try client("192.0.2.1")
        let a2 = try client("192.0.2.1")
        #expect(registry.admit(a1) && registry.admit(a2))
        #expect(!registry.admit(try client("192.0.2.1")))  // per address
        let b1 = try client("192.0.2.2")
        #expect(registry.admit(b1))
        #expect(!registry.admit(try client("192.0.2.3")))  // in total
        #expect(registry.openCount == 3 && registry.refusedTotal == 2)
        try a1.close().wait()
        a1.embeddedEventLoop.run()  // the close callbacks
        #expect(registry.openCount(from: try SocketAddress(ipAddress: "192.0.2.1", port: 1)) == 1)
        let c1 = try client("192.0.2.3")
        #expect(registry.admit(c1))
        #expect(registry.closeAll() == 3)
        for channel in [a2, b1, c1] { channel.embeddedEventLoop.run() }
        #expect(!a2.isActive && !b1.isActive && !c1.isActive)
        #expect(registry.openCount == 0 && registry.forciblyClosed == 3)
    }

    @Test func theTotalCapLeavesHeadroomUnderTheOpenFileLimit() {
        let limits = ConnectionLimits(maxConnections: 4096)
        #expect(limits.effectiveMaxConnections(openFiles: 1024) == 1024 - ConnectionLimits.openFileHeadroom)
        #expect(limits.effectiveMaxConnections(openFiles: 1_048_576) == 4096)
        #expect(limits.effectiveMaxConnections(openFiles: 64) == 1)
        #expect(limits.effectiveMaxConnections(openFiles: UInt64.max) == 4096)
    }

    @Test func theSoftOpenFileLimitIsRaisedToTheHardOne() throws {
        let raised = try #require(OpenFileLimit.raiseSoftToHard())
        #expect(raised.after.hard == raised.before.hard)
        #expect(raised.after.soft >= raised.before.soft)
        #expect(raised.after.soft <= raised.after.hard)
    }
}
