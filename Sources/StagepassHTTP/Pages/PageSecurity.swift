import Foundation
import Hummingbird
import StagepassBroker
import StagepassJOSE

/// Cookies, CSRF tokens and the security headers of the pages.
///
/// - The session lives in the `sp_session` cookie (`HttpOnly; SameSite=Strict; Path=/`), the password-only step in
///   `sp_pending` (5 minutes). Served over HTTPS, every cookie is `Secure` and named with the `__Host-` prefix
///   (RFC 6265bis §4.1.3.2: Secure, `Path=/`, no `Domain`), so a sibling domain cannot plant or shadow it; plain
///   HTTP is only for development on loopback, where browsers refuse the prefix.
/// - CSRF: every form (and every script POST, in `X-CSRF-Token`) carries HMAC-SHA-256(per-process key, binding),
///   where the binding is the signed-in session's id, else the pending sign-in session's id, else (only for the
///   sign-in form) a random `sp_csrf` cookie. A cookie an attacker plants can then at most forge a sign-in form, never
///   an action of a signed-in user: the session id is known only to the broker. ``CSRFMiddleware`` checks it.
/// - Every page carries a strict Content-Security-Policy (no inline script or style), `X-Frame-Options: DENY`,
///   `nosniff`, `no-referrer` and `no-store`.
struct PageSecurity: Sendable {
    let key: [UInt8]
    let secureCookies: Bool

    /// `__Host-` when served over HTTPS.
    var cookiePrefix: String { secureCookies ? "__Host-" : "" }
    var sessionCookie: String { cookiePrefix + "sp_session" }
    var pendingCookie: String { cookiePrefix + "sp_pending" }
    var csrfCookie: String { cookiePrefix + "sp_csrf" }
    static let csp =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    init(issuer: String) throws {
        key = try Crypto.randomBytes(32)
        // Plain HTTP is only for development on loopback; anything else gets Secure cookies.
        let devLoopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"].contains {
            issuer == $0 || issuer.hasPrefix($0 + ":") || issuer.hasPrefix($0 + "/")
        }
        secureCookies = !devLoopback
    }

    /// The CSRF token for a binding (see the type's documentation).
    func csrfToken(binding: String) throws -> String {
        Base64URL.encode(try Crypto.hmac(.sha256, key: key, data: Array(("stagepass-csrf\u{0}" + binding).utf8)))
    }

    /// Whether `presented` is the CSRF token of `binding`, compared in constant time. No binding, or an empty token,
    /// never passes.
    func verifyCSRF(_ presented: String, binding: String?) -> Bool {
        guard let binding, !presented.isEmpty, let expected = try? csrfToken(binding: binding) else { return false }
        return Crypto.constantTimeEqual(Array(presented.utf8), Array(expected.utf8))
    }

    /// A page cookie: `Path=/; HttpOnly; SameSite=Strict`, plus `Secure` over HTTPS (RFC 6265bis §4.1.2, §4.1.3.2);
    /// `maxAge: 0` deletes it.
    func setCookie(_ name: String, _ value: String, maxAge: Int? = nil) -> Cookie {
        Cookie(
            name: name,
            value: value,
            maxAge: maxAge,
            path: "/",
            secure: secureCookies,
            httpOnly: true,
            sameSite: .strict
        )
    }

    typealias Field = HTTPFields.Element

    /// A header name from a constant string (nil only for an invalid name, which a constant never is).
    static func name(_ s: String) -> Field.Name? { Field.Name(s) }

    static func headers(_ h: inout HTTPFields) {
        h[.contentSecurityPolicy] = csp
        h[.xContentTypeOptions] = "nosniff"
        h[.cacheControl] = "no-store"
        if let n = name("X-Frame-Options") { h[n] = "DENY" }
        if let n = name("Referrer-Policy") { h[n] = "no-referrer" }
    }

    /// Appends `Set-Cookie` fields.
    static func setCookies(_ cookies: [Cookie], in h: inout HTTPFields) {
        for cookie in cookies { h.append(Field(name: .setCookie, value: cookie.description)) }
    }
}

/// A page-level refusal: rendered as a page (or JSON for script calls), never a stack trace.
struct PageError: Error {
    var status: HTTPResponse.Status
    var message: String
    static let csrf = PageError(
        status: .forbidden,
        message: "The form expired or did not come from this site; reload the page and try again."
    )
}

/// Per-request page state, from the cookies: the signed-in (or signing-in) session, the CSRF binding, and a new
/// nonce cookie when the browser has none. ``PageSessionAuthenticator`` puts it in the request context.
struct PageRequest: Sendable {
    let nonce: String
    let newNonce: Bool
    var session: Session?
    var sessionToken: String?
    /// The pending sign-in session (password proved, factor not yet) and its token.
    var pending: PendingSignIn?
    /// A post's body and CSRF outcome, set by ``CSRFMiddleware``.
    var body: Result<PageBody, any Error>?

    struct PendingSignIn: Sendable {
        var session: Session
        var token: String
    }

    init(cookies: Cookies, broker: HumanBroker, security: PageSecurity) async throws {
        if let n = cookies[security.csrfCookie]?.value, n.utf8.count == 43 {
            nonce = n
            newNonce = false
        } else {
            nonce = Base64URL.encode(try Crypto.randomBytes(32))
            newNonce = true
        }
        if let t = cookies[security.sessionCookie]?.value, let s = try? await broker.sessions.requireMFA(token: t) {
            session = s
            sessionToken = t
        }
        if let t = cookies[security.pendingCookie]?.value, let s = try? await broker.sessions.authenticate(token: t),
            !s.isMFA
        {
            pending = PendingSignIn(session: s, token: t)
        }
    }

    /// What this request's CSRF token is bound to: the session, else the pending sign-in, else the nonce cookie.
    var csrfBinding: String? {
        if let session { return "session:" + session.id }
        if let pending { return "pending:" + pending.session.id }
        return newNonce ? nil : "nonce:" + nonce
    }

    /// The binding a page rendered now uses (a new nonce cookie goes out with it).
    var renderBinding: String { csrfBinding ?? "nonce:" + nonce }
}
