import Foundation
import Hummingbird
import StagepassBroker
import StagepassJOSE

extension PagesAPI {
    /// Security-key names by factor id, for the factors table.
    func webauthnNames(_ userId: String) async throws -> [String: String] {
        Dictionary(
            try await broker.webauthn.listCredentials(userId: userId).map { ($0.factorId, $0.name) },
            uniquingKeysWith: { a, _ in a }
        )
    }

    /// The credential the script posts, re-serialised for the broker (which parses it strictly).
    func credential(_ body: JSONBody) throws -> String {
        guard let c = body.fields["credential"], c.objectValue != nil else {
            throw PageError(status: .badRequest, message: "the security key's answer is missing")
        }
        return c.serialized()
    }

    func scriptJSON(_ object: [String: JSONValue], cookies: [Cookie] = []) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        PageSecurity.headers(&headers)
        PageSecurity.setCookies(cookies, in: &headers)
        return Response(
            status: .ok,
            headers: headers,
            body: .init(byteBuffer: ByteBuffer(string: JSONValue.object(object).serialized()))
        )
    }

    /// Script calls report refusals as `{"detail": …}` with the matching status (the script shows the detail).
    func scripted(
        _ request: Request,
        _ context: StagepassRequestContext,
        _ body: @escaping @Sendable (PageRequest) async throws -> Response
    ) async throws -> Response {
        let pr = try context.requirePage()
        do { return try await body(pr) } catch {
            let status: HTTPResponse.Status
            switch error {
            case let e as PageError: status = e.status
            case let e as WebAuthnError: return json(.badRequest, ["detail": .string(Self.message(e.brokerError))])
            case let e as BrokerError: status = Problem.from(e).status
            case let e as OAuthError: status = Problem.from(e).status
            default: status = .badRequest
            }
            return json(status, ["detail": .string(Self.message(error))])
        }
    }

    /// The WebAuthn ceremonies (W3C WebAuthn Level 2 §7.1 registration, §7.2 authentication) behind the buttons.
    /// Options are the Level 3 JSON form wrapped as `{"publicKey": …}`; answers are the credential JSON.
    var webAuthnRoutes: RouteCollection<StagepassRequestContext> {
        let routes = pageRoutes(.script)
        // Registration (signed in).
        routes.post("/factors/webauthn/options") { request, context in
            try await scripted(request, context) { pr in
                guard let s = pr.session else { throw PageError(status: .unauthorized, message: "sign in first") }
                _ = try pr.scriptBody()
                // Registering a key is a factor change: a fresh proof of an active factor first.
                _ = try await broker.sessions.authorizeFactorChange(token: pr.sessionToken ?? "")
                let o = try await broker.webauthn.beginRegistration(userId: s.userId, userName: s.userName)
                return scriptJSON(["publicKey": o.json])
            }
        }
        routes.post("/factors/webauthn") { request, context in
            try await scripted(request, context) { pr in
                guard let s = pr.session else { throw PageError(status: .unauthorized, message: "sign in first") }
                let body = try pr.scriptBody()
                let name = body.fields["name"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? "Security key"
                let grant = try await broker.sessions.authorizeFactorChange(token: pr.sessionToken ?? "")
                _ = try await broker.webauthn.finishRegistration(
                    userId: s.userId,
                    name: String(name.prefix(64)),
                    credentialJSON: try credential(body),
                    authorisedBy: grant.authorisedBy
                )
                return scriptJSON(["redirect": .string("/factors")])
            }
        }
        // Sign-in: the password step left a pending session.
        routes.post("/signin/webauthn/options") { request, context in
            try await scripted(request, context) { pr in
                guard let (s, _) = pendingSession(pr) else {
                    throw PageError(status: .unauthorized, message: "start again at the sign-in page")
                }
                _ = try pr.scriptBody()
                return scriptJSON([
                    "publicKey": try await broker.webauthn.beginAssertion(userId: s.userId, purpose: .signIn).json
                ])
            }
        }
        routes.post("/signin/webauthn") { request, context in
            try await scripted(request, context) { pr in
                guard let (_, token) = pendingSession(pr) else {
                    throw PageError(status: .unauthorized, message: "start again at the sign-in page")
                }
                let body = try pr.scriptBody()
                let issued = try await broker.sessions.completeFactor(
                    pendingToken: token,
                    proof: .webauthn(credentialJSON: try credential(body)),
                    address: context.clientAddress
                )
                return scriptJSON(
                    ["redirect": .string(Self.safeNext(body.fields["next"]?.stringValue))],
                    cookies: [
                        security.setCookie(security.sessionCookie, issued.token),
                        security.setCookie(security.pendingCookie, "", maxAge: 0),
                    ]
                )
            }
        }
        // Step-up.
        routes.post("/stepup/webauthn/options") { request, context in
            try await scripted(request, context) { pr in
                guard let s = pr.session else { throw PageError(status: .unauthorized, message: "sign in first") }
                _ = try pr.scriptBody()
                return scriptJSON([
                    "publicKey": try await broker.webauthn.beginAssertion(userId: s.userId, purpose: .stepUp).json
                ])
            }
        }
        routes.post("/stepup/webauthn") { request, context in
            try await scripted(request, context) { pr in
                guard pr.session != nil, let token = pr.sessionToken else {
                    throw PageError(status: .unauthorized, message: "sign in first")
                }
                let body = try pr.scriptBody()
                _ = try await broker.sessions.stepUp(
                    token: token,
                    proof: .webauthn(credentialJSON: try credential(body)),
                    address: context.clientAddress
                )
                return scriptJSON(["redirect": .string(Self.safeNext(body.fields["next"]?.stringValue))])
            }
        }
        // Approving one run with a key: the challenge is bound to that request (id, client, role, stage, audience,
        // run id, commit, trigger), so the assertion approves nothing else.
        routes.post("/approve/:code/webauthn/options") { request, context in
            try await scripted(request, context) { pr in
                guard let token = pr.sessionToken else {
                    throw PageError(status: .unauthorized, message: "sign in first")
                }
                _ = try pr.scriptBody()
                let o = try await tokens.beginApprovalAssertion(
                    userCode: try context.parameters.require("code"),
                    sessionToken: token,
                    address: context.clientAddress
                )
                return scriptJSON(["publicKey": o.json])
            }
        }
        routes.post("/approve/:code/webauthn") { request, context in
            try await scripted(request, context) { pr in
                guard let token = pr.sessionToken else {
                    throw PageError(status: .unauthorized, message: "sign in first")
                }
                let body = try pr.scriptBody()
                let code = try context.parameters.require("code")
                let o = try await tokens.approve(
                    userCode: code,
                    sessionToken: token,
                    proof: .webauthn(credentialJSON: try credential(body)),
                    address: context.clientAddress
                )
                let result = o.approved ? "approved" : "recorded"
                return scriptJSON([
                    "redirect": .string("/approve?code=" + (UserCode.normalize(code) ?? "") + "&result=" + result)
                ])
            }
        }
        return routes
    }
}
