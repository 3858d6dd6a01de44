import Foundation
import Hummingbird
import HummingbirdTesting
import StagepassBroker
import StagepassJOSE
import Testing

@testable import StagepassHTTP

/// The authenticator and CSRF middleware on their own routes: what each puts in the request context, and which
/// requests each stops.
@Suite struct AuthMiddlewareTests {
    /// A router whose one route reports what the context holds.
    func app(_ build: (Router<StagepassRequestContext>) -> Void) -> some ApplicationProtocol {
        let router = Router(context: StagepassRequestContext.self)
        router.add(middleware: ProblemAndMetricsMiddleware())
        build(router)
        return Application(router: router)
    }

    func signIn(_ t: TestBroker, _ name: String) async throws -> (pending: String, mfa: String) {
        let secret = try await t.user(name)
        let p = try await t.broker.sessions.signIn(name: name, password: "a long enough password", address: "test")
        let pending = try await t.broker.sessions.signIn(name: name, password: "a long enough password", address: "t")
        let s = try await t.broker.sessions.completeFactor(
            pendingToken: p.token,
            proof: .totp(t.code(secret)),
            address: "t"
        )
        return (pending.token, s.token)
    }

    /// RFC 6750 §2.1: the bearer token as presented; no header, or another scheme, passes on without one.
    @Test func bearerTokenAuthenticatorRecordsTheToken() async throws {
        let app = app { router in
            router.add(middleware: BearerTokenAuthenticator())
            router.get("/t") { _, context in context.identity.sessionToken ?? "-" }
        }
        try await app.test(.router) { client in
            let r = try await client.execute(uri: "/t", method: .get, headers: [.authorization: "Bearer  sps_x "])
            #expect(String(buffer: r.body) == "sps_x")
            let basic = try await client.execute(uri: "/t", method: .get, headers: [.authorization: "Basic eDp5"])
            #expect(String(buffer: basic.body) == "-")
            #expect(String(buffer: try await client.execute(uri: "/t", method: .get).body) == "-")
        }
    }

    /// A dead token stops the request with 401 `invalid_session`; a pending session reaches the handler, whose
    /// `requireSession()` answers 403 `mfa_required`; no token at all is 401 from the handler.
    @Test func bearerSessionAuthenticatorResolvesTheSession() async throws {
        let t = try TestBroker()
        let (pending, mfa) = try await signIn(t, "alice")
        let app = app { router in
            router.add(middleware: BearerTokenAuthenticator())
            router.add(middleware: BearerSessionAuthenticator(sessions: t.broker.sessions))
            router.get("/t") { _, context in
                let s = try context.requireSession()
                return "\(s.userName) \(s.proofs.keys.sorted().joined(separator: ","))"
            }
        }
        try await app.test(.router) { client in
            let ok = try await client.execute(uri: "/t", method: .get, headers: [.authorization: "Bearer \(mfa)"])
            #expect(ok.status == .ok && String(buffer: ok.body) == "alice otp,pwd")
            let p = try await client.execute(uri: "/t", method: .get, headers: [.authorization: "Bearer \(pending)"])
            #expect(p.status == .forbidden && String(buffer: p.body).contains("mfa_required"))
            let dead = try await client.execute(uri: "/t", method: .get, headers: [.authorization: "Bearer sps_no"])
            #expect(dead.status == .unauthorized && String(buffer: dead.body).contains("invalid_session"))
            let none = try await client.execute(uri: "/t", method: .get)
            #expect(none.status == .unauthorized && String(buffer: none.body).contains("invalid_session"))
        }
    }

    /// RFC 6749 §2.3.1: Basic or body credentials; §2.3: never both; an unreadable header is `invalid_client`.
    @Test func clientCredentialsNeverBothMethods() async throws {
        let app = app { router in
            router.add(middleware: ClientCredentialsAuthenticator())
            router.post("/t") { request, context in
                do {
                    let form = try await FormBody(request, .init())
                    let c = try context.requireClient(form: form)
                    return "\(c.id):\(c.secret)"
                } catch let e as OAuthError {
                    return e.error
                }
            }
        }
        let basic = "Basic " + Data("pipe%3Aline:s+cret".utf8).base64EncodedString()
        let form: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]
        try await app.test(.router) { client in
            func post(_ auth: String?, _ body: String) async throws -> String {
                var h = form
                if let auth { h[.authorization] = auth }
                let r = try await client.execute(uri: "/t", method: .post, headers: h, body: ByteBuffer(string: body))
                return String(buffer: r.body)
            }
            let r1 = try await post(basic, "grant_type=x")
            #expect(r1 == "pipe:line:s cret")
            let r2 = try await post(nil, "client_id=a&client_secret=b")
            #expect(r2 == "a:b")
            let r3 = try await post(basic, "client_secret=b")
            #expect(r3 == "invalid_request")
            let r4 = try await post("Basic !!", "x=1")
            #expect(r4 == "invalid_client")
            let r5 = try await post("Bearer sps_x", "client_id=a&client_secret=b")
            #expect(r5 == "invalid_request")
            let r6 = try await post(nil, "client_id=a")
            #expect(r6 == "invalid_client")
        }
    }

    /// The CSRF token is checked against the request's binding: a nonce cookie for a signed-out form, the session
    /// once signed in (a token minted for the nonce does not pass for the session).
    @Test func csrfMiddlewareChecksTheBinding() async throws {
        let t = try TestBroker()
        let (_, mfa) = try await signIn(t, "alice")
        let security = try PageSecurity(issuer: "http://127.0.0.1:8080")
        let app = app { router in
            router.add(middleware: PageSessionAuthenticator(broker: t.broker, security: security))
            router.add(middleware: CSRFMiddleware(mode: .form, options: .init(), security: security))
            router.post("/t") { _, context in
                do { return try context.requirePage().form()["x"] ?? "-" } catch let e as PageError {
                    return "refused \(e.status.code)"
                }
            }
        }
        let nonce = Base64URL.encode(try Crypto.randomBytes(32))
        let nonceToken = try security.csrfToken(binding: "nonce:" + nonce)
        let session = try await t.broker.sessions.requireMFA(token: mfa)
        let sessionToken = try security.csrfToken(binding: "session:" + session.id)
        try await app.test(.router) { client in
            func post(_ cookie: String, _ csrf: String) async throws -> String {
                let r = try await client.execute(
                    uri: "/t",
                    method: .post,
                    headers: [.contentType: "application/x-www-form-urlencoded", .cookie: cookie],
                    body: ByteBuffer(string: "x=1&csrf=" + csrf)
                )
                return String(buffer: r.body)
            }
            let r7 = try await post("sp_csrf=\(nonce)", nonceToken)
            #expect(r7 == "1")
            let r8 = try await post("sp_csrf=\(nonce)", "")
            #expect(r8 == "refused 403")
            let r9 = try await post("sp_csrf=\(nonce); sp_session=\(mfa)", nonceToken)
            #expect(r9 == "refused 403")
            let r10 = try await post("sp_csrf=\(nonce); sp_session=\(mfa)", sessionToken)
            #expect(r10 == "1")
            let r11 = try await post("", nonceToken)
            #expect(r11 == "refused 403")
        }
    }
}
