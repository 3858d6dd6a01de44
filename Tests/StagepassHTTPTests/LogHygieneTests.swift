import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import StagepassBroker
import StagepassJOSE
import Testing

@testable import StagepassHTTP

/// Collects every log line with its metadata, at trace level.
final class CapturedLogs: @unchecked Sendable {
    // Invariant: `lines` is only touched under `lock`.
    private let lock = NSLock()
    private var lines: [String] = []
    func add(_ s: String) { lock.withLock { lines.append(s) } }
    var all: String { lock.withLock { lines.joined(separator: "\n") } }
}

struct CapturingHandler: LogHandler {
    let sink: CapturedLogs
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { _, b in b }
        sink.add("\(event.level) \(event.message) \(all.map { "\($0)=\($1)" }.sorted().joined(separator: " "))")
    }
}

@Suite struct LogHygieneTests {
    @Test func logsNeverContainPasswordsCodesOrTokens() async throws {
        let t = try TestBroker()
        let secret = try await t.user("alice")
        let sink = CapturedLogs()
        var logger = Logger(label: "test") { _ in CapturingHandler(sink: sink) }
        logger.logLevel = .trace
        let app = buildApplication(broker: t.broker, logger: logger)
        let issued: [String] = try await app.test(.router) { client in
            try await t.call(
                client,
                .post,
                "/v1/auth/password",
                body: #"{"user":"alice","password":"wrong password!!"}"#
            )
            let p = try await t.call(
                client,
                .post,
                "/v1/auth/password",
                body: #"{"user":"alice","password":"a long enough password"}"#
            )
            let pending = try #require(p.json?["session_token"]?.stringValue)
            let code = t.code(secret)
            let f = try await t.call(
                client,
                .post,
                "/v1/auth/factor",
                token: pending,
                body: #"{"method":"totp","code":"\#(code)"}"#
            )
            let token = try #require(f.json?["session_token"]?.stringValue)
            let e = try await t.call(client, .post, "/v1/factors/totp", token: token)
            let b = try await t.call(client, .post, "/v1/factors/backup-codes", token: token)
            try await t.call(client, .post, "/v1/auth/logout", token: token)
            return [pending, token, code, Base32.encode(secret), e.json?["secret"]?.stringValue ?? "?"]
                + (b.json?["codes"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        }
        let secrets = ["a long enough password", "wrong password!!"] + issued
        let logs = sink.all
        #expect(logs.contains("path=/v1/auth/factor"))  // the request lines were captured
        for s in secrets { #expect(!logs.contains(s), "a secret reached the logs") }
        // The audit log holds no secret either.
        var audit = ""
        try await t.broker.audit.export { audit += $0 }
        for s in secrets { #expect(!audit.contains(s), "a secret reached the audit log") }
    }
}
