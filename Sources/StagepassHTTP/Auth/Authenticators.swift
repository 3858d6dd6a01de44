import Foundation
import Hummingbird
import StagepassBroker

/// An authenticator in hummingbird-auth's shape (`AuthenticatorMiddleware`): it returns the identity it found, nil to
/// pass the request on unauthenticated (the handler's `require…` then refuses it), or throws to stop the request.
/// ``store(_:in:)`` writes the identity into its place in ``RequestIdentity``.
protocol Authenticator: RouterMiddleware where Context == StagepassRequestContext {
    associatedtype Identity: Sendable
    func authenticate(request: Request, context: Context) async throws -> Identity?
    func store(_ identity: Identity, in context: inout Context)
}

extension Authenticator {
    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws
        -> Response
    {
        guard let identity = try await authenticate(request: request, context: context) else {
            return try await next(request, context)
        }
        var context = context
        store(identity, in: &context)
        return try await next(request, context)
    }
}

/// `Authorization: Bearer <session token>` (RFC 6750 §2.1): records the token as presented. The broker checks it
/// where it is used, so this never looks the session up (a lookup slides the idle expiry).
struct BearerTokenAuthenticator: Authenticator {
    func authenticate(request: Request, context: Context) -> String? {
        guard let h = request.headers[.authorization], h.count > 7, h.prefix(7).lowercased() == "bearer " else {
            return nil
        }
        return String(h.dropFirst(7)).trimmingCharacters(in: .whitespaces)
    }

    func store(_ identity: String, in context: inout Context) { context.identity.sessionToken = identity }
}

/// Resolves the bearer token to its session (any state; checks expiry and slides the idle expiry, as
/// ``SessionService/authenticate(token:)`` does). No token passes on; a dead token stops with
/// ``BrokerError/invalidSession`` (401).
struct BearerSessionAuthenticator: Authenticator {
    let sessions: SessionService

    func authenticate(request: Request, context: Context) async throws -> Session? {
        guard let token = context.identity.sessionToken else { return nil }
        let sessions = self.sessions
        return try await sessions.authenticate(token: token)
    }

    func store(_ identity: Session, in context: inout Context) { context.identity.session = identity }
}

/// The factor routes: the session's grant to change its factors (``SessionService/authorizeFactorChange(token:)``).
/// No token passes on; otherwise the broker's refusal stops the request (401 `invalid_session`, 403 `mfa_required`,
/// 403 `step_up_required`).
struct FactorChangeAuthenticator: Authenticator {
    let sessions: SessionService

    func authenticate(request: Request, context: Context) async throws -> FactorChangeGrant? {
        guard let token = context.identity.sessionToken else { return nil }
        let sessions = self.sessions
        return try await sessions.authorizeFactorChange(token: token)
    }

    func store(_ identity: FactorChangeGrant, in context: inout Context) {
        context.identity.factorChange = identity
        context.identity.session = identity.session
    }
}

/// Admits administrators with a fresh factor (`tokens.admin_mfa_max_age`) to the admin routes and records every
/// refusal in the audit log. A request without a session passes on to the handler's ``StagepassRequestContext/
/// requireAdmin()``, which refuses it.
struct AdminAuthorizer: RouterMiddleware {
    typealias Context = StagepassRequestContext
    let tokens: TokenBroker

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws
        -> Response
    {
        // The same order of refusals as before any admin check: no or dead session, then a pending one.
        guard context.identity.session != nil else { return try await next(request, context) }
        let s = try context.requireSession()
        do { _ = try tokens.requireAdmin(s) } catch {
            let audit = tokens.human.audit
            let event = AuditEvent(
                action: "admin",
                actor: s.userName,
                subject: request.uri.path,
                result: "denied",
                reason: error.errorDescription,
                factors: s.amr
            )
            _ = try? await audit.record(event)
            throw error
        }
        var context = context
        context.identity.isAdmin = true
        return try await next(request, context)
    }
}

/// Pipeline client authentication on the OAuth endpoints (RFC 6749 §2.3.1): reads HTTP Basic credentials
/// (form-urlencoded id and secret) from the `Authorization` header. The body's `client_id`/`client_secret` are read
/// with the rest of the form by the handler, and ``StagepassRequestContext/requireClient(form:)`` refuses a request
/// that uses both. Never throws: the token-exchange grant ignores client authentication.
struct ClientCredentialsAuthenticator: Authenticator {
    func authenticate(request: Request, context: Context) -> ClientAuthorization? {
        guard let h = request.headers[.authorization] else { return nil }
        guard h.count > 6, h.prefix(6).lowercased() == "basic ",
            let raw = Data(base64Encoded: String(h.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
            let pair = String(data: raw, encoding: .utf8), let colon = pair.firstIndex(of: ":"),
            let id = FormBody.decode(String(pair[..<colon])),
            let secret = FormBody.decode(String(pair[pair.index(after: colon)...]))
        else { return .unreadable }
        return .basic(ClientCredentials(id: id, secret: secret))
    }

    func store(_ identity: ClientAuthorization, in context: inout Context) {
        context.identity.clientAuthorization = identity
    }
}
