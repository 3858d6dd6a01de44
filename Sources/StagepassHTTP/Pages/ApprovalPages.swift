import Foundation
import Hummingbird
import Mustache
import StagepassBroker
import StagepassJOSE

extension PagesAPI {
    /// Pending approvals and the page that approves or denies one run.
    var approvalRoutes: RouteCollection<StagepassRequestContext> {
        let routes = pageRoutes()
        routes.get("/approvals") { request, context in
            try await signedIn(request, context) { pr, s in try await approvalsPage(pr, s) }
        }
        routes.get("/approve") { request, context in
            try await signedIn(request, context) { pr, s in
                let code = request.uri.queryParameters["code"].map(String.init) ?? ""
                // After a security-key approval the script lands here with the outcome to show.
                let notice: String? =
                    switch request.uri.queryParameters["result"].map(String.init) {
                    case "approved": "Approved: the pipeline receives its token."
                    case "recorded": "Your approval is recorded; waiting for more approvers."
                    default: nil
                    }
                return try await approvePage(code, context.clientAddress, pr, s, notice: notice)
            }
        }
        routes.post("/approve/:code") { request, context in
            try await signedIn(request, context) { pr, s in try await approve(request, context, pr, s) }
        }
        routes.post("/deny/:code") { request, context in
            try await signedIn(request, context) { pr, s in try await deny(request, context, pr, s) }
        }
        return routes
    }

    func approvalsPage(_ pr: PageRequest, _ s: Session) async throws -> Response {
        let views = try await tokens.pendingRequests(sessionToken: pr.sessionToken ?? "")
        return render(
            "approvals",
            title: "Approvals",
            pr,
            [
                "hasRequests": !views.isEmpty,
                "requests": views.map { v -> [String: Any] in
                    [
                        "userCode": v.request.userCode, "client": v.request.clientId, "runId": v.request.runId,
                        "role": v.request.role, "stage": v.request.stage, "audience": v.request.audience,
                        "count": v.approvals.count, "needed": v.approversNeeded,
                    ]
                },
            ]
        )
    }

    func approveContext(_ v: RequestView, _ s: Session) async throws -> [String: Any] {
        let r = v.request
        let p = tokens.policy.current
        let stage = p.stages[r.stage]
        var excluded = Set(v.approvals.map(\.userName)).union([s.userName])
        if stage?.allowSelfApproval == false, let t = r.triggeredBy { excluded.insert(t) }
        let others = try await tokens.holders(ofRole: r.role, excluding: excluded)
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
        if let issuer = r.ciIssuer {
            let claims = (try? JSONValue.parse(r.ciClaims ?? "{}"))?.objectValue ?? [:]
            ctx["ciIssuer"] = issuer
            ctx["ciClaims"] = claims.keys.sorted().map { ["name": $0, "value": claims[$0]?.stringValue ?? ""] }
        }
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
    func approvePage(
        _ code: String,
        _ address: String,
        _ pr: PageRequest,
        _ s: Session,
        error: String? = nil,
        notice: String? = nil
    ) async throws -> Response {
        do {
            let v = try await tokens.view(userCode: code, sessionToken: pr.sessionToken ?? "", address: address)
            return render(
                "approve",
                title: "Approve run \(v.request.runId)",
                pr,
                try await approveContext(v, s),
                error: error,
                notice: notice
            )
        } catch let e as OAuthError {
            return render(
                "message",
                title: "Not found",
                pr,
                [
                    "heading": "No such request", "text": e.errorDescription, "link": "/approvals",
                    "linkText": "Pending approvals",
                ],
                status: .notFound
            )
        }
    }

    func approve(
        _ request: Request,
        _ context: StagepassRequestContext,
        _ pr: PageRequest,
        _ s: Session
    ) async throws
        -> Response
    {
        let f = try pr.form()
        let code = try context.parameters.require("code")
        let proof = (f["code"]?.isEmpty == false) ? FactorProof.code(f["code"] ?? "") : nil
        do {
            let o = try await tokens.approve(
                userCode: code,
                sessionToken: pr.sessionToken ?? "",
                proof: proof,
                address: context.clientAddress
            )
            let session = (try? await broker.sessions.requireMFA(token: pr.sessionToken ?? "")) ?? s
            return try await approvePage(
                code,
                context.clientAddress,
                pr,
                session,
                notice: o.approved
                    ? "Approved: the pipeline receives its token."
                    : "Your approval is recorded (\(o.approvals) of \(o.needed)); waiting for more approvers."
            )
        } catch {
            let session = (try? await broker.sessions.requireMFA(token: pr.sessionToken ?? "")) ?? s
            return try await approvePage(code, context.clientAddress, pr, session, error: Self.message(error))
        }
    }

    func deny(
        _ request: Request,
        _ context: StagepassRequestContext,
        _ pr: PageRequest,
        _ s: Session
    ) async throws
        -> Response
    {
        let f = try pr.form()
        let code = try context.parameters.require("code")
        let reason = f["reason"].flatMap { $0.isEmpty ? nil : $0 }
        do {
            try await tokens.deny(
                userCode: code,
                sessionToken: pr.sessionToken ?? "",
                reason: reason,
                address: context.clientAddress
            )
            return try await approvePage(code, context.clientAddress, pr, s, notice: "Denied: the pipeline is told so.")
        } catch {
            return try await approvePage(code, context.clientAddress, pr, s, error: Self.message(error))
        }
    }
}
