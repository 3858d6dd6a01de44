import Foundation
import Hummingbird
import HummingbirdTesting
import StagepassBroker
import StagepassJOSE
import Testing

@testable import StagepassHTTP

/// The broker on an in-memory store, a manual clock and cheap Argon2 parameters.
struct TestBroker: Sendable {
    let manual = ManualClock(1_700_000_000)
    let broker: HumanBroker
    let spec = OpenAPIDocument.shared
    /// (method path status) seen, for the coverage check.
    let seen = Seen()

    init(policy: AuthPolicy = .default) throws {
        broker = HumanBroker(
            store: try SQLiteStore(),
            masterKey: try MasterKey.generate(),
            policy: policy,
            hasher: try PasswordHasher(parameters: .testing, pool: WorkPool(label: "test", workers: 2)),
            clock: manual.clock
        )
    }

    var app: some ApplicationProtocol { buildApplication(broker: broker) }

    /// Adds a user with an active TOTP factor; returns the secret.
    func user(
        _ name: String,
        password: String = "a long enough password",
        groups: [String] = []
    ) async throws -> [UInt8] {
        try await broker.accounts.add(name: name, password: password, groups: groups, actor: "root")
        let e = try await broker.factors.enrolTOTP(userName: name, actor: "root")
        let secret = Base32.decode(e.secret) ?? []
        try await broker.factors.confirmTOTP(
            userId: try await broker.accounts.get(name).id,
            code: code(secret),
            actor: name
        )
        manual.advance(30)
        return secret
    }

    func code(_ secret: [UInt8]) -> String {
        (try? OTP.totp(secret: secret, unixTime: manual.clock.now())) ?? "no-code"
    }

    /// Sends a request, checks the response against the OpenAPI document, and returns status and parsed body.
    @discardableResult
    func call(
        _ client: some TestClientProtocol,
        _ method: HTTPRequest.Method,
        _ path: String,
        token: String? = nil,
        body: String? = nil,
        contentType: String = "application/json",
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> (
        status: Int, json: JSONValue?, raw: String,
        headers: HTTPFields
    ) {
        var headers: HTTPFields = [:]
        if let token { headers[.authorization] = "Bearer \(token)" }
        if body != nil { headers[.contentType] = contentType }
        let r = try await client.execute(
            uri: path,
            method: method,
            headers: headers,
            body: body.map { ByteBuffer(string: $0) }
        )
        let raw = String(buffer: r.body)
        let problems = spec.check(
            path: path,
            method: method.rawValue,
            status: Int(r.status.code),
            contentType: r.headers[.contentType],
            body: raw
        )
        for p in problems { Issue.record("OpenAPI: \(p)", sourceLocation: sourceLocation) }
        seen.add("\(method.rawValue.lowercased()) \(path) \(r.status.code)")
        return (Int(r.status.code), try? JSONValue.parse(raw), raw, r.headers)
    }
}

final class Seen: @unchecked Sendable {
    // Invariant: `set` is only touched under `lock`.
    private let lock = NSLock()
    private var set: Set<String> = []
    func add(_ s: String) { lock.withLock { _ = set.insert(s) } }
    var all: Set<String> { lock.withLock { set } }
}

@Suite struct BrokerHTTPTests {
    @Test func fullSignInOverTheRouterMatchesTheSpec() async throws {
        let t = try TestBroker()
        let secret = try await t.user("alice", groups: ["deploy"])
        try await t.app.test(.router) { client in
            let p = try await t.call(
                client,
                .post,
                "/v1/auth/password",
                body: #"{"user":"alice","password":"a long enough password"}"#
            )
            #expect(p.status == 200)
            #expect(p.json?["needs_factor"]?.boolValue == true)
            #expect(p.json?["factors"] == .array([.string("totp")]))
            let pending = try #require(p.json?["session_token"]?.stringValue)
            #expect(try await t.call(client, .get, "/v1/me", token: pending).status == 403)

            let f = try await t.call(
                client,
                .post,
                "/v1/auth/factor",
                token: pending,
                body: #"{"method":"totp","code":"\#(t.code(secret))"}"#
            )
            #expect(f.status == 200)
            #expect(f.json?["amr"] == .array([.string("pwd"), .string("otp")]))
            let token = try #require(f.json?["session_token"]?.stringValue)
            #expect(token != pending)

            let me = try await t.call(client, .get, "/v1/me", token: token)
            #expect(me.status == 200)
            #expect(me.json?["user"]?.stringValue == "alice")
            #expect(me.json?["groups"] == .array([.string("deploy")]))
            #expect(me.json?["auth_time"]?.intValue == t.manual.clock.now())

            let codes = try await t.call(client, .post, "/v1/factors/backup-codes", token: token)
            #expect(codes.status == 201)
            let first = try #require(codes.json?["codes"]?.arrayValue?.first?.stringValue)
            t.manual.advance(60)
            let up = try await t.call(
                client,
                .post,
                "/v1/auth/step-up",
                token: token,
                body: #"{"method":"backup","code":"\#(first)"}"#
            )
            #expect(up.status == 200)
            #expect(up.json?["auth_time"]?.intValue == t.manual.clock.now())
            let again = try await t.call(
                client,
                .post,
                "/v1/auth/step-up",
                token: token,
                body: #"{"method":"backup","code":"\#(first)"}"#
            )
            #expect(again.status == 401)
            #expect(again.json?["type"]?.stringValue == "urn:stagepass:problem:invalid_factor")

            #expect(try await t.call(client, .post, "/v1/auth/logout", token: token).status == 204)
            let after = try await t.call(client, .get, "/v1/me", token: token)
            #expect(after.status == 401)
            #expect(after.json?["code"]?.stringValue == "invalid_session")
        }
        let events = try await t.broker.audit.events()
        #expect(events.contains { $0.action == "signin" && $0.factors == ["pwd", "otp"] })
        await #expect(try t.broker.audit.verify().isIntact)
    }

