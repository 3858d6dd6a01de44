import Hummingbird
import StagepassBroker
import StagepassJOSE

/// Enrolling and changing factors over the JSON API. Every route needs the grant of
/// ``SessionService/authorizeFactorChange(token:)``: a fresh proof of an active factor, or the first-enrolment rule.
struct FactorRoutes: Sendable {
    let broker: HumanBroker
    let options: HTTPOptions

    var routes: RouteCollection<StagepassRequestContext> {
        let routes = RouteCollection(context: StagepassRequestContext.self)
        routes.add(middleware: BearerTokenAuthenticator())
        routes.add(middleware: FactorChangeAuthenticator(sessions: broker.sessions))
        routes.post("/v1/factors/totp") { request, context in try await enrolTOTP(request, context) }
        routes.post("/v1/factors/totp/confirm") { request, context in try await confirmTOTP(request, context) }
        routes.post("/v1/factors/backup-codes") { request, context in try await backupCodes(request, context) }
        return routes
    }

    func enrolTOTP(_ request: Request, _ context: StagepassRequestContext) async throws -> Response {
        let grant = try context.requireFactorChange()
        let s = grant.session
        _ = try await JSONBody(request, options, allowEmpty: true)
        let e = try await broker.factors.enrolTOTP(
            userName: s.userName,
            actor: s.userName,
            authorisedBy: grant.authorisedBy
        )
        return json(
            .created,
            [
                "factor_id": .string(e.factorId), "secret": .string(e.secret), "uri": .string(e.uri),
                "qr_svg": .string(e.qr.svg()), "state": .string("pending"),
            ]
        )
    }

    func confirmTOTP(_ request: Request, _ context: StagepassRequestContext) async throws -> Response {
        let grant = try context.requireFactorChange()
        let token = try context.requireSessionToken()
        let s = grant.session
        let body = try await JSONBody(request, options)
        let code = try body.string("code", max: 16)
        let f = try await broker.factors.confirmTOTP(
            userId: s.userId,
            code: code,
            actor: s.userName,
            authorisedBy: grant.authorisedBy
        )
        var out: [String: JSONValue] = ["factor_id": .string(f.id), "state": .string(f.state.rawValue)]
        if !s.isMFA {
            let address = context.clientAddress
            let upgraded = try await broker.sessions.upgradeAfterEnrolment(
                pendingToken: token,
                factor: f,
                address: address
            )
            out["session"] = .object(sessionJSON(upgraded.session, token: upgraded.token))
        }
        return json(.ok, out)
    }

    func backupCodes(_ request: Request, _ context: StagepassRequestContext) async throws -> Response {
        let grant = try context.requireFactorChange()
        guard grant.session.isMFA else { throw BrokerError.mfaRequired }
        _ = try await JSONBody(request, options, allowEmpty: true)
        let codes = try await broker.factors.regenerateBackupCodes(
            userName: grant.session.userName,
            actor: grant.session.userName,
            authorisedBy: grant.authorisedBy
        )
        return json(.created, ["codes": .array(codes.map { .string($0) })])
    }
}
