import Foundation
import Hummingbird
import Mustache
import StagepassBroker
import StagepassJOSE

/// Cookies, CSRF tokens and the security headers of the pages.
///
/// - The session lives in the `sp_session` cookie (`HttpOnly; SameSite=Strict; Path=/`, plus `Secure` unless the
///   broker runs in development mode on plain-HTTP loopback); the password-only step in `sp_pending` (5 minutes).
/// - CSRF: a random `sp_csrf` cookie, and every form (and every script POST, in `X-CSRF-Token`) carries
///   HMAC-SHA-256(per-process key, cookie). A planted cookie is useless without the key; a cross-site form has
///   neither (and SameSite=Strict keeps the session cookie off it anyway).
/// - Every page carries a strict Content-Security-Policy (no inline script or style), `X-Frame-Options: DENY`,
///   `nosniff`, `no-referrer` and `no-store`.
struct PageSecurity: Sendable {
    let key: [UInt8]
    let secureCookies: Bool

    static let session = "sp_session"
    static let pending = "sp_pending"
    static let csrfCookie = "sp_csrf"
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

    func csrfToken(nonce: String) throws -> String {
        Base64URL.encode(try Crypto.hmac(.sha256, key: key, data: Array(nonce.utf8)))
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

/// Per-request rendering state: the CSRF nonce (new ones are set as a cookie) and the signed-in session.
struct PageRequest {
    let request: Request
    let cookies: [String: String]
    let nonce: String
    let newNonce: Bool
    var session: Session?
    var sessionToken: String?

    init(_ request: Request, broker: HumanBroker) throws {
        self.request = request
        cookies = PageSecurity.cookies(request)
        if let n = cookies[PageSecurity.csrfCookie], n.utf8.count == 43 {
            nonce = n
            newNonce = false
        } else {
            nonce = Base64URL.encode(try Crypto.randomBytes(32))
            newNonce = true
        }
        if let t = cookies[PageSecurity.session], let s = try? broker.sessions.requireMFA(token: t) {
            session = s
            sessionToken = t
        }
    }
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
        // No token (HMAC failed) renders an empty one, which checkCSRF never accepts: forms fail closed.
        let csrf = (try? security.csrfToken(nonce: pr.nonce)) ?? ""
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
        if pr.newNonce {
            headers.append(PageSecurity.Field(name: .setCookie, value: security.setCookie(PageSecurity.csrfCookie, pr.nonce)))
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

    /// Only same-site paths are followed after sign-in (no open redirect).
    static func safeNext(_ s: String?) -> String {
        guard let s, s.hasPrefix("/"), !s.hasPrefix("//"), !s.contains("\\"), s.utf8.count < 512 else { return "/" }
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
    /// header) must be the HMAC of this browser's `sp_csrf` cookie, compared in constant time.
    func checkCSRF(_ field: String?, _ request: Request, _ pr: PageRequest) throws {
        let presented = field ?? PageSecurity.name("X-CSRF-Token").flatMap { request.headers[$0] } ?? ""
        let expected = try security.csrfToken(nonce: pr.nonce)
        guard !pr.newNonce, Crypto.constantTimeEqual(Array(presented.utf8), Array(expected.utf8)) else {
            throw PageError.csrf
        }
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
            let pr = try PageRequest(request, broker: broker)
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
                return redirect("/signin", cookies: [security.setCookie(PageSecurity.session, "", maxAge: 0)])
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
        let pr = try PageRequest(request, broker: broker)
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
                    cookies: [security.setCookie(PageSecurity.pending, r.token, maxAge: Int(broker.policy.pendingSeconds))])
            }
            return redirect(next, cookies: [security.setCookie(PageSecurity.session, r.token)])
        } catch let e as BrokerError {
            return render("signin", title: "Sign in", pr, ["next": next], error: Self.message(e), status: .unauthorized)
        }
    }

    func pendingSession(_ pr: PageRequest) -> (Session, String)? {
        guard let t = pr.cookies[PageSecurity.pending], let s = try? broker.sessions.authenticate(token: t),
            !s.isMFA
        else { return nil }
        return (s, t)
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
                    security.setCookie(PageSecurity.session, issued.token),
                    security.setCookie(PageSecurity.pending, "", maxAge: 0),
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
            "factors": list.filter { $0.kind != .backup }.map { f -> [String: Any] in
                ["id": f.id, "kind": f.kind == .webauthn ? "security key" : "authenticator app",
                 "label": names[f.id] ?? "", "state": f.state.rawValue, "created": time(f.createdAt)]
            },
            "backupLeft": try broker.factors.backupCodesLeft(userId: s.userId),
        ]
    }

    func factorsPage(_ pr: PageRequest, _ s: Session, extra: [String: Any] = [:], error: String? = nil,
                     notice: String? = nil) throws -> Response {
        render("factors", title: "Factors", pr, try factorsContext(s).merging(extra) { _, b in b }, error: error,
               notice: notice)
    }

    func enrolTOTP(_ request: Request, _ pr: PageRequest, _ s: Session) async throws -> Response {
        _ = try await form(request, pr)
        let e = try broker.factors.enrolTOTP(userName: s.userName, actor: s.userName)
        let svg = Data(e.qr.svg().utf8).base64EncodedString()
        return try factorsPage(pr, s, extra: ["enrolment": ["qr": "data:image/svg+xml;base64," + svg, "secret": e.secret]])
    }

    func confirmTOTP(_ request: Request, _ pr: PageRequest, _ s: Session) async throws -> Response {
        let f = try await form(request, pr)
        do {
            _ = try broker.factors.confirmTOTP(userId: s.userId, code: f["code"] ?? "", actor: s.userName)
            return try factorsPage(pr, s, notice: "The authenticator app is active.")
        } catch let e as BrokerError {
            return try factorsPage(pr, s, error: Self.message(e))
        }
    }

    func backupCodes(_ request: Request, _ pr: PageRequest, _ s: Session) async throws -> Response {
        _ = try await form(request, pr)
        let codes = try broker.factors.regenerateBackupCodes(userName: s.userName, actor: s.userName)
        return try factorsPage(pr, s, extra: ["codes": codes])
    }

    /// Removing a factor is a step-up action: the form carries a code, proved first.
    func removeFactor(_ request: Request, _ context: BrokerRequestContext, _ pr: PageRequest, _ s: Session) async throws
        -> Response
    {
        let f = try await form(request, pr)
        let id = try context.parameters.require("id")
        do {
            _ = try broker.sessions.stepUp(
                token: pr.sessionToken ?? "", proof: FactorProof.code(f["code"] ?? ""), address: context.clientAddress)
            try broker.factors.remove(userId: s.userId, factorId: id, actor: s.userName)
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
        let items = try broker.store.liveDelegations(userId: s.userId, now: broker.clock.now()).map {
            ["client": $0.clientId, "role": $0.role, "stage": $0.stage, "audience": $0.audience, "until": time($0.expiresAt)]
        }
        return render(
            "delegations", title: "Delegations", pr,
            ["delegable": delegable.isEmpty ? "no stage allows it" : delegable.joined(separator: "; "), "items": items],
            error: error, notice: notice)
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
        _ = try await form(request, pr)
        if let step = try freshAdmin(pr, s, next: "/admin/keys") { return step }
        let r = try await tokens.rotateKeys(by: s)
        return try await keysPage(pr, s, notice: "Rotated: \(r.activeKid) signs now.")
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