    @Test func unknownUserAndWrongPasswordGetTheSameStatusAndBody() async throws {
        let t = try TestBroker()
        _ = try await t.user("alice")
        try await t.app.test(.router) { client in
            let wrong = try await t.call(
                client,
                .post,
                "/v1/auth/password",
                body: #"{"user":"alice","password":"not the password"}"#
            )
            let unknown = try await t.call(
                client,
                .post,
                "/v1/auth/password",
                body: #"{"user":"nobody","password":"not the password"}"#
            )
            #expect(wrong.status == 401 && unknown.status == 401)
            #expect(wrong.raw == unknown.raw)
            #expect(wrong.headers[.contentType] == "application/problem+json")
            #expect(wrong.json?["type"]?.stringValue == "urn:stagepass:problem:invalid_credentials")
        }
    }

    @Test func throttlingAnswers429WithRetryAfter() async throws {
        let t = try TestBroker()
        _ = try await t.user("alice")
        try await t.app.test(.router) { client in
            for _ in 0..<3 {
                try await t.call(
                    client,
                    .post,
                    "/v1/auth/password",
                    body: #"{"user":"alice","password":"nope nope nope"}"#
                )
            }
            let r = try await t.call(
                client,
                .post,
                "/v1/auth/password",
                body: #"{"user":"alice","password":"a long enough password"}"#
            )
            #expect(r.status == 429)
            #expect(r.headers[.retryAfter] == "2")
            #expect(r.json?["code"]?.stringValue == "throttled")
        }
    }

