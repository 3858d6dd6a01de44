import Hummingbird
import Logging
import NIOCore
import StagepassBroker

/// The request context: Hummingbird's core storage, the client address (for per-address throttling) and the
/// identity the authenticator middleware found (see ``RequestIdentity``).
///
/// Handlers ask the context for what they need (``requireSessionToken()``, ``requireSession()``,
/// ``requireFactorChange()``, ``requireAdmin()``, ``requireClient(form:)``) instead of reading headers or cookies.
public struct StagepassRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The peer's IP address ("unknown" when the transport has none, e.g. router tests). Proxies' forwarding headers
    /// are not trusted.
    public let clientAddress: String
    /// What the authenticators established for this request.
    public var identity = RequestIdentity()
    /// The pages' per-request state (cookies, CSRF binding); set by ``PageSessionAuthenticator``.
    var page: PageRequest?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        clientAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }

    /// The bearer session token (RFC 6750 §2.1), as presented; the broker checks it where it is used.
    /// - Throws: ``BrokerError/invalidSession`` when the request carries none.
    public func requireSessionToken() throws -> String {
        guard let token = identity.sessionToken else { throw BrokerError.invalidSession }
        return token
    }

    /// The authenticated session, verified with a second factor.
    /// - Throws: ``BrokerError/invalidSession`` without a live session, ``BrokerError/mfaRequired`` for a session that
    ///   has not completed its second factor.
    public func requireSession() throws -> Session {
        guard let session = identity.session else { throw BrokerError.invalidSession }
        guard session.isMFA else { throw BrokerError.mfaRequired }
        return session
    }

    /// The grant to change the session user's factors: a fresh proof of an active factor, or the first-enrolment
    /// rule (``SessionService/authorizeFactorChange(token:)``).
    /// - Throws: ``BrokerError/invalidSession`` when the request carries no session.
    public func requireFactorChange() throws -> FactorChangeGrant {
        guard let grant = identity.factorChange else { throw BrokerError.invalidSession }
        return grant
    }

    /// The administrator's session, checked by ``AdminAuthorizer`` (administrator group and a fresh factor).
    /// - Throws: ``BrokerError/invalidSession`` without a session, ``OAuthError/forbidden(_:)`` when no authorizer
    ///   admitted it.
    public func requireAdmin() throws -> Session {
        let session = try requireSession()
        guard identity.isAdmin else { throw OAuthError.forbidden("this needs an administrator") }
        return session
    }

    /// The pipeline client's credentials (RFC 6749 §2.3.1): HTTP Basic, or `client_id`/`client_secret` in the form
    /// body, never both (§2.3: "MUST NOT use more than one authentication method in each request").
    /// - Parameter form: the request's form body, already read by the handler.
    /// - Throws: ``OAuthError/invalidRequest(_:)`` for two methods, ``OAuthError/invalidClient`` for none or an
    ///   unreadable `Authorization` header.
    func requireClient(form: FormBody) throws -> ClientCredentials {
        switch identity.clientAuthorization {
        case .some(let header):
            guard form.fields["client_secret"] == nil else {
                throw OAuthError.invalidRequest("use one client authentication method")
            }
            guard case .basic(let credentials) = header else { throw OAuthError.invalidClient }
            return credentials
        case .none:
            guard let id = form.fields["client_id"], let secret = form.fields["client_secret"] else {
                throw OAuthError.invalidClient
            }
            return ClientCredentials(id: id, secret: secret)
        }
    }
}

/// Who a request speaks for, as the authenticator middleware found it. Every member is optional: a route asks the
/// context for what it needs and gets the matching error when it is missing.
public struct RequestIdentity: Sendable {
    /// The bearer session token (RFC 6750 §2.1).
    public var sessionToken: String?
    /// The session behind the token, with its per-factor proofs (``Session/proofs``), on routes that resolve it.
    public var session: Session?
    /// The factor-change grant, on the factor routes.
    public var factorChange: FactorChangeGrant?
    /// True once ``AdminAuthorizer`` admitted the session.
    public var isAdmin = false
    /// How the `Authorization` header authenticates a pipeline client, on the OAuth endpoints.
    var clientAuthorization: ClientAuthorization?

    public init() {}
}

/// A pipeline client's id and secret (RFC 6749 §2.3.1).
public struct ClientCredentials: Sendable, Hashable {
    public var id: String
    public var secret: String
}

/// The `Authorization` header of an OAuth endpoint request: HTTP Basic credentials, or a header that is present but
/// is no readable Basic credential (which still counts as a client authentication method, RFC 6749 §2.3).
enum ClientAuthorization: Sendable {
    case basic(ClientCredentials)
    case unreadable
}
