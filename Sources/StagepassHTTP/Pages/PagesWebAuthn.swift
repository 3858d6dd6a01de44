import Foundation
import Hummingbird
import StagepassBroker
import StagepassJOSE

extension PagesAPI {
    /// Security-key names by factor id, for the factors table.
    func webauthnNames(_ userId: String) throws -> [String: String] {
        Dictionary(
            try broker.webauthn.listCredentials(userId: userId).map { ($0.factorId, $0.name) }, uniquingKeysWith: { a, _ in a })
    }

    /// A JSON body from the page script, with its CSRF header checked (the script sends `X-CSRF-Token`).
    func scriptBody(_ request: Request, _ pr: PageRequest) async throws -> JSONBody {
        var limited = options
        limited.maxBodyBytes = WebAuthnService.maximumResponseBytes
        let body = try await JSONBody(request, limited, allowEmpty: true)
        try checkCSRF(nil, request, pr)
        return body
    }

    /// The credential the script posts, re-serialised for the broker (which parses it strictly).
    func credential(_ body: JSONBody) throws -> String {
        guard let c = body.fields["credential"], c.objectValue != nil else {
            throw PageError(status: .badRequest, message: "the security key's answer is missing")
        }
        return c.serialized()
    }

    func scriptJSON(_ object: [String: JSONValue], cookies: [String] = []) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        PageSecurity.headers(&headers)
        for cookie in cookies { headers.append(PageSecurity.Field(name: .setCookie, value: cookie)) }
        return Response(
            status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: JSONValue.object(object).serialized())))
    }

    /// Script calls report refusals as `{"detail": …}` with the matching status (the script shows the detail).
    func scripted(_ request: Request, _ body: (PageRequest) async throws -> Response) async throws -> Response {
        let pr = try PageRequest(request, broker: broker, security: security)
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
    func registerWebAuthn(on router: Router<BrokerRequestContext>) {
        // Registration (signed in).
        router.post("/factors/webauthn/options") { request, _ in
            try await scripted(request) { pr in
                guard let s = pr.session else { throw PageError(status: .unauthorized, message: "sign in first") }
                _ = try await scriptBody(request, pr)
                // Registering a key is a factor change: a fresh proof of an active factor first.
                _ = try broker.sessions.authorizeFactorChange(token: pr.sessionToken ?? "")
                let o = try broker.webauthn.beginRegistration(userId: s.userId, userName: s.userName)
                return scriptJSON(["publicKey": o.json])
            }
        }
        router.post("/factors/webauthn") { request, _ in
            try await scripted(request) { pr in
                guard let s = pr.session else { throw PageError(status: .unauthorized, message: "sign in first") }
                let body = try await scriptBody(request, pr)
                let name = body.fields["name"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? "Security key"
                let grant = try broker.sessions.authorizeFactorChange(token: pr.sessionToken ?? "")
                _ = try broker.webauthn.finishRegistration(
                    userId: s.userId, name: String(name.prefix(64)), credentialJSON: try credential(body),
                    authorisedBy: grant.authorisedBy)
                return scriptJSON(["redirect": .string("/factors")])
            }
        }
        // Sign-in: the password step left a pending session.
        router.post("/signin/webauthn/options") { request, _ in
            try await scripted(request) { pr in
                guard let (s, _) = pendingSession(pr) else { throw PageError(status: .unauthorized, message: "start again at the sign-in page") }
                _ = try await scriptBody(request, pr)
                return scriptJSON(["publicKey": try broker.webauthn.beginAssertion(userId: s.userId, purpose: .signIn).json])
            }
        }
        router.post("/signin/webauthn") { request, context in
            try await scripted(request) { pr in
                guard let (_, token) = pendingSession(pr) else { throw PageError(status: .unauthorized, message: "start again at the sign-in page") }
                let body = try await scriptBody(request, pr)
                let issued = try broker.sessions.completeFactor(
                    pendingToken: token, proof: .webauthn(credentialJSON: try credential(body)),
                    address: context.clientAddress)
                return scriptJSON(
                    ["redirect": .string(Self.safeNext(body.fields["next"]?.stringValue))],
                    cookies: [
                        security.setCookie(security.sessionCookie, issued.token),
                        security.setCookie(security.pendingCookie, "", maxAge: 0),
                    ])
            }
        }
        // Step-up.
        router.post("/stepup/webauthn/options") { request, _ in
            try await scripted(request) { pr in
                guard let s = pr.session else { throw PageError(status: .unauthorized, message: "sign in first") }
                _ = try await scriptBody(request, pr)
                return scriptJSON(["publicKey": try broker.webauthn.beginAssertion(userId: s.userId, purpose: .stepUp).json])
            }
        }
        router.post("/stepup/webauthn") { request, context in
            try await scripted(request) { pr in
                guard pr.session != nil, let token = pr.sessionToken else { throw PageError(status: .unauthorized, message: "sign in first") }
                let body = try await scriptBody(request, pr)
                _ = try broker.sessions.stepUp(
                    token: token, proof: .webauthn(credentialJSON: try credential(body)), address: context.clientAddress)
                return scriptJSON(["redirect": .string(Self.safeNext(body.fields["next"]?.stringValue))])
            }
        }
        // Approving one run with a key: the challenge is bound to that request (id, client, role, stage, audience,
        // run id, commit, trigger), so the assertion approves nothing else.
        router.post("/approve/:code/webauthn/options") { request, context in
            try await scripted(request) { pr in
                guard let token = pr.sessionToken else { throw PageError(status: .unauthorized, message: "sign in first") }
                _ = try await scriptBody(request, pr)
                let o = try tokens.beginApprovalAssertion(
                    userCode: try context.parameters.require("code"), sessionToken: token, address: context.clientAddress)
                return scriptJSON(["publicKey": o.json])
            }
        }
        router.post("/approve/:code/webauthn") { request, context in
            try await scripted(request) { pr in
                guard let token = pr.sessionToken else { throw PageError(status: .unauthorized, message: "sign in first") }
                let body = try await scriptBody(request, pr)
                let code = try context.parameters.require("code")
                let o = try tokens.approve(
                    userCode: code, sessionToken: token, proof: .webauthn(credentialJSON: try credential(body)),
                    address: context.clientAddress)
                let result = o.approved ? "approved" : "recorded"
                return scriptJSON([
                    "redirect": .string("/approve?code=" + (UserCode.normalize(code) ?? "") + "&result=" + result)
                ])
            }
        }
    }
}
