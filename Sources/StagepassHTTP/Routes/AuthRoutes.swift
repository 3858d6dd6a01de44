import Hummingbird
import Prometheus
import StagepassBroker
import StagepassJOSE

/// Human sign-in over the JSON API: password, second factor, step-up, sign-out, and `/v1/me`.
struct AuthRoutes: Sendable {
    let broker: HumanBroker
    let options: HTTPOptions
    let registry: PrometheusCollectorRegistry

    var routes: RouteCollection<StagepassRequestContext> {
        let routes = RouteCollection(context: StagepassRequestContext.self)
        routes.add(middleware: BearerTokenAuthenticator())
        routes.post("/v1/auth/password") { request, context in try await password(request, context) }
        routes.post("/v1/auth/factor") { request, context in try await factor(request, context) }
        routes.post("/v1/auth/step-up") { request, context in try await stepUp(request, context) }
        routes.post("/v1/auth/logout") { _, context in
            let token = try context.requireSessionToken()
            try await broker.sessions.signOut(token: token)
            return Response(status: .noContent, headers: [.cacheControl: "no-store"])
        }
        // Only `/v1/me` resolves the session itself; the calls above hand the token to the broker.
        routes.add(middleware: BearerSessionAuthenticator(sessions: broker.sessions))
        routes.get("/v1/me") { _, context in try await me(context) }
        return routes
    }

    func password(_ request: Request, _ context: StagepassRequestContext) async throws -> Response {
        let body = try await JSONBody(request, options)
        let user = try body.string("user", max: 256)
        let password = try body.string("password", max: AccountService.maximumPasswordLength)
        do {
            let r = try await broker.sessions.signIn(name: user, password: password, address: context.clientAddress)
            count("password", "success")
            return json(
                .ok,
                [
                    "session_token": .string(r.token), "state": .string(r.session.state.rawValue),
                    "needs_factor": .bool(r.needsFactor),
                    "factors": .array(r.allowedFactors.map { .string($0.rawValue) }),
                    "expires_at": .int(r.session.absoluteExpiresAt),
                ]
            )
        } catch {
            count("password", "failure")
            throw error
        }
    }

    func factor(_ request: Request, _ context: StagepassRequestContext) async throws -> Response {
        let token = try context.requireSessionToken()
        let body = try await JSONBody(request, options)
        let proof = try body.proof()
        do {
            let address = context.clientAddress
            let s = try await broker.sessions.completeFactor(pendingToken: token, proof: proof, address: address)
            count("factor", "success")
            return json(.ok, sessionJSON(s.session, token: s.token))
        } catch {
            count("factor", "failure")
            throw error
        }
    }

    func stepUp(_ request: Request, _ context: StagepassRequestContext) async throws -> Response {
        let token = try context.requireSessionToken()
        let body = try await JSONBody(request, options)
        let (proof, address) = (try body.proof(), context.clientAddress)
        let s = try await broker.sessions.stepUp(token: token, proof: proof, address: address)
        return json(.ok, sessionJSON(s, token: nil))
    }

    func me(_ context: StagepassRequestContext) async throws -> Response {
        let s = try context.requireSession()
        let factors = try await broker.factors.list(userId: s.userId)
        var out = sessionJSON(s, token: nil)
        out["user"] = .string(s.userName)
        out["groups"] = .array(s.groups.map { .string($0) })
        out["factors"] = .array(
            factors.map {
                .object([
                    "id": .string($0.id), "kind": .string($0.kind.rawValue), "state": .string($0.state.rawValue),
                    "created_at": .int($0.createdAt), "last_used_at": $0.lastUsedAt.map { .int($0) } ?? .null,
                ])
            }
        )
        return json(.ok, out)
    }

    /// `stagepass_signin_steps_total{step,result}`.
    func count(_ step: String, _ result: String) {
        registry.makeCounter(name: "stagepass_signin_steps_total", labels: [("step", step), ("result", result)])
            .increment()
    }
}

/// A session as the JSON API shows it (Specs/openapi.yaml `Session`).
func sessionJSON(_ s: Session, token: String?) -> [String: JSONValue] {
    var out: [String: JSONValue] = [
        "session_id": .string(s.id), "state": .string(s.state.rawValue), "amr": .array(s.amr.map { .string($0) }),
        "auth_time": .int(s.authTime), "idle_expires_at": .int(s.idleExpiresAt),
        "absolute_expires_at": .int(s.absoluteExpiresAt),
        // When each method was last proved in this session: what per-factor freshness rules read.
        "proofs": .object(s.proofs.mapValues { .int($0.at) }),
    ]
    if let token { out["session_token"] = .string(token) }
    return out
}
