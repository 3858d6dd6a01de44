import Foundation
import Hummingbird
import Mustache
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
///   an action of a signed-in user: the session id is known only to the broker.
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

    func setCookie(_ name: String, _ value: String, maxAge: Int? = nil) -> String {
        var c = "\(name)=\(value); Path=/; HttpOnly; SameSite=Strict"
        if secureCookies { c += "; Secure" }
        if let maxAge { c += "; Max-Age=\(maxAge)" }
        return c
    }

    static func cookies(_ request: Request) -> [String: String] {
        var out: [String: String] = [:]
        for header in request.headers[values: .cookie] {
            for part in header.split(separator: ";") {
                let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                if kv.count == 2, out[kv[0]] == nil { out[kv[0]] = kv[1] }
            }
        }
        return out
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
}

/// A page-level refusal: rendered as a page (or JSON for script calls), never a stack trace.
struct PageError: Error {
    var status: HTTPResponse.Status
    var message: String
    static let csrf = PageError(status: .forbidden, message: "The form expired or did not come from this site; reload the page and try again.")
}

/// Per-request rendering state: the signed-in (or signing-in) session, the CSRF binding, and a new nonce cookie
/// when the browser has none.
struct PageRequest {
    let request: Request
    let cookies: [String: String]
    let nonce: String
    let newNonce: Bool
    var session: Session?
    var sessionToken: String?
    /// The pending sign-in session (password proved, factor not yet) and its token.
    var pending: (session: Session, token: String)?

