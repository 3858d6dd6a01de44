import Foundation
import Hummingbird
import Logging
import Prometheus
import StagepassBroker

/// Turns every error into an RFC 9457 problem, counts requests and logs one line per request.
///
/// The log line holds method, path (never the query), status and duration: no header, body, token or code.
struct ProblemAndMetricsMiddleware: RouterMiddleware {
    typealias Context = StagepassRequestContext
    let registry: PrometheusCollectorRegistry

    init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
    }

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws
        -> Response
    {
        let start = ContinuousClock.now
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            let problem = Problem.from(error)
            if let fault = error as? StorageFault {
                reportStorageFault(fault, logger: context.logger, registry: registry)
            } else if problem.status == .internalServerError {
                context.logger.error("request failed", metadata: ["error_type": "\(type(of: error))"])
            }
            response = problem.response()
        }
        let endpoint = context.endpointPath ?? "unmatched"
        registry.makeCounter(
            name: "stagepass_http_requests_total",
            labels: [
                ("method", request.method.rawValue), ("endpoint", endpoint),
                ("status", String(response.status.code)),
            ]
        ).increment()
        let ms = (ContinuousClock.now - start).components
        context.logger.info(
            "request",
            metadata: [
                "method": "\(request.method.rawValue)", "path": "\(request.uri.path)",
                "status": "\(response.status.code)",
                "ms": "\(ms.seconds * 1000 + ms.attoseconds / 1_000_000_000_000_000)",
            ]
        )
        return response
    }
}

/// One log line and one count per storage fault: the cause classified from the SQLite result code or the PostgreSQL SQLSTATE
/// (`stagepass_storage_faults_total{cause}`). Never SQL, arguments or a path.
func reportStorageFault(_ fault: StorageFault, logger: Logger, registry: PrometheusCollectorRegistry) {
    var metadata: Logger.Metadata = ["cause": "\(fault.cause.rawValue)"]
    if let code = fault.resultCode { metadata["sqlite_result"] = "\(code)" }
    if let state = fault.sqlState { metadata["postgres_state"] = "\(state)" }
    logger.error("storage unavailable: \(fault.cause.phrase)", metadata: metadata)
    registry.makeCounter(name: "stagepass_storage_faults_total", labels: [("cause", fault.cause.rawValue)]).increment()
}
