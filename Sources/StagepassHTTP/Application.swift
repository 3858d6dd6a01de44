import Foundation
import Hummingbird
import HummingbirdCore
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

/// Builds the broker's Hummingbird 2 application: the JSON API of Specs/openapi.yaml, the pages, `/healthz`,
/// `/readyz` and Prometheus `/metrics`.
///
/// ```swift
/// let app = buildApplication(broker: broker, configuration: .init(address: .hostname("127.0.0.1", port: 8080)))
/// try await app.runService()
/// ```
public func buildApplication(
    broker: HumanBroker,
    tokens: TokenBroker? = nil,
    configuration: ApplicationConfiguration = .init(),
    server: HTTPServerBuilder = .http1(),
    options: HTTPOptions = .init(),
    registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
    logger: Logger = Logger(label: "stagepass.http")
)
    -> some ApplicationProtocol
{
    let router = buildRouter(broker: broker, tokens: tokens, options: options, registry: registry, logger: logger)
    return Application(router: router, server: server, configuration: configuration, logger: logger)
}

/// The router: one route collection per area, behind the problem and metrics middleware.
func buildRouter(
    broker: HumanBroker,
    tokens: TokenBroker?,
    options: HTTPOptions,
    registry: PrometheusCollectorRegistry,
    logger: Logger
) -> Router<StagepassRequestContext> {
    let router = Router(context: StagepassRequestContext.self)
    router.add(middleware: ProblemAndMetricsMiddleware(registry: registry))
    router.addRoutes(HealthRoutes(broker: broker, registry: registry).routes)
    router.addRoutes(AuthRoutes(broker: broker, options: options, registry: registry).routes)
    router.addRoutes(FactorRoutes(broker: broker, options: options).routes)
    if let tokens {
        // Tokens per group-commit transaction of issuance (IssuanceCommitter).
        let batches = registry.makeValueHistogram(
            name: "stagepass_issuance_batch_size",
            buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
            help: "Tokens written per issuance transaction (group commit)"
        )
        tokens.issuance.observeBatches { batches.record(Double($0)) }
        router.addRoutes(DiscoveryRoutes(tokens: tokens).routes)
        router.addRoutes(TokenEndpointRoutes(tokens: tokens, options: options, registry: registry).routes)
        router.addRoutes(ApprovalRoutes(tokens: tokens, options: options).routes)
        router.addRoutes(AdminRoutes(tokens: tokens, options: options).routes)
        do { try PagesAPI(tokens: tokens, options: options).register(on: router) } catch {
            logger.error("the pages could not be set up; the JSON API still runs", metadata: ["error": "\(error)"])
        }
    }
    return router
}