    init(_ request: Request, broker: HumanBroker, security: PageSecurity) throws {
        self.request = request
        cookies = PageSecurity.cookies(request)
        if let n = cookies[security.csrfCookie], n.utf8.count == 43 {
            nonce = n
            newNonce = false
        } else {
            nonce = Base64URL.encode(try Crypto.randomBytes(32))
            newNonce = true
        }
        if let t = cookies[security.sessionCookie], let s = try? broker.sessions.requireMFA(token: t) {
            session = s
            sessionToken = t
        }
        if let t = cookies[security.pendingCookie], let s = try? broker.sessions.authenticate(token: t), !s.isMFA {
            pending = (s, t)
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

/// The server-rendered pages for people: sign-in, factors, approvals, delegations and the admin pages.
struct PagesAPI: Sendable {
    let tokens: TokenBroker
    let options: HTTPOptions
    let security: PageSecurity
    let library: MustacheLibrary
    var broker: HumanBroker { tokens.human }

    init(tokens: TokenBroker, options: HTTPOptions) throws {
        self.tokens = tokens
        self.options = options
        security = try PageSecurity(issuer: options.issuer)
        var lib = MustacheLibrary()
        for (name, text) in PageTemplates.all { try lib.register(text, named: name) }
        library = lib
    }

    // MARK: rendering

    func render(
        _ template: String, title: String, _ pr: PageRequest, _ ctx: [String: Any] = [:], error: String? = nil,
        notice: String? = nil, status: HTTPResponse.Status = .ok, cookies: [String] = []
    ) -> Response {
        var c = ctx
        let csrf = (try? security.csrfToken(binding: pr.renderBinding)) ?? ""
        c["csrf"] = csrf
        let body = library.render(c, withTemplate: template) ?? ""
        var layout: [String: Any] = ["title": title, "csrf": csrf, "body": body]
        if let s = pr.session {
            layout["user"] = ["name": s.userName, "admin": tokens.policy.current.isAdmin(groups: s.groups)]
        }
        if let error { layout["error"] = error }
        if let notice { layout["notice"] = notice }
        let html = library.render(layout, withTemplate: "layout") ?? ""
        var headers: HTTPFields = [.contentType: "text/html; charset=utf-8"]
        PageSecurity.headers(&headers)
        if pr.newNonce && pr.csrfBinding == nil {
            headers.append(PageSecurity.Field(name: .setCookie, value: security.setCookie(security.csrfCookie, pr.nonce)))
        }
        for cookie in cookies { headers.append(PageSecurity.Field(name: .setCookie, value: cookie)) }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    func redirect(_ location: String, cookies: [String] = []) -> Response {
        var headers: HTTPFields = [.location: location]
        PageSecurity.headers(&headers)
        for cookie in cookies { headers.append(PageSecurity.Field(name: .setCookie, value: cookie)) }
        return Response(status: .seeOther, headers: headers)
    }

    /// Only same-site absolute paths of safe characters are followed after sign-in (no open redirect): a leading
    /// `/`, then only RFC 3986 unreserved, sub-delims, `:`, `@`, `/`, `?` and `%`, and never `//` (a browser drops
    /// tabs and newlines and reads `/\t/evil.example` or `/\\evil.example` as another host). Anything else is `/`.
    static func safeNext(_ s: String?) -> String {
        guard let s, s.utf8.count < 512, s.utf8.first == UInt8(ascii: "/"), !s.contains("//") else { return "/" }
        let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%".utf8)
        guard s.utf8.allSatisfy({ allowed.contains($0) }) else { return "/" }
        return s
    }

    static func pathEscape(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-_.~/"))) ?? "/"
    }

    func signInRedirect(_ request: Request) -> Response {
        var next = request.uri.path
        if let q = request.uri.query, !q.isEmpty { next += "?" + q }
        return redirect("/signin?next=" + (next.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "/"))
    }

    /// Parses a form post and checks its CSRF token (a form field, or the `X-CSRF-Token` header for scripts).
    func form(_ request: Request, _ pr: PageRequest) async throws -> [String: String] {
        let fields: [String: String]
        if request.headers[.contentType]?.lowercased().hasPrefix("application/json") == true {
            let body = try await JSONBody(request, options, allowEmpty: true)
            fields = body.fields.compactMapValues { $0.stringValue }
        } else {
            do { fields = try await FormBody(request, options).fields } catch let e as OAuthError {
                throw PageError(status: .badRequest, message: e.errorDescription)
            }
        }
        try checkCSRF(fields["csrf"], request, pr)
        return fields
    }

    /// The CSRF check of every state-changing page call: the form's `csrf` field (else the script's `X-CSRF-Token`
    /// header) must be the HMAC of this request's binding (session, pending sign-in, or nonce cookie), compared in
    /// constant time. No binding, or an empty token, never passes.
    func checkCSRF(_ field: String?, _ request: Request, _ pr: PageRequest) throws {
        let presented = field ?? PageSecurity.name("X-CSRF-Token").flatMap { request.headers[$0] } ?? ""
        guard let binding = pr.csrfBinding, !presented.isEmpty,
            let expected = try? security.csrfToken(binding: binding),
            Crypto.constantTimeEqual(Array(presented.utf8), Array(expected.utf8))
        else { throw PageError.csrf }
    }

    func time(_ t: Int64?) -> String {
        guard let t else { return "—" }
        return Date(timeIntervalSince1970: TimeInterval(t)).formatted(.iso8601)
    }

    static func duration(_ s: Int64) -> String {
        if s >= 3600 { return "\(s / 3600) h \(s % 3600 / 60) min" }
        if s >= 60 { return "\(s / 60) min" + (s % 60 > 0 ? " \(s % 60) s" : "") }
        return "\(s) s"
    }

    /// A readable sentence for a broker refusal (the pages never show stack traces or internals).
    static func message(_ error: any Error) -> String {
        switch error {
        case let e as BrokerError: return e.detail.isEmpty ? e.code : e.detail
        case let e as OAuthError: return e.errorDescription
        case let e as PageError: return e.message
        case let e as StoreError: return e.detail
        case let e as WebAuthnError: return message(e.brokerError)
        default: return "Something went wrong; nothing was changed."
        }
    }

    // MARK: routes

    func register(on router: Router<BrokerRequestContext>) {
        router.get("/static/app.css") { _, _ in asset(PageTemplates.css, "text/css; charset=utf-8") }
        router.get("/static/app.js") { _, _ in asset(PageTemplates.script, "text/javascript; charset=utf-8") }
        router.get("/signin") { request, _ in
            let pr = try PageRequest(request, broker: broker, security: security)
            let next = Self.safeNext(request.uri.queryParameters["next"].map(String.init))
            return render("signin", title: "Sign in", pr, ["next": next])
        }
        router.post("/signin") { request, context in try await guarded(request) { pr in try await signIn(request, context, pr) } }
        router.get("/signin/factor") { request, _ in try await guarded(request) { pr in try factorPage(request, pr) } }
        router.post("/signin/factor") { request, context in try await guarded(request) { pr in try await factorStep(request, context, pr) } }
        router.post("/signout") { request, _ in
            try await guarded(request) { pr in
                _ = try await form(request, pr)
                if let t = pr.sessionToken { try? broker.sessions.signOut(token: t) }
                return redirect("/signin", cookies: [security.setCookie(security.sessionCookie, "", maxAge: 0)])
            }
        }
        router.get("/") { request, _ in try await signedIn(request) { pr, s in try home(pr, s) } }
        router.get("/factors") { request, _ in try await signedIn(request) { pr, s in try factorsPage(pr, s) } }
        router.post("/factors/totp") { request, _ in try await signedIn(request) { pr, s in try await enrolTOTP(request, pr, s) } }
        router.post("/factors/totp/confirm") { request, _ in try await signedIn(request) { pr, s in try await confirmTOTP(request, pr, s) } }
        router.post("/factors/backup-codes") { request, _ in try await signedIn(request) { pr, s in try await backupCodes(request, pr, s) } }
        router.post("/factors/:id/remove") { request, context in
            try await signedIn(request) { pr, s in try await removeFactor(request, context, pr, s) }
        }
        router.get("/approvals") { request, _ in try await signedIn(request) { pr, s in try approvalsPage(pr, s) } }
        router.get("/approve") { request, context in
            try await signedIn(request) { pr, s in
                let code = request.uri.queryParameters["code"].map(String.init) ?? ""
                // After a security-key approval the script lands here with the outcome to show.
                let notice: String? =
                    switch request.uri.queryParameters["result"].map(String.init) {
                    case "approved": "Approved: the pipeline receives its token."
                    case "recorded": "Your approval is recorded; waiting for more approvers."
                    default: nil
                    }
                return try approvePage(code, context.clientAddress, pr, s, notice: notice)
            }
        }
        router.post("/approve/:code") { request, context in
            try await signedIn(request) { pr, s in try await approve(request, context, pr, s) }
        }
        router.post("/deny/:code") { request, context in
            try await signedIn(request) { pr, s in try await deny(request, context, pr, s) }
        }
        router.get("/delegations") { request, _ in try await signedIn(request) { pr, s in try delegationsPage(pr, s) } }
        router.post("/delegations") { request, _ in try await signedIn(request) { pr, s in try await delegate(request, pr, s) } }
        router.post("/delegations/:id/revoke") { request, context in
            try await signedIn(request) { pr, s in try await revokeDelegation(request, context, pr, s) }
        }
        router.get("/stepup") { request, _ in
            try await signedIn(request) { pr, s in
                let next = Self.safeNext(request.uri.queryParameters["next"].map(String.init))
                return try stepUpPage(pr, s, next: next, why: "This needs a second factor proved just now.")
            }
        }
        router.post("/stepup") { request, context in try await signedIn(request) { pr, s in try await stepUp(request, context, pr, s) } }
        router.get("/admin/keys") { request, _ in try await admin(request) { pr, s in try await keysPage(pr, s) } }
        router.post("/admin/keys/rotate") { request, _ in try await admin(request) { pr, s in try await rotate(request, pr, s) } }
        router.get("/admin/revocations") { request, _ in try await admin(request) { pr, s in try await revocationsPage(pr, s) } }
        router.post("/admin/revocations") { request, _ in try await admin(request) { pr, s in try await revoke(request, pr, s) } }
        router.get("/admin/audit") { request, _ in try await admin(request) { pr, s in try auditPage(request, pr, s) } }
        router.post("/admin/audit/verify") { request, _ in try await admin(request) { pr, s in try await verifyAudit(request, pr, s) } }
        registerWebAuthn(on: router)
    }

    func asset(_ text: String, _ type: String) -> Response {
        var headers: HTTPFields = [.contentType: type]
        PageSecurity.headers(&headers)
        headers[.cacheControl] = "public, max-age=300"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// Runs a page handler; a refusal becomes a page with the message (JSON for script calls).
    func guarded(_ request: Request, _ body: (PageRequest) async throws -> Response) async throws -> Response {
        let pr = try PageRequest(request, broker: broker, security: security)
        do { return try await body(pr) } catch let e as PageError {
            if request.headers[.contentType]?.hasPrefix("application/json") == true {
                return json(e.status, ["detail": .string(e.message)])
            }
            return render("message", title: "Refused", pr,
                          ["heading": "Refused", "text": e.message, "link": "/", "linkText": "Back"], status: e.status)
        }
    }

    func signedIn(_ request: Request, _ body: (PageRequest, Session) async throws -> Response) async throws -> Response {
        try await guarded(request) { pr in
            guard let s = pr.session else { return signInRedirect(request) }
            return try await body(pr, s)
        }
    }

    func admin(_ request: Request, _ body: (PageRequest, Session) async throws -> Response) async throws -> Response {
        try await signedIn(request) { pr, s in
            guard tokens.policy.current.isAdmin(groups: s.groups) else {
                throw PageError(status: .forbidden, message: "This page is for administrators.")
            }
            return try await body(pr, s)
        }
    }

    /// Admin actions need a fresh factor: otherwise the step-up page, which returns to `next`.
    func freshAdmin(_ pr: PageRequest, _ s: Session, next: String) throws -> Response? {
        do { try tokens.requireAdmin(s) } catch let e where e.error == "insufficient_user_authentication" {
            return try stepUpPage(pr, s, next: next, why: e.errorDescription)
        }
        return nil
    }

    // MARK: sign-in

    func signIn(_ request: Request, _ context: BrokerRequestContext, _ pr: PageRequest) async throws -> Response {
        let f = try await form(request, pr)
        let next = Self.safeNext(f["next"])
        do {
            let r = try await broker.sessions.signIn(
                name: f["user"] ?? "", password: f["password"] ?? "", address: context.clientAddress)
            if r.needsFactor {
                return redirect(
                    "/signin/factor?next=" + (next.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "/"),
                    cookies: [security.setCookie(security.pendingCookie, r.token, maxAge: Int(broker.policy.pendingSeconds))])
            }
            return redirect(next, cookies: [security.setCookie(security.sessionCookie, r.token)])
        } catch let e as BrokerError {
            return render("signin", title: "Sign in", pr, ["next": next], error: Self.message(e), status: .unauthorized)
        }
    }

    func pendingSession(_ pr: PageRequest) -> (Session, String)? {
        pr.pending.map { ($0.session, $0.token) }
    }

    func factorContext(_ s: Session, next: String) throws -> [String: Any] {
        let allowed = broker.policy.allowedFactors(groups: s.groups)
        let mine = try broker.factors.list(userId: s.userId)
        return [
            "account": s.userName, "next": next,
            "totp": allowed.contains(.totp) && mine.contains { $0.kind == .totp },
            "backup": allowed.contains(.backup),
            "webauthn": allowed.contains(.webauthn) && mine.contains { $0.kind == .webauthn && $0.state == .active },
        ]
    }

    func factorPage(_ request: Request, _ pr: PageRequest) throws -> Response {
        guard let (s, _) = pendingSession(pr) else { return redirect("/signin") }
        let next = Self.safeNext(request.uri.queryParameters["next"].map(String.init))
        return render("factor", title: "Second factor", pr, try factorContext(s, next: next))
    }

    func factorStep(_ request: Request, _ context: BrokerRequestContext, _ pr: PageRequest) async throws -> Response {
        let f = try await form(request, pr)
        guard let (s, token) = pendingSession(pr) else { return redirect("/signin") }
        let next = Self.safeNext(f["next"])
        let code = f["code"] ?? ""
        let proof: FactorProof = f["method"] == "backup" ? .backupCode(code) : .totp(code)
        do {
            let issued = try broker.sessions.completeFactor(pendingToken: token, proof: proof, address: context.clientAddress)
            return redirect(
                next,
                cookies: [
                    security.setCookie(security.sessionCookie, issued.token),
                    security.setCookie(security.pendingCookie, "", maxAge: 0),
                ])
        } catch let e as BrokerError {
            return render("factor", title: "Second factor", pr, try factorContext(s, next: next), error: Self.message(e),
                          status: .unauthorized)
        }
    }

    // MARK: home and factors

    func home(_ pr: PageRequest, _ s: Session) throws -> Response {
        let p = tokens.policy.current
        let pending = (try? tokens.pendingRequests(sessionToken: pr.sessionToken ?? ""))?.count ?? 0
        return render(
            "home", title: "Home", pr,
            [
                "name": s.userName, "groups": s.groups.joined(separator: ", "),
                "roles": p.roles(forGroups: s.groups).map(\.name).joined(separator: ", "),
                "amr": s.amr.joined(separator: " + "),
                "authAge": Self.duration(max(0, broker.clock.now() - s.authTime)), "pending": pending,
            ])
    }

    func factorsContext(_ s: Session) throws -> [String: Any] {
        let list = try broker.factors.list(userId: s.userId)
        let names = (try? webauthnNames(s.userId)) ?? [:]
        return [
            "changeWindow": Self.duration(broker.policy.factorChangeMaxAge),
            "backupLastUsed": list.first { $0.kind == .backup }?.lastUsedAt.map { time($0) } ?? false,
            "factors": list.filter { $0.kind != .backup }.map { f -> [String: Any] in
                ["id": f.id, "kind": f.kind == .webauthn ? "security key" : "authenticator app",
                 "label": names[f.id] ?? "", "state": f.state.rawValue, "created": time(f.createdAt),
                 "lastUsed": f.lastUsedAt.map { time($0) } ?? "never"]
            },
            "backupLeft": try broker.factors.backupCodesLeft(userId: s.userId),
        ]
    }

    func factorsPage(_ pr: PageRequest, _ s: Session, extra: [String: Any] = [:], error: String? = nil,
                     notice: String? = nil) throws -> Response {
        render("factors", title: "Factors", pr, try factorsContext(s).merging(extra) { _, b in b }, error: error,
               notice: notice)
    }

    /// Factor changes need a fresh proof of an active factor: otherwise the step-up page, which returns here.
    enum FactorChange {
        case granted(FactorChangeGrant)
        case stepUp(Response)
    }

    func factorChange(_ pr: PageRequest, _ s: Session) throws -> FactorChange {
        do { return .granted(try broker.sessions.authorizeFactorChange(token: pr.sessionToken ?? "")) } catch let e
            as BrokerError where e == .stepUpRequired
        {
            return .stepUp(try stepUpPage(pr, s, next: "/factors", why: e.detail))
        }
    }

    func enrolTOTP(_ request: Request, _ pr: PageRequest, _ s: Session) async throws -> Response {
        _ = try await form(request, pr)
        let grant: FactorChangeGrant
        switch try factorChange(pr, s) {
        case .granted(let g): grant = g
        case .stepUp(let page): return page
        }
        let e = try broker.factors.enrolTOTP(userName: s.userName, actor: s.userName, authorisedBy: grant.authorisedBy)
        let svg = Data(e.qr.svg().utf8).base64EncodedString()
        return try factorsPage(pr, s, extra: ["enrolment": ["qr": "data:image/svg+xml;base64," + svg, "secret": e.secret]])
    }

    func confirmTOTP(_ request: Request, _ pr: PageRequest, _ s: Session) async throws -> Response {
        let f = try await form(request, pr)
        let grant: FactorChangeGrant
        switch try factorChange(pr, s) {
        case .granted(let g): grant = g
        case .stepUp(let page): return page
        }
        do {
            _ = try broker.factors.confirmTOTP(
                userId: s.userId, code: f["code"] ?? "", actor: s.userName, authorisedBy: grant.authorisedBy)
            return try factorsPage(pr, s, notice: "The authenticator app is active.")
        } catch let e as BrokerError {
            return try factorsPage(pr, s, error: Self.message(e))
        }
    }

    func backupCodes(_ request: Request, _ pr: PageRequest, _ s: Session) async throws -> Response {
        _ = try await form(request, pr)
        let grant: FactorChangeGrant
        switch try factorChange(pr, s) {
        case .granted(let g): grant = g
        case .stepUp(let page): return page
        }
        let codes = try broker.factors.regenerateBackupCodes(
            userName: s.userName, actor: s.userName, authorisedBy: grant.authorisedBy)
        return try factorsPage(pr, s, extra: ["codes": codes, "hasCodes": !codes.isEmpty])
    }

    /// Removing a factor is a step-up action: the form carries a code, proved first; then the change rule applies.
    func removeFactor(_ request: Request, _ context: BrokerRequestContext, _ pr: PageRequest, _ s: Session) async throws
        -> Response
    {
        let f = try await form(request, pr)
        let id = try context.parameters.require("id")
        do {
            _ = try broker.sessions.stepUp(
                token: pr.sessionToken ?? "", proof: FactorProof.code(f["code"] ?? ""), address: context.clientAddress)
            let grant = try broker.sessions.authorizeFactorChange(token: pr.sessionToken ?? "")
            try broker.factors.remove(userId: s.userId, factorId: id, actor: s.userName, authorisedBy: grant.authorisedBy)
            return try factorsPage(pr, s, notice: "The factor was removed.")
        } catch let e as BrokerError {
            return try factorsPage(pr, s, error: Self.message(e))
        }
    }

    // MARK: approvals

    func approvalsPage(_ pr: PageRequest, _ s: Session) throws -> Response {
        let views = try tokens.pendingRequests(sessionToken: pr.sessionToken ?? "")
        return render(
            "approvals", title: "Approvals", pr,
            [
                "hasRequests": !views.isEmpty,
                "requests": views.map { v -> [String: Any] in
                    ["userCode": v.request.userCode, "client": v.request.clientId, "runId": v.request.runId,
                     "role": v.request.role, "stage": v.request.stage, "audience": v.request.audience,
                     "count": v.approvals.count, "needed": v.approversNeeded]
                }
            ])
    }

    func approveContext(_ v: RequestView, _ s: Session) throws -> [String: Any] {
        let r = v.request
        let p = tokens.policy.current
        let stage = p.stages[r.stage]
        var excluded = Set(v.approvals.map(\.userName)).union([s.userName])
        if stage?.allowSelfApproval == false, let t = r.triggeredBy { excluded.insert(t) }
        let others = try tokens.holders(ofRole: r.role, excluding: excluded)
        let pending = r.state == .pending && !v.expired
        var ctx: [String: Any] = [
            "userCode": r.userCode, "client": r.clientId, "runId": r.runId, "commit": r.commit ?? "—",
            "triggeredBy": r.triggeredBy ?? "—", "role": r.role, "stage": r.stage, "audience": r.audience,
            "lifetime": Self.duration(min(stage?.maxTTL ?? p.tokens.maxTTL, p.tokens.maxTTL)),
            "count": v.approvals.count, "needed": v.approversNeeded, "approvers": v.approvals.map(\.userName),
            "hasApprovers": !v.approvals.isEmpty,
            "others": others.isEmpty ? "nobody else" : others.joined(separator: ", "),
            "state": v.expired && r.state == .pending ? "expired" : r.state.rawValue, "pending": pending,
            "expiresIn": Self.duration(max(0, r.expiresAt - broker.clock.now())),
        ]
        if let problem = tokens.freshnessProblem(s, stage: r.stage, approving: true) {
            let kinds = stage?.factorsForApproval ?? []
            ctx["fresh"] = false
            ctx["needs"] = problem.errorDescription
            ctx["allowsTotp"] = kinds.contains(.totp)
            ctx["allowsKey"] = kinds.contains(.webauthn)
        } else {
            ctx["fresh"] = true
        }
        return ctx
    }

    /// Failed code lookups are throttled per user and per client address (RFC 8628 §5.1), like the API's.
    func approvePage(_ code: String, _ address: String, _ pr: PageRequest, _ s: Session, error: String? = nil,
                     notice: String? = nil) throws -> Response {
        do {
            let v = try tokens.view(userCode: code, sessionToken: pr.sessionToken ?? "", address: address)
            return render("approve", title: "Approve run \(v.request.runId)", pr, try approveContext(v, s),
                          error: error, notice: notice)
        } catch let e as OAuthError {
            return render("message", title: "Not found", pr,
                          ["heading": "No such request", "text": e.errorDescription, "link": "/approvals",
                           "linkText": "Pending approvals"], status: .notFound)
        }
    }

    func approve(_ request: Request, _ context: BrokerRequestContext, _ pr: PageRequest, _ s: Session) async throws
        -> Response
    {
        let f = try await form(request, pr)
        let code = try context.parameters.require("code")
        let proof = (f["code"]?.isEmpty == false) ? FactorProof.code(f["code"] ?? "") : nil
        do {
            let o = try tokens.approve(
                userCode: code, sessionToken: pr.sessionToken ?? "", proof: proof, address: context.clientAddress)
            let session = (try? broker.sessions.requireMFA(token: pr.sessionToken ?? "")) ?? s
            return try approvePage(
                code, context.clientAddress, pr, session,
                notice: o.approved
                    ? "Approved: the pipeline receives its token."
                    : "Your approval is recorded (\(o.approvals) of \(o.needed)); waiting for more approvers.")
        } catch {
            let session = (try? broker.sessions.requireMFA(token: pr.sessionToken ?? "")) ?? s
            return try approvePage(code, context.clientAddress, pr, session, error: Self.message(error))
        }
    }

    func deny(_ request: Request, _ context: BrokerRequestContext, _ pr: PageRequest, _ s: Session) async throws
        -> Response
    {
        let f = try await form(request, pr)
        let code = try context.parameters.require("code")
        let reason = f["reason"].flatMap { $0.isEmpty ? nil : $0 }
        do {
            try tokens.deny(userCode: code, sessionToken: pr.sessionToken ?? "", reason: reason, address: context.clientAddress)
            return try approvePage(code, context.clientAddress, pr, s, notice: "Denied: the pipeline is told so.")
        } catch {
            return try approvePage(code, context.clientAddress, pr, s, error: Self.message(error))
        }
    }

    // MARK: delegations

    func delegationsPage(_ pr: PageRequest, _ s: Session, error: String? = nil, notice: String? = nil) throws -> Response {
        let p = tokens.policy.current
        let delegable = p.stages.values.compactMap { st -> String? in
            if case .delegated(let w) = st.approval { return "\(st.name): up to \(Self.duration(w))" }
            return nil
        }.sorted()
        let items = try tokens.delegations(sessionToken: pr.sessionToken ?? "").map {
            ["id": $0.id, "client": $0.clientId, "role": $0.role, "stage": $0.stage, "audience": $0.audience,
             "until": time($0.expiresAt)]
        }
        return render(
            "delegations", title: "Delegations", pr,
            ["delegable": delegable.isEmpty ? "no stage allows it" : delegable.joined(separator: "; "), "items": items,
             "hasItems": !items.isEmpty],
            error: error, notice: notice)
    }

    func revokeDelegation(_ request: Request, _ context: BrokerRequestContext, _ pr: PageRequest, _ s: Session)
        async throws -> Response
    {
        _ = try await form(request, pr)
        let id = try context.parameters.require("id")
        do {
            let revoked = try tokens.revokeDelegation(id: id, sessionToken: pr.sessionToken ?? "", reason: nil)
            return try delegationsPage(pr, s, notice: revoked ? "The delegation was revoked." : "It had already ended.")
        } catch {
            return try delegationsPage(pr, s, error: Self.message(error))
        }
    }

    func delegate(_ request: Request, _ pr: PageRequest, _ s: Session) async throws -> Response {
        let f = try await form(request, pr)
        guard let hours = Int64(f["hours"] ?? ""), hours > 0, hours <= 720 else {
            return try delegationsPage(pr, s, error: "Hours must be a whole number from 1 to 720.")
        }
        do {
            let d = try tokens.delegate(
                sessionToken: pr.sessionToken ?? "", client: f["client"] ?? "", role: f["role"] ?? "",
                stage: f["stage"] ?? "", audience: f["audience"] ?? "", window: hours * 3600)
            return try delegationsPage(pr, s, notice: "Delegated \(d.clientId) for \(d.stage) until \(time(d.expiresAt)).")
        } catch {
            return try delegationsPage(pr, s, error: Self.message(error))
        }
    }

    // MARK: step-up

    func stepUpPage(_ pr: PageRequest, _ s: Session, next: String, why: String) throws -> Response {
        let hasKey = try broker.factors.list(userId: s.userId).contains { $0.kind == .webauthn && $0.state == .active }
        return render("stepup", title: "Confirm", pr, ["next": next, "why": why, "webauthn": hasKey])
    }

    func stepUp(_ request: Request, _ context: BrokerRequestContext, _ pr: PageRequest, _ s: Session) async throws
        -> Response
    {
        let f = try await form(request, pr)
        let next = Self.safeNext(f["next"])
        do {
            _ = try broker.sessions.stepUp(
                token: pr.sessionToken ?? "", proof: FactorProof.code(f["code"] ?? ""), address: context.clientAddress)
            return redirect(next)
        } catch let e as BrokerError {
            return render("stepup", title: "Confirm", pr, ["next": next, "why": "Try again."], error: Self.message(e),
                          status: .unauthorized)
        }
    }

    // MARK: admin

    func keysPage(_ pr: PageRequest, _ s: Session, error: String? = nil, notice: String? = nil) async throws -> Response {
        let keys = await tokens.keys.keys().reversed().map { k -> [String: Any] in
            ["kid": k.kid, "alg": k.alg, "state": k.state.rawValue, "created": time(k.created),
             "activates": time(k.activates), "retires": time(k.retires)]
        }
        return render("keys", title: "Keys", pr, ["keys": Array(keys)], error: error, notice: notice)
    }

    func rotate(_ request: Request, _ pr: PageRequest, _ s: Session) async throws -> Response {
        let f = try await form(request, pr)
        if let step = try freshAdmin(pr, s, next: "/admin/keys") { return step }
        do {
            let r = try await tokens.rotateKeys(by: s, force: f["force"] == "1")
            return try await keysPage(pr, s, notice: "Rotated: \(r.activeKid) signs now.")
        } catch let e as KeyStoreError where e == .nextNotPrePublished {
            return try await keysPage(pr, s, error: e.detail)
        }
    }

    func revocationsPage(_ pr: PageRequest, _ s: Session, error: String? = nil, notice: String? = nil) async throws
        -> Response
    {
        var revoked = 0
        let lists = try await tokens.statusLists.count()
        for n in 1...max(1, lists) { revoked += try await tokens.statusLists.revokedIndices(n).count }
        return render("revocations", title: "Revocations", pr, ["revokedCount": revoked], error: error, notice: notice)
    }

    func revoke(_ request: Request, _ pr: PageRequest, _ s: Session) async throws -> Response {
        let f = try await form(request, pr)
        if let step = try freshAdmin(pr, s, next: "/admin/revocations") { return step }
        // The page revokes tokens, sessions and users; keys are compromised from the keys' own commands.
        guard let kind = f["kind"], kind != "kid", let what = RevocationRequest(kind: kind, value: f["value"] ?? "")
        else { return try await revocationsPage(pr, s, error: "Choose what to revoke.") }
        do {
            let jtis = try await tokens.revoke(
                what, sessionToken: pr.sessionToken ?? "", reason: f["reason"].flatMap { $0.isEmpty ? nil : $0 })
            return try await revocationsPage(pr, s, notice: "Revoked \(jtis.count) token(s).")
        } catch {
            return try await revocationsPage(pr, s, error: Self.message(error))
        }
    }

    func auditPage(_ request: Request, _ pr: PageRequest, _ s: Session, notice: String? = nil, error: String? = nil)
        throws -> Response
    {
        let q = request.uri.queryParameters
        let user = q["user"].map(String.init) ?? ""
        let pipeline = q["pipeline"].map(String.init) ?? ""
        let stage = q["stage"].map(String.init) ?? ""
        let result = q["result"].map(String.init) ?? ""
        var rows: [[String: Any]] = []
        var after: Int64 = 0
        while true {
            let batch = try broker.store.auditRows(after: after, limit: 1000)
            for row in batch {
                guard let e = try? JSONDecoder().decode(AuditEvent.self, from: Data(row.event.utf8)) else { continue }
                if !user.isEmpty && e.actor != user && e.subject != user { continue }
                if !pipeline.isEmpty && e.details["client"] != pipeline && e.subject != pipeline { continue }
                if !stage.isEmpty && e.details["stage"] != stage { continue }
                if !result.isEmpty && e.result != result { continue }
                rows.append([
                    "seq": row.seq, "time": time(row.time), "action": e.action, "actor": e.actor ?? "",
                    "subject": e.subject ?? "", "result": e.result, "reason": e.reason ?? "",
                    "factors": e.factors.joined(separator: "+"),
                    "details": e.details.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "),
                ])
            }
            guard let last = batch.last, batch.count == 1000 else { break }
            after = last.seq
        }
        // Newest first, at most 500 on one page.
        let shown = Array(rows.reversed().prefix(500))
        return render(
            "audit", title: "Audit log", pr,
            ["rows": shown, "f": ["user": user, "pipeline": pipeline, "stage": stage]], error: error,
            notice: notice ?? "\(rows.count) record(s) match\(rows.count > 500 ? "; the newest 500 are shown" : "").")
    }

    func verifyAudit(_ request: Request, _ pr: PageRequest, _ s: Session) async throws -> Response {
        _ = try await form(request, pr)
        let v = try broker.audit.verify()
        if v.isIntact { return try auditPage(request, pr, s, notice: "The hash chain is intact: \(v.count) records.") }
        return try auditPage(
            request, pr, s, error: "The hash chain is BROKEN at record \(v.firstBadSeq ?? 0): \(v.reason ?? "")")
    }
}
