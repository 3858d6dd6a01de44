import Foundation
import Hummingbird
import Mustache
import StagepassBroker
import StagepassJOSE

extension PagesAPI {
    /// Standing delegations: list, create, revoke.
    var delegationRoutes: RouteCollection<StagepassRequestContext> {
        let routes = pageRoutes()
        routes.get("/delegations") { request, context in
            try await signedIn(request, context) { pr, s in try await delegationsPage(pr, s) }
        }
        routes.post("/delegations") { request, context in
            try await signedIn(request, context) { pr, s in try await delegate(request, pr, s) }
        }
        routes.post("/delegations/:id/revoke") { request, context in
            try await signedIn(request, context) { pr, s in
                try await revokeDelegation(request, context, pr, s)
            }
        }
        return routes
    }

    func delegationsPage(
        _ pr: PageRequest,
        _ s: Session,
        error: String? = nil,
        notice: String? = nil
    ) async throws -> Response {
        let p = tokens.policy.current
        let delegable = p.stages.values.compactMap { st -> String? in
            if case .delegated(let w) = st.approval { return "\(st.name): up to \(Self.duration(w))" }
            return nil
        }.sorted()
        let items = try await tokens.delegations(sessionToken: pr.sessionToken ?? "").map {
            [
                "id": $0.id, "client": $0.clientId, "role": $0.role, "stage": $0.stage, "audience": $0.audience,
                "until": time($0.expiresAt),
            ]
        }
        return render(
            "delegations",
            title: "Delegations",
            pr,
            [
                "delegable": delegable.isEmpty ? "no stage allows it" : delegable.joined(separator: "; "),
                "items": items,
                "hasItems": !items.isEmpty,
            ],
            error: error,
            notice: notice
        )
    }

    func revokeDelegation(
        _ request: Request,
        _ context: StagepassRequestContext,
        _ pr: PageRequest,
        _ s: Session
    )
        async throws -> Response
    {
        _ = try pr.form()
        let id = try context.parameters.require("id")
        do {
            let revoked = try await tokens.revokeDelegation(id: id, sessionToken: pr.sessionToken ?? "", reason: nil)
            return try await delegationsPage(
                pr,
                s,
                notice: revoked ? "The delegation was revoked." : "It had already ended."
            )
        } catch {
            return try await delegationsPage(pr, s, error: Self.message(error))
        }
    }

    func delegate(_ request: Request, _ pr: PageRequest, _ s: Session) async throws -> Response {
        let f = try pr.form()
        guard let hours = Int64(f["hours"] ?? ""), hours > 0, hours <= 720 else {
            return try await delegationsPage(pr, s, error: "Hours must be a whole number from 1 to 720.")
        }
        do {
            let d = try await tokens.delegate(
                sessionToken: pr.sessionToken ?? "",
                client: f["client"] ?? "",
                role: f["role"] ?? "",
                stage: f["stage"] ?? "",
                audience: f["audience"] ?? "",
                window: hours * 3600
            )
            return try await delegationsPage(
                pr,
                s,
                notice: "Delegated \(d.clientId) for \(d.stage) until \(time(d.expiresAt))."
            )
        } catch {
            return try await delegationsPage(pr, s, error: Self.message(error))
        }
    }
}
