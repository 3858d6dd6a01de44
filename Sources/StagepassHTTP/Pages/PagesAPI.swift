import Foundation
import Hummingbird
import Mustache
import StagepassBroker
import StagepassJOSE

/// The server-rendered pages for people: sign-in, factors, approvals, delegations and the admin pages, one route
/// collection per area. Every page route runs behind ``PageSessionAuthenticator`` (cookies) and ``CSRFMiddleware``.
struct PagesAPI: Sendable {
    let tokens: TokenBroker
    let options: HTTPOptions
    let security: PageSecurity
    let templates: PageTemplates
    let library: MustacheLibrary
    var broker: HumanBroker { tokens.human }

    init(tokens: TokenBroker, options: HTTPOptions) throws {
        self.tokens = tokens
        self.options = options
        security = try PageSecurity(issuer: options.issuer)
        templates = try PageTemplates()
        var lib = MustacheLibrary()
        for (name, text) in templates.templates { try lib.register(text, named: name) }
        library = lib
    }

    // MARK: routes

    func register(on router: Router<StagepassRequestContext>) {
        let assets = RouteCollection(context: StagepassRequestContext.self)
        assets.get("/static/app.css") { _, _ in asset(templates.css, "text/css; charset=utf-8") }
        assets.get("/static/app.js") { _, _ in asset(templates.script, "text/javascript; charset=utf-8") }
        router.addRoutes(assets)
        router.addRoutes(signInRoutes)
        router.addRoutes(factorRoutes)
        router.addRoutes(approvalRoutes)
        router.addRoutes(delegationRoutes)
        router.addRoutes(adminRoutes)
        router.addRoutes(webAuthnRoutes)
    }

    /// A route collection for pages: the cookie authenticator, then the CSRF check of posts.
    func pageRoutes(_ mode: CSRFMiddleware.Mode = .form) -> RouteCollection<StagepassRequestContext> {
        let routes = RouteCollection(context: StagepassRequestContext.self)
        routes.add(middleware: PageSessionAuthenticator(broker: broker, security: security))
        routes.add(middleware: CSRFMiddleware(mode: mode, options: options, security: security))
        return routes
    }

    // MARK: rendering

    func render(
        _ template: String,
        title: String,
        _ pr: PageRequest,
        _ ctx: [String: Any] = [:],
        error: String? = nil,
        notice: String? = nil,
        status: HTTPResponse.Status = .ok,
        cookies: [Cookie] = []
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
            PageSecurity.setCookies([security.setCookie(security.csrfCookie, pr.nonce)], in: &headers)
        }
        PageSecurity.setCookies(cookies, in: &headers)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    func redirect(_ location: String, cookies: [Cookie] = []) -> Response {
        var headers: HTTPFields = [.location: location]
        PageSecurity.headers(&headers)
        PageSecurity.setCookies(cookies, in: &headers)
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

    func asset(_ text: String, _ type: String) -> Response {
        var headers: HTTPFields = [.contentType: type]
        PageSecurity.headers(&headers)
        headers[.cacheControl] = "public, max-age=300"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    // MARK: guards

    /// Runs a page handler; a refusal becomes a page with the message (JSON for script calls).
    func guarded(
        _ request: Request,
        _ context: StagepassRequestContext,
        _ body: (PageRequest) async throws -> Response
    ) async throws -> Response {
        let pr = try context.requirePage()
        do { return try await body(pr) } catch let e as PageError {
            if request.headers[.contentType]?.hasPrefix("application/json") == true {
                return json(e.status, ["detail": .string(e.message)])
            }
            return render(
                "message",
                title: "Refused",
                pr,
                ["heading": "Refused", "text": e.message, "link": "/", "linkText": "Back"],
                status: e.status
            )
        }
    }

    func signedIn(
        _ request: Request,
        _ context: StagepassRequestContext,
        _ body: (PageRequest, Session) async throws -> Response
    ) async throws -> Response {
        try await guarded(request, context) { pr in
            guard let s = pr.session else { return signInRedirect(request) }
            return try await body(pr, s)
        }
    }

    func admin(
        _ request: Request,
        _ context: StagepassRequestContext,
        _ body: (PageRequest, Session) async throws -> Response
    ) async throws -> Response {
        try await signedIn(request, context) { pr, s in
            guard tokens.policy.current.isAdmin(groups: s.groups) else {
                throw PageError(status: .forbidden, message: "This page is for administrators.")
            }
            return try await body(pr, s)
        }
    }

    /// Admin actions need a fresh factor: otherwise the step-up page, which returns to `next`.
    func freshAdmin(_ pr: PageRequest, _ s: Session, next: String) async throws -> Response? {
        do { try tokens.requireAdmin(s) } catch let e where e.kind == .insufficientUserAuthentication {
            return try await stepUpPage(pr, s, next: next, why: e.errorDescription)
        }
        return nil
    }
}
