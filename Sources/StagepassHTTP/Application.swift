import Foundation
import Hummingbird
import Logging
import Prometheus
import StagepassBroker
import StagepassJOSE

/// Options for the HTTP front end.
public struct HTTPOptions: Sendable {
    /// Largest accepted request body (bytes); larger bodies get a 413 problem.
    public var maxBodyBytes: Int
    /// The public base URL of the broker (used in documents that name it).
    public var issuer: String
    public init(maxBodyBytes: Int = 16 * 1024, issuer: String = "http://127.0.0.1:8080") {
        self.maxBodyBytes = maxBodyBytes
        self.issuer = issuer
    }
}

/// Builds the broker's Hummingbird 2 application: the JSON API of Specs/openapi.yaml, `/healthz`, `/readyz` and
/// Prometheus `/metrics`.
///
/// ```swift
/// let app = buildApplication(broker: broker, configuration: .init(address: .hostname("127.0.0.1", port: 8080)))
/// try await app.runService()
/// ```
public func buildApplication(
    broker: HumanBroker, tokens: TokenBroker? = nil, configuration: ApplicationConfiguration = .init(),
    options: HTTPOptions = .init(),
    registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
    logger: Logger = Logger(label: "stagepass.http")
)
    -> some ApplicationProtocol
{
    let router = Router(context: BrokerRequestContext.self)
    router.add(middleware: ProblemAndMetricsMiddleware(registry: registry))
    let api = BrokerAPI(broker: broker, options: options, registry: registry)
    api.register(on: router)
    if let tokens {
        TokenAPI(tokens: tokens, options: options, registry: registry).register(on: router)
        do { try PagesAPI(tokens: tokens, options: options).register(on: router) } catch {
            logger.error("the pages could not be set up; the JSON API still runs", metadata: ["error": "\(error)"])
        }
    }
    return Application(router: router, configuration: configuration, logger: logger)
}

/// The route handlers. Each parses a strict JSON body (jansson: duplicate members rejected), calls the broker and
/// answers JSON; errors become problems in the middleware.
struct BrokerAPI: Sendable {
    let broker: HumanBroker
    let options: HTTPOptions
    let registry: PrometheusCollectorRegistry

    func register(on router: Router<BrokerRequestContext>) {
        router.get("/healthz") { _, _ in json(.ok, ["status": .string("ok")]) }
        router.get("/readyz") { _, _ in
            do {
                try broker.store.ping()
                return json(.ok, ["status": .string("ready")])
            } catch {
                return json(.serviceUnavailable, ["status": .string("unavailable")])
            }
        }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        router.post("/v1/auth/password") { request, context in try await password(request, context) }
        router.post("/v1/auth/factor") { request, context in try await factor(request, context) }
        router.post("/v1/auth/step-up") { request, context in try await stepUp(request, context) }
        router.post("/v1/auth/logout") { request, _ in
            try broker.sessions.signOut(token: try bearer(request))
            return Response(status: .noContent, headers: [.cacheControl: "no-store"])
        }
        router.get("/v1/me") { request, _ in try me(request) }
        router.post("/v1/factors/totp") { request, context in try await enrolTOTP(request, context) }
        router.post("/v1/factors/totp/confirm") { request, context in try await confirmTOTP(request, context) }
        router.post("/v1/factors/backup-codes") { request, context in try await backupCodes(request, context) }
    }

    // MARK: handlers

