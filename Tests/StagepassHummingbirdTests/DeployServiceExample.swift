// The deploy service of README.md, "Protecting a deploy endpoint": compiled with the tests and run by
// `MiddlewareTests.theReadmeDeployServiceAcceptsAndRefuses`, so the README's code cannot rot.

import Foundation
import Hummingbird
import StagepassHummingbird
import StagepassVerify

/// A deploy endpoint: `POST /deploy` for production deployers of `acme/*` pipelines, `GET /healthz` open.
func buildDeployService(
    issuer: String,
    jwks: URL,
    statusList: URL,
    publicOrigin: String = "https://deploy.example"
) throws -> some ApplicationProtocol {
    // JWKS and status list are fetched by the service's background loops, never while a request waits.
    let verification = StagepassVerifierService(
        configuration: try VerifierConfiguration(issuer: issuer, audiences: ["deploy-api"], statusMaxAge: 300),
        jwks: jwks,
        statusList: statusList
    )
    let router = Router(context: StagepassTokenRequestContext.self)
    router.get("/healthz") { _, _ in HTTPResponse.Status.ok }
    router.group("/deploy")
        .add(
            middleware: StagepassTokenMiddleware(
                gate: TokenGate(
                    verifier: verification.verifier,
                    requirements: Requirements(roles: ["deployer"], stage: "production", pipeline: "acme/*")
                ),
                publicOrigin: publicOrigin
            )
        )
        .post { _, context in
            let token = try context.requireStagepassToken()
            return "deploying for \(token.subject), pipeline \(token.clientID ?? "-")\n"
        }
    return Application(
        router: router,
        configuration: .init(address: .hostname("127.0.0.1", port: 8443)),
        services: [verification]
    )
}
