import Hummingbird
import Logging
import StagepassVerify

/// A request context that carries the token ``StagepassTokenMiddleware`` verified.
public protocol StagepassTokenContext: RequestContext {
    /// The verified token; nil before the middleware ran (or on routes it does not guard).
    var stagepassToken: VerifiedToken? { get set }
}

extension StagepassTokenContext {
    /// The verified token of this request.
    /// - Throws: ``TokenRefusal`` (401, `missing_token`) on a route the middleware does not guard: a handler that
    ///   asks for a token never runs without one.
    public func requireStagepassToken() throws -> VerifiedToken {
        guard let token = stagepassToken else {
            throw TokenRefusal(
                kind: .missingToken,
                detail: "this route is not guarded by the Stagepass middleware",
                reason: nil,
                wwwAuthenticate: "Bearer realm=\"stagepass\"",
                retryAfter: nil
            )
        }
        return token
    }
}

/// A ready-made ``StagepassTokenContext``: Hummingbird's core storage plus the verified token.
public struct StagepassTokenRequestContext: StagepassTokenContext {
    public var coreContext: CoreRequestContextStorage
    public var stagepassToken: VerifiedToken?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }
}

/// Verifies `Authorization: Bearer …` (RFC 6750 §2.1) or `Authorization: DPoP …` with its `DPoP` proof
/// (RFC 9449 §7.1) on every request it guards, and puts the verified token into the context
/// (``StagepassTokenContext/stagepassToken``); a refused request gets the ``TokenRefusal`` response (problem+json,
/// 400/401/403/503 with `WWW-Authenticate`) and never reaches the handler.
///
/// Verification is in process: the verifier's key set and status lists are refreshed in the background
/// (``StagepassVerifierService``), so a request never waits on the network.
///
/// ```swift
/// let verification = try StagepassVerifierService(
///     configuration: VerifierConfiguration(issuer: "https://stagepass.example", audiences: ["deploy-api"]),
///     jwks: URL(string: "https://stagepass.example/.well-known/jwks.json")!,
///     statusList: URL(string: "https://stagepass.example/v1/statuslists/1")!)
/// let router = Router(context: StagepassTokenRequestContext.self)
/// router.group("deploy")
///     .add(middleware: StagepassTokenMiddleware(
///         gate: TokenGate(verifier: verification.verifier,
///                         requirements: Requirements(roles: ["deployer"], stage: "production", pipeline: "acme/*")),
///         publicOrigin: "https://deploy.example"))
///     .post { _, context in "deploying for \(try context.requireStagepassToken().subject)" }
/// let app = Application(router: router, services: [verification])
/// ```
public struct StagepassTokenMiddleware<Context: StagepassTokenContext>: RouterMiddleware {
    public let gate: TokenGate
    /// `scheme://host[:port]` as clients address this service (the DPoP proof's `htu` is this plus the path,
    /// RFC 9449 §4.3 step 9). nil: `http://` (or the request's scheme) plus the request's `Host`, which is only right
    /// when clients reach this process directly.
    public let publicOrigin: String?

    public init(gate: TokenGate, publicOrigin: String? = nil) {
        self.gate = gate
        self.publicOrigin = publicOrigin.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
    }

    public func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let origin = publicOrigin ?? "\(request.head.scheme ?? "http")://\(request.head.authority ?? "localhost")"
        let result = gate.check(
            authorization: request.headers[values: .authorization],
            dpop: request.headers[values: .dpop],
            method: request.method.rawValue,
            url: origin + request.uri.description
        )
        switch result {
        case .success(let token):
            var context = context
            context.stagepassToken = token
            return try await next(request, context)
        case .failure(let refusal):
            // The reason only: never the token or the proof.
            context.logger.info(
                "refused",
                metadata: [
                    "stagepass.refusal": .string(refusal.code), "stagepass.reason": .string(refusal.reason ?? ""),
                ]
            )
            return refusal.response()
        }
    }
}

/// A header field name (`HTTPField.Name` of swift-http-types, reached through the `HTTPFields` Hummingbird exports).
public typealias FieldName = HTTPFields.Element.Name

extension FieldName {
    /// The `DPoP` request header (RFC 9449 §4.1).
    public static var dpop: Self { Self.stagepassDPoP }
    // A literal, valid field name: the initializer cannot fail for it.
    private static let stagepassDPoP = FieldName("DPoP") ?? .authorization
}