    func password(_ request: Request, _ context: BrokerRequestContext) async throws -> Response {
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
                ])
        } catch {
            count("password", "failure")
            throw error
        }
    }

    func factor(_ request: Request, _ context: BrokerRequestContext) async throws -> Response {
        let token = try bearer(request)
        let body = try await JSONBody(request, options)
        let proof = try body.proof()
        do {
            let s = try broker.sessions.completeFactor(
                pendingToken: token, proof: proof, address: context.clientAddress)
            count("factor", "success")
            return json(.ok, sessionJSON(s.session, token: s.token))
        } catch {
            count("factor", "failure")
            throw error
        }
    }

    func stepUp(_ request: Request, _ context: BrokerRequestContext) async throws -> Response {
        let token = try bearer(request)
        let body = try await JSONBody(request, options)
        let s = try broker.sessions.stepUp(token: token, proof: try body.proof(), address: context.clientAddress)
        return json(.ok, sessionJSON(s, token: nil))
    }

    func me(_ request: Request) throws -> Response {
        let s = try broker.sessions.requireMFA(token: try bearer(request))
        var out = sessionJSON(s, token: nil)
        out["user"] = .string(s.userName)
        out["groups"] = .array(s.groups.map { .string($0) })
        out["factors"] = .array(
            try broker.factors.list(userId: s.userId).map {
                .object([
                    "id": .string($0.id), "kind": .string($0.kind.rawValue), "state": .string($0.state.rawValue),
                    "created_at": .int($0.createdAt), "last_used_at": $0.lastUsedAt.map { .int($0) } ?? .null,
                ])
            })
        return json(.ok, out)
    }

    /// Factor changes need a fresh proof of an active factor (or, for a user with none, the first-enrolment rule):
    /// ``SessionService/authorizeFactorChange(token:)``.
    private func factorChange(_ token: String) throws -> FactorChangeGrant {
        try broker.sessions.authorizeFactorChange(token: token)
    }

    func enrolTOTP(_ request: Request, _ context: BrokerRequestContext) async throws -> Response {
        let grant = try factorChange(try bearer(request))
        let s = grant.session
        _ = try await JSONBody(request, options, allowEmpty: true)
        let e = try broker.factors.enrolTOTP(userName: s.userName, actor: s.userName, authorisedBy: grant.authorisedBy)
        return json(
            .created,
            [
                "factor_id": .string(e.factorId), "secret": .string(e.secret), "uri": .string(e.uri),
                "qr_svg": .string(e.qr.svg()), "state": .string("pending"),
            ])
    }

    func confirmTOTP(_ request: Request, _ context: BrokerRequestContext) async throws -> Response {
        let token = try bearer(request)
        let grant = try factorChange(token)
        let s = grant.session
        let body = try await JSONBody(request, options)
        let code = try body.string("code", max: 16)
        let f = try broker.factors.confirmTOTP(
            userId: s.userId, code: code, actor: s.userName, authorisedBy: grant.authorisedBy)
        var out: [String: JSONValue] = ["factor_id": .string(f.id), "state": .string(f.state.rawValue)]
        if !s.isMFA {
            let upgraded = try broker.sessions.upgradeAfterEnrolment(
                pendingToken: token, factor: f, address: context.clientAddress)
            out["session"] = .object(sessionJSON(upgraded.session, token: upgraded.token))
        }
        return json(.ok, out)
    }

    func backupCodes(_ request: Request, _ context: BrokerRequestContext) async throws -> Response {
        let grant = try factorChange(try bearer(request))
        guard grant.session.isMFA else { throw BrokerError.mfaRequired }
        _ = try await JSONBody(request, options, allowEmpty: true)
        let codes = try broker.factors.regenerateBackupCodes(
            userName: grant.session.userName, actor: grant.session.userName, authorisedBy: grant.authorisedBy)
        return json(.created, ["codes": .array(codes.map { .string($0) })])
    }

    // MARK: helpers

    func count(_ step: String, _ result: String) {
        registry.makeCounter(name: "stagepass_signin_steps_total", labels: [("step", step), ("result", result)])
            .increment()
    }

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
}

/// `Authorization: Bearer <token>` (RFC 6750 §2.1).
func bearer(_ request: Request) throws -> String {
    guard let h = request.headers[.authorization], h.count > 7, h.prefix(7).lowercased() == "bearer " else {
        throw BrokerError.invalidSession
    }
    return String(h.dropFirst(7)).trimmingCharacters(in: .whitespaces)
}

func json(_ status: HTTPResponse.Status, _ object: [String: JSONValue]) -> Response {
    Response(
        status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
        body: .init(byteBuffer: ByteBuffer(string: JSONValue.object(object).serialized())))
}

/// A request body parsed as one strict JSON object, with typed field accessors that fail as 400 problems.
struct JSONBody {
    let fields: [String: JSONValue]

    init(_ request: Request, _ options: HTTPOptions, allowEmpty: Bool = false) async throws {
        var request = request
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: options.maxBodyBytes) } catch {
            throw Problem(
                code: "payload_too_large", status: .contentTooLarge, title: "Payload too large",
                detail: "the request body is larger than \(options.maxBodyBytes) bytes")
        }
        if buffer.readableBytes == 0 && allowEmpty {
            fields = [:]
            return
        }
        if let ct = request.headers[.contentType], !ct.lowercased().hasPrefix("application/json") {
            throw Problem(
                code: "unsupported_media_type", status: .unsupportedMediaType, title: "Unsupported media type",
                detail: "send application/json")
        }
        let bytes = Array(buffer.readableBytesView)
        guard let value = try? JSONValue.parse(bytes, maxDepth: 8), let obj = value.objectValue else {
            throw Problem.badRequest("the body must be one JSON object")
        }
        fields = obj
    }

    func string(_ key: String, max: Int) throws -> String {
        guard let v = fields[key] else { throw Problem.badRequest("missing field '\(key)'") }
        guard let s = v.stringValue else { throw Problem.badRequest("field '\(key)' must be a string") }
        guard !s.isEmpty, s.utf8.count <= max else { throw Problem.badRequest("field '\(key)' is empty or too long") }
        return s
    }

    /// `{"method":"totp"|"backup","code":"…"}`.
    func proof() throws -> FactorProof {
        let method = try string("method", max: 16)
        let code = try string("code", max: 32)
        switch method {
        case "totp": return .totp(code)
        case "backup": return .backupCode(code)
        default: throw Problem.badRequest("method must be 'totp' or 'backup'")
        }
    }
}
