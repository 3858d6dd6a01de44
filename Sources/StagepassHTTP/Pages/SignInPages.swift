import Foundation
import Hummingbird
import Mustache
import StagepassBroker
import StagepassJOSE

extension PagesAPI {
    /// Sign-in (password, then a second factor), sign-out, the home page and step-up.
    var signInRoutes: RouteCollection<StagepassRequestContext> {
        let routes = pageRoutes()
        routes.get("/signin") { request, context in
            let pr = try context.requirePage()
            let next = Self.safeNext(request.uri.queryParameters["next"].map(String.init))
            return render("signin", title: "Sign in", pr, ["next": next])
        }
        routes.post("/signin") { request, context in
            try await guarded(request, context) { pr in try await signIn(request, context, pr) }
        }
        routes.get("/signin/factor") { request, context in
            try await guarded(request, context) { pr in try await factorPage(request, pr) }
        }
        routes.post("/signin/factor") { request, context in
            try await guarded(request, context) { pr in try await factorStep(request, context, pr) }
        }
        routes.post("/signout") { request, context in
            try await guarded(request, context) { pr in
                _ = try pr.form()
                if let t = pr.sessionToken { try? await broker.sessions.signOut(token: t) }
                return redirect("/signin", cookies: [security.setCookie(security.sessionCookie, "", maxAge: 0)])
            }
        }
        routes.get("/") { request, context in
            try await signedIn(request, context) { pr, s in try await home(pr, s) }
        }
        routes.get("/stepup") { request, context in
            try await signedIn(request, context) { pr, s in
                let next = Self.safeNext(request.uri.queryParameters["next"].map(String.init))
                return try await stepUpPage(pr, s, next: next, why: "This needs a second factor proved just now.")
            }
        }
        routes.post("/stepup") { request, context in
            try await signedIn(request, context) { pr, s in try await stepUp(request, context, pr, s) }
        }
        return routes
    }

    func signIn(_ request: Request, _ context: StagepassRequestContext, _ pr: PageRequest) async throws -> Response {
        let f = try pr.form()
        let next = Self.safeNext(f["next"])
        do {
            let r = try await broker.sessions.signIn(
                name: f["user"] ?? "",
                password: f["password"] ?? "",
                address: context.clientAddress
            )
            if r.needsFactor {
                return redirect(
                    "/signin/factor?next=" + (next.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "/"),
                    cookies: [
                        security.setCookie(security.pendingCookie, r.token, maxAge: Int(broker.policy.pendingSeconds))
                    ]
                )
            }
            return redirect(next, cookies: [security.setCookie(security.sessionCookie, r.token)])
        } catch let e as BrokerError where e.kind == .overloaded {
            // 503 with Retry-After, the same page: the form is kept so that the user can retry in a moment.
            let wait = e.retryAfter ?? 1
            var r = render(
                "signin",
                title: "Sign in",
                pr,
                ["next": next, "user": f["user"] ?? ""],
                error: "The broker is busy right now; nothing was checked or counted. Retry in \(wait) s.",
                status: .serviceUnavailable
            )
            r.headers[.retryAfter] = String(wait)
            return r
        } catch let e as BrokerError {
            return render("signin", title: "Sign in", pr, ["next": next], error: Self.message(e), status: .unauthorized)
        }
    }

    func pendingSession(_ pr: PageRequest) -> (Session, String)? {
        pr.pending.map { ($0.session, $0.token) }
    }

    func factorContext(_ s: Session, next: String) async throws -> [String: Any] {
        let allowed = broker.policy.allowedFactors(groups: s.groups)
        let mine = try await broker.factors.list(userId: s.userId)
        return [
            "account": s.userName, "next": next,
            "totp": allowed.contains(.totp) && mine.contains { $0.kind == .totp },
            "backup": allowed.contains(.backup),
            "webauthn": allowed.contains(.webauthn) && mine.contains { $0.kind == .webauthn && $0.state == .active },
        ]
    }

    func factorPage(_ request: Request, _ pr: PageRequest) async throws -> Response {
        guard let (s, _) = pendingSession(pr) else { return redirect("/signin") }
        let next = Self.safeNext(request.uri.queryParameters["next"].map(String.init))
        return render("factor", title: "Second factor", pr, try await factorContext(s, next: next))
    }

    func factorStep(_ request: Request, _ context: StagepassRequestContext, _ pr: PageRequest) async throws -> Response
    {
        let f = try pr.form()
        guard let (s, token) = pendingSession(pr) else { return redirect("/signin") }
        let next = Self.safeNext(f["next"])
        let code = f["code"] ?? ""
        let proof: FactorProof = f["method"] == "backup" ? .backupCode(code) : .totp(code)
        do {
            let issued = try await broker.sessions.completeFactor(
                pendingToken: token,
                proof: proof,
                address: context.clientAddress
            )
            return redirect(
                next,
                cookies: [
                    security.setCookie(security.sessionCookie, issued.token),
                    security.setCookie(security.pendingCookie, "", maxAge: 0),
                ]
            )
        } catch let e as BrokerError {
            return await render(
                "factor",
                title: "Second factor",
                pr,
                try factorContext(s, next: next),
                error: Self.message(e),
                status: .unauthorized
            )
        }
    }

    func home(_ pr: PageRequest, _ s: Session) async throws -> Response {
        let p = tokens.policy.current
        let pending = (try? await tokens.pendingRequests(sessionToken: pr.sessionToken ?? ""))?.count ?? 0
        return render(
            "home",
            title: "Home",
            pr,
            [
                "name": s.userName, "groups": s.groups.joined(separator: ", "),
                "roles": p.roles(forGroups: s.groups).map(\.name).joined(separator: ", "),
                "amr": s.amr.joined(separator: " + "),
                "authAge": Self.duration(max(0, broker.clock.now() - s.authTime)), "pending": pending,
            ]
        )
    }

    func stepUpPage(_ pr: PageRequest, _ s: Session, next: String, why: String) async throws -> Response {
        let hasKey = try await broker.factors.list(userId: s.userId).contains {
            $0.kind == .webauthn && $0.state == .active
        }
        return render("stepup", title: "Confirm", pr, ["next": next, "why": why, "webauthn": hasKey])
    }

    func stepUp(
        _ request: Request,
        _ context: StagepassRequestContext,
        _ pr: PageRequest,
        _ s: Session
    ) async throws
        -> Response
    {
        let f = try pr.form()
        let next = Self.safeNext(f["next"])
        do {
            _ = try await broker.sessions.stepUp(
                token: pr.sessionToken ?? "",
                proof: FactorProof.code(f["code"] ?? ""),
                address: context.clientAddress
            )
            return redirect(next)
        } catch let e as BrokerError {
            return render(
                "stepup",
                title: "Confirm",
                pr,
                ["next": next, "why": "Try again."],
                error: Self.message(e),
                status: .unauthorized
            )
        }
    }
}
