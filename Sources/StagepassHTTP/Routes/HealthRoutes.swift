import Hummingbird
import Logging
import Prometheus
import StagepassBroker
import StagepassJOSE

/// `/healthz` (the process answers: liveness, 200 even while storage fails), `/readyz` (the store can commit a
/// write now) and the Prometheus `/metrics` text.
struct HealthRoutes: Sendable {
    let broker: HumanBroker
    let registry: PrometheusCollectorRegistry

    var routes: RouteCollection<StagepassRequestContext> {
        let routes = RouteCollection(context: StagepassRequestContext.self)
        routes.get("/healthz") { _, _ in json(.ok, ["status": .string("ok")]) }
        // Not ready while the store cannot commit (the probe or the latest write failed, or the disk is nearly
        // full); ready again by itself once a write commits. The cause is named, never SQL or a path.
        routes.get("/readyz") { _, context in
            do {
                try await broker.store.ping()
                return json(.ok, ["status": .string("ready")])
            } catch let f as StorageFault {
                context.logger.warning(
                    "not ready: storage \(f.cause.phrase)",
                    metadata: ["cause": "\(f.cause.rawValue)"]
                )
                var r = json(
                    .serviceUnavailable,
                    [
                        "status": .string("unavailable"), "cause": .string(f.cause.rawValue),
                        "detail": .string("storage unavailable: \(f.cause.phrase)"),
                    ]
                )
                r.headers[.retryAfter] = String(f.retryAfter)
                return r
            } catch {
                return json(.serviceUnavailable, ["status": .string("unavailable"), "cause": .string("unknown")])
            }
        }
        routes.get("/metrics") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer()))
            )
        }
        return routes
    }
}
