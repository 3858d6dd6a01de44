import Hummingbird
import Prometheus
import StagepassBroker
import StagepassJOSE

/// `/healthz` (the process answers), `/readyz` (the store answers) and the Prometheus `/metrics` text.
struct HealthRoutes: Sendable {
    let broker: HumanBroker
    let registry: PrometheusCollectorRegistry

    var routes: RouteCollection<StagepassRequestContext> {
        let routes = RouteCollection(context: StagepassRequestContext.self)
        routes.get("/healthz") { _, _ in json(.ok, ["status": .string("ok")]) }
        routes.get("/readyz") { _, _ in
            do {
                try await offload { try broker.store.ping() }
                return json(.ok, ["status": .string("ready")])
            } catch {
                return json(.serviceUnavailable, ["status": .string("unavailable")])
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
