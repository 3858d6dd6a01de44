import Foundation
import Hummingbird
import Mustache
import StagepassBroker
import StagepassJOSE

extension PagesAPI {
    /// The factors page: enrol an authenticator app, backup codes, remove a factor (security keys:
    /// ``webAuthnRoutes``).
    var factorRoutes: RouteCollection<StagepassRequestContext> {
        let routes = pageRoutes()
        routes.get("/factors") { request, context in
            try await signedIn(request, context) { pr, s in try await factorsPage(pr, s) }
        }
        routes.post("/factors/totp") { request, context in
            try await signedIn(request, context) { pr, s in try await enrolTOTP(request, pr, s) }
        }
        routes.post("/factors/totp/confirm") { request, context in
            try await signedIn(request, context) { pr, s in try await confirmTOTP(request, pr, s) }
        }
        routes.post("/factors/backup-codes") { request, context in
            try await signedIn(request, context) { pr, s in try await backupCodes(request, pr, s) }
        }
        routes.post("/factors/:id/remove") { request, context in
            try await signedIn(request, context) { pr, s in
                try await removeFactor(request, context, pr, s)
            }
        }
        return routes
    }

    func factorsContext(_ s: Session) async throws -> [String: Any] {
        let list = try await broker.factors.list(userId: s.userId)
        let names = await (try? webauthnNames(s.userId)) ?? [:]
        return [
            "changeWindow": Self.duration(broker.policy.factorChangeMaxAge),
            "backupLastUsed": list.first { $0.kind == .backup }?.lastUsedAt.map { time($0) } ?? false,
            "factors": list.filter { $0.kind != .backup }.map { f -> [String: Any] in
                [
                    "id": f.id, "kind": f.kind == .webauthn ? "security key" : "authenticator app",
                    "label": names[f.id] ?? "", "state": f.state.rawValue, "created": time(f.createdAt),
                    "lastUsed": f.lastUsedAt.map { time($0) } ?? "never",
                ]
            },
            "backupLeft": try await broker.factors.backupCodesLeft(userId: s.userId),
        ]
    }

    func factorsPage(
        _ pr: PageRequest,
        _ s: Session,
        extra: [String: Any] = [:],
        error: String? = nil,
        notice: String? = nil
    ) async throws -> Response {
        render(
            "factors",
            title: "Factors",
            pr,
            try await factorsContext(s).merging(extra) { _, b in b },
            error: error,
            notice: notice
        )
    }

    /// Factor changes need a fresh proof of an active factor: otherwise the step-up page, which returns here.
    enum FactorChange {
        case granted(FactorChangeGrant)
        case stepUp(Response)
    }

    func factorChange(_ pr: PageRequest, _ s: Session) async throws -> FactorChange {
        do { return .granted(try await broker.sessions.authorizeFactorChange(token: pr.sessionToken ?? "")) } catch let
            e
            as BrokerError where e == .stepUpRequired
        {
            return await .stepUp(try stepUpPage(pr, s, next: "/factors", why: e.detail))
        }
    }

    func enrolTOTP(_ request: Request, _ pr: PageRequest, _ s: Session) async throws -> Response {
        _ = try pr.form()
        let grant: FactorChangeGrant
        switch try await factorChange(pr, s) {
        case .granted(let g): grant = g
        case .stepUp(let page): return page
        }
        let e = try await broker.factors.enrolTOTP(
            userName: s.userName,
            actor: s.userName,
            authorisedBy: grant.authorisedBy
        )
        let svg = Data(e.qr.svg().utf8).base64EncodedString()
        return try await factorsPage(
            pr,
            s,
            extra: ["enrolment": ["qr": "data:image/svg+xml;base64," + svg, "secret": e.secret]]
        )
    }

    func confirmTOTP(_ request: Request, _ pr: PageRequest, _ s: Session) async throws -> Response {
        let f = try pr.form()
        let grant: FactorChangeGrant
        switch try await factorChange(pr, s) {
        case .granted(let g): grant = g
        case .stepUp(let page): return page
        }
        do {
            _ = try await broker.factors.confirmTOTP(
                userId: s.userId,
                code: f["code"] ?? "",
                actor: s.userName,
                authorisedBy: grant.authorisedBy
            )
            return try await factorsPage(pr, s, notice: "The authenticator app is active.")
        } catch let e as BrokerError {
            return try await factorsPage(pr, s, error: Self.message(e))
        }
    }

    func backupCodes(_ request: Request, _ pr: PageRequest, _ s: Session) async throws -> Response {
        _ = try pr.form()
        let grant: FactorChangeGrant
        switch try await factorChange(pr, s) {
        case .granted(let g): grant = g
        case .stepUp(let page): return page
        }
        let codes = try await broker.factors.regenerateBackupCodes(
            userName: s.userName,
            actor: s.userName,
            authorisedBy: grant.authorisedBy
        )
        return try await factorsPage(pr, s, extra: ["codes": codes, "hasCodes": !codes.isEmpty])
    }

    /// Removing a factor is a step-up action: the form carries a code, proved first; then the change rule applies.
    func removeFactor(
        _ request: Request,
        _ context: StagepassRequestContext,
        _ pr: PageRequest,
        _ s: Session
    ) async throws
        -> Response
    {
        let f = try pr.form()
        let id = try context.parameters.require("id")
        do {
            _ = try await broker.sessions.stepUp(
                token: pr.sessionToken ?? "",
                proof: FactorProof.code(f["code"] ?? ""),
                address: context.clientAddress
            )
            let grant = try await broker.sessions.authorizeFactorChange(token: pr.sessionToken ?? "")
            try await broker.factors.remove(
                userId: s.userId,
                factorId: id,
                actor: s.userName,
                authorisedBy: grant.authorisedBy
            )
            return try await factorsPage(pr, s, notice: "The factor was removed.")
        } catch let e as BrokerError {
            return try await factorsPage(pr, s, error: Self.message(e))
        }
    }
}