    static let badBodies: [(String, String, String, Int)] = [
        ("/v1/auth/password", "{}", "application/json", 400),
        ("/v1/auth/password", #"{"user":"alice"}"#, "application/json", 400),
        ("/v1/auth/password", #"{"user":1,"password":"a long enough password"}"#, "application/json", 400),
        ("/v1/auth/password", #"{"user":"alice","password":["x"]}"#, "application/json", 400),
        ("/v1/auth/password", "not json", "application/json", 400),
        ("/v1/auth/password", "[1,2]", "application/json", 400),
        (
            "/v1/auth/password", #"{"user":"alice","user":"bob","password":"a long enough password"}"#,
            "application/json", 400
        ),
        (
            "/v1/auth/password", #"{"user":"alice","password":"\#(String(repeating: "x", count: 20_000))"}"#,
            "application/json", 413
        ),
        ("/v1/auth/password", "user=alice", "application/x-www-form-urlencoded", 415),
        ("/v1/auth/factor", #"{"method":"sms","code":"123456"}"#, "application/json", 400),
        ("/v1/auth/factor", #"{"method":"totp"}"#, "application/json", 400),
        ("/v1/auth/factor", #"{"method":"totp","code":123456}"#, "application/json", 400),
        ("/v1/auth/factor", "{", "application/json", 400),
        ("/v1/auth/step-up", #"{"code":"123456"}"#, "application/json", 400),
        ("/v1/factors/totp/confirm", #"{"code":false}"#, "application/json", 400),
    ]

    @Test func badInputGetsAProblemAndChangesNothing() async throws {
        let t = try TestBroker()
        let secret = try await t.user("alice")
        let codes = try await t.broker.factors.regenerateBackupCodes(userName: "alice", actor: "root")
        let step1 = try await t.broker.sessions.signIn(name: "alice", password: "a long enough password", address: "x")
        let mfa = try await t.broker.sessions.completeFactor(
            pendingToken: step1.token,
            proof: .totp(t.code(secret)),
            address: "x"
        )
        let step2 = try await t.broker.sessions.signIn(name: "alice", password: "a long enough password", address: "x")
        let auditBefore = try await t.broker.audit.events().count
        try await t.app.test(.router) { client in
            for (path, body, ct, status) in Self.badBodies {
                let token = path == "/v1/auth/factor" ? step2.token : mfa.token
                let r = try await t.call(client, .post, path, token: token, body: body, contentType: ct)
                #expect(r.status == status, "\(path) \(body.prefix(40))")
                #expect(r.headers[.contentType] == "application/problem+json")
                #expect(r.json?["type"]?.stringValue?.hasPrefix("urn:stagepass:problem:") == true)
            }
            // Unknown routes and methods are problems too.
            let nf = try await client.execute(uri: "/v1/nope", method: .get)
            #expect(nf.status == .notFound && nf.headers[.contentType] == "application/problem+json")
            // The pending session still works, the backup codes are untouched, nothing was audited.
            let f = try await t.call(
                client,
                .post,
                "/v1/auth/factor",
                token: step2.token,
                body: #"{"method":"backup","code":"\#(codes[0])"}"#
            )
            #expect(f.status == 200)
        }
        await #expect(try t.broker.audit.events().count == auditBefore + 1)
        await #expect(try t.broker.factors.backupCodesLeft(userId: try t.broker.accounts.get("alice").id) == 9)
    }

    @Test func firstEnrolmentFromAPendingSessionIsOffByDefault() async throws {
        let t = try TestBroker()
        try await t.broker.accounts.add(name: "bob", password: "a long enough password", actor: "root")
        try await t.app.test(.router) { client in
            let p = try await t.call(
                client,
                .post,
                "/v1/auth/password",
                body: #"{"user":"bob","password":"a long enough password"}"#
            )
            let pending = try #require(p.json?["session_token"]?.stringValue)
            let e = try await t.call(client, .post, "/v1/factors/totp", token: pending)
            #expect(e.status == 403 && e.json?["code"]?.stringValue == "step_up_required")
        }
        await #expect(try t.broker.factors.list(userId: try t.broker.accounts.get("bob").id).isEmpty)
    }

    @Test func firstEnrolmentFromAPendingSessionWhenPolicyAllows() async throws {
        let t = try TestBroker(policy: AuthPolicy(firstEnrolmentWithPassword: true))
        try await t.broker.accounts.add(name: "bob", password: "a long enough password", actor: "root")
        try await t.app.test(.router) { client in
            let p = try await t.call(
                client,
                .post,
                "/v1/auth/password",
                body: #"{"user":"bob","password":"a long enough password"}"#
            )
            #expect(p.json?["factors"] == .array([]))
            let pending = try #require(p.json?["session_token"]?.stringValue)
            let e = try await t.call(client, .post, "/v1/factors/totp", token: pending)
            #expect(e.status == 201)
            let secret = Base32.decode(try #require(e.json?["secret"]?.stringValue)) ?? []
            #expect(e.json?["qr_svg"]?.stringValue?.hasPrefix("<svg") == true)
            let bad = try await t.call(
                client,
                .post,
                "/v1/factors/totp/confirm",
                token: pending,
                body: #"{"code":"12345x"}"#
            )
            #expect(bad.status == 400)
            let c = try await t.call(
                client,
                .post,
                "/v1/factors/totp/confirm",
                token: pending,
                body: #"{"code":"\#(t.code(secret))"}"#
            )
            #expect(c.status == 200)
            let token = try #require(c.json?["session"]?["session_token"]?.stringValue)
            #expect(try await t.call(client, .get, "/v1/me", token: token).status == 200)
            // With an active factor, a new pending session may no longer enrol.
            t.manual.advance(30)
            let p2 = try await t.call(
                client,
                .post,
                "/v1/auth/password",
                body: #"{"user":"bob","password":"a long enough password"}"#
            )
            let pending2 = try #require(p2.json?["session_token"]?.stringValue)
            #expect(try await t.call(client, .post, "/v1/factors/totp", token: pending2).status == 403)
        }
    }

    @Test func healthReadinessAndMetrics() async throws {
        let t = try TestBroker()
        try await t.app.test(.router) { client in
            #expect(try await t.call(client, .get, "/healthz").status == 200)
            #expect(try await t.call(client, .get, "/readyz").status == 200)
            try await t.call(client, .post, "/v1/auth/password", body: #"{"user":"x","password":"y"}"#)
            let m = try await t.call(client, .get, "/metrics")
            #expect(m.status == 200)
            #expect(m.raw.contains("stagepass_http_requests_total"))
            #expect(m.raw.contains("stagepass_signin_steps_total"))
        }
    }

    /// A full sign-in through the real HTTP server on a loopback port started by the test.
    @Test func fullSignInOverALiveLoopbackServer() async throws {
        let t = try TestBroker()
        let secret = try await t.user("carol")
        let app = buildApplication(broker: t.broker, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let p = try await t.call(
                client,
                .post,
                "/v1/auth/password",
                body: #"{"user":"carol","password":"a long enough password"}"#
            )
            let pending = try #require(p.json?["session_token"]?.stringValue)
            let f = try await t.call(
                client,
                .post,
                "/v1/auth/factor",
                token: pending,
                body: #"{"method":"totp","code":"\#(t.code(secret))"}"#
            )
            let token = try #require(f.json?["session_token"]?.stringValue)
            let me = try await t.call(client, .get, "/v1/me", token: token)
            #expect(me.status == 200 && me.json?["amr"] == .array([.string("pwd"), .string("otp")]))
            #expect(try await t.call(client, .post, "/v1/auth/logout", token: token).status == 204)
        }
        // The live server saw a real peer address, used for per-address throttling.
        await #expect(try t.broker.audit.events().contains { $0.details["address"] == "127.0.0.1" })
    }

    @Test func everyDocumentedPathIsImplemented() async throws {
        let t = try TestBroker()
        let doc = OpenAPIDocument.shared
        #expect(!doc.operations.isEmpty)
        // The token API needs a key store and a policy: a temporary store with its first keys, the example policy.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stagepass-http-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let keys = try KeyStore(
            configuration: KeyStoreConfiguration(
                directory: dir.path,
                passphrase: .passphrase("test passphrase"),
                clock: t.manual.clock
            )
        )
        try await keys.rotate()
        t.broker.policies.replace(try AccessPolicy.example())
        let tokens = await TokenBroker(human: t.broker, keys: keys, issuer: "http://sp.test")
        let app = buildApplication(broker: t.broker, tokens: tokens)
        try await app.test(.router) { client in
            for path in Set(doc.operations.map(\.path)) {
                let method: HTTPRequest.Method =
                    doc.operations.contains { $0.path == path && $0.method == "get" } ? .get : .post
                // Path templates get a sample value: list 1 exists, the user code is well formed.
                let concrete = path.replacingOccurrences(of: "{n}", with: "1")
                    .replacingOccurrences(of: "{code}", with: "BCDF-GHJK")
                    .replacingOccurrences(of: "{name}", with: "someone").replacingOccurrences(
                        of: "{action}",
                        with: "disable"
                    )
                let r = try await client.execute(uri: concrete, method: method)
                #expect(r.status != .notFound, "\(path)")
            }
        }
    }
}
