import Hummingbird
import StagepassBroker
import StagepassJOSE

/// Pipeline-run approvals (RFC 8628 user side) and standing delegations. The session token goes to the broker,
/// which checks the session, its role and its factor freshness per request.
struct ApprovalRoutes: Sendable {
    let tokens: TokenBroker
    let options: HTTPOptions

    var routes: RouteCollection<StagepassRequestContext> {
        let routes = RouteCollection(context: StagepassRequestContext.self)
        routes.add(middleware: BearerTokenAuthenticator())
        routes.get("/v1/approvals") { _, context in
            let token = try context.requireSessionToken()
            let views = try await tokens.pendingRequests(sessionToken: token)
            return json(.ok, ["requests": .array(views.map { .object(requestJSON($0)) })])
        }
        routes.get("/v1/approvals/:code") { _, context in
            let code = try context.parameters.require("code")
            let (token, address) = (try context.requireSessionToken(), context.clientAddress)
            let v = try await tokens.view(userCode: code, sessionToken: token, address: address)
            return json(.ok, requestJSON(v))
        }
        routes.post("/v1/approvals/:code/approve") { request, context in try await approve(request, context) }
        routes.post("/v1/approvals/:code/deny") { request, context in try await deny(request, context) }
        routes.post("/v1/delegations") { request, context in try await delegate(request, context) }
        routes.get("/v1/delegations") { request, context in
            let all = request.uri.queryParameters["all"].map { $0 == "true" || $0 == "1" } ?? false
            let token = try context.requireSessionToken()
            let list = try await tokens.delegations(sessionToken: token, all: all)
            return json(.ok, ["delegations": .array(list.map { .object(delegationJSON($0)) })])
        }
        routes.post("/v1/delegations/:id/revoke") { request, context in
            let id = try context.parameters.require("id")
            let token = try context.requireSessionToken()
            let body = try await JSONBody(request, options, allowEmpty: true)
            let reason = body.fields["reason"] == nil ? nil : try body.string("reason", max: 500)
            let revoked = try await tokens.revokeDelegation(id: id, sessionToken: token, reason: reason)
            return json(.ok, ["delegation_id": .string(id), "revoked": .bool(revoked)])
        }
        return routes
    }

    func requestJSON(_ v: RequestView) -> [String: JSONValue] {
        let r = v.request
        var o: [String: JSONValue] = [
            "request_id": .string(r.id), "user_code": .string(r.userCode), "client": .string(r.clientId),
            "role": .string(r.role), "stage": .string(r.stage), "audience": .string(r.audience),
            "run_id": .string(r.runId),
            "state": .string(v.expired && r.state == .pending ? "expired" : r.state.rawValue),
            "created_at": .int(r.createdAt), "expires_at": .int(r.expiresAt),
            "approvals": .array(
                v.approvals.map {
                    .object([
                        "id": .string($0.id), "user": .string($0.userName), "amr": .array($0.amr.map { .string($0) }),
                    ])
                }
            ),
            "approvers_needed": .int(Int64(v.approversNeeded)),
        ]
        if let c = r.commit { o["commit"] = .string(c) }
        if let t = r.triggeredBy { o["triggered_by"] = .string(t) }
        if let issuer = r.ciIssuer {
            // What the CI platform signed about the run: the approver sees it, and the approval's binding covers it.
            o["ci_issuer"] = .string(issuer)
            o["ci_claims"] = (try? JSONValue.parse(r.ciClaims ?? "{}")) ?? .object([:])
        }
        if let stage = tokens.policy.current.stages[r.stage] {
            o["approval_factors"] = .array(stage.factorsForApproval.map(\.rawValue).sorted().map { .string($0) })
        }
        // The page that can approve with any factor, security keys included.
        o["approve_url"] = .string(tokens.baseURL + "/approve?code=" + r.userCode)
        return o
    }

    func approve(_ request: Request, _ context: StagepassRequestContext) async throws -> Response {
        let code = try context.parameters.require("code")
        let token = try context.requireSessionToken()
        let body = try await JSONBody(request, options, allowEmpty: true)
        let proof = body.fields["method"] == nil ? nil : try body.proof()
        let address = context.clientAddress
        let o = try await tokens.approve(userCode: code, sessionToken: token, proof: proof, address: address)
        return json(
            .ok,
            [
                "approval_id": .string(o.approval.id), "approvals": .int(Int64(o.approvals)),
                "approvers_needed": .int(Int64(o.needed)), "state": .string(o.approved ? "approved" : "pending"),
            ]
        )
    }

    func deny(_ request: Request, _ context: StagepassRequestContext) async throws -> Response {
        let code = try context.parameters.require("code")
        let token = try context.requireSessionToken()
        let body = try await JSONBody(request, options, allowEmpty: true)
        let reason = body.fields["reason"] == nil ? nil : try body.string("reason", max: 500)
        let address = context.clientAddress
        try await tokens.deny(userCode: code, sessionToken: token, reason: reason, address: address)
        return json(.ok, ["state": .string("denied")])
    }

    func delegate(_ request: Request, _ context: StagepassRequestContext) async throws -> Response {
        let token = try context.requireSessionToken()
        let body = try await JSONBody(request, options)
        guard let window = body.fields["window_seconds"]?.intValue else {
            throw Problem.badRequest("field 'window_seconds' must be an integer")
        }
        let (client, role) = (try body.string("client", max: 128), try body.string("role", max: 128))
        let (stage, audience) = (try body.string("stage", max: 128), try body.string("audience", max: 256))
        let d = try await tokens.delegate(
            sessionToken: token,
            client: client,
            role: role,
            stage: stage,
            audience: audience,
            window: window
        )
        return json(.created, delegationJSON(d))
    }

    func delegationJSON(_ d: DelegationRecord) -> [String: JSONValue] {
        [
            "delegation_id": .string(d.id), "delegator": .string(d.userName), "client": .string(d.clientId),
            "role": .string(d.role), "stage": .string(d.stage), "audience": .string(d.audience),
            "created_at": .int(d.createdAt), "expires_at": .int(d.expiresAt),
        ]
    }
}
