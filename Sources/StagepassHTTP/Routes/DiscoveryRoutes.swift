import Hummingbird
import StagepassBroker
import StagepassJOSE

/// The public documents: discovery metadata, the JWK Set and the token status lists. Cacheable, no authentication.
struct DiscoveryRoutes: Sendable {
    let tokens: TokenBroker

    var routes: RouteCollection<StagepassRequestContext> {
        let routes = RouteCollection(context: StagepassRequestContext.self)
        routes.get("/.well-known/openid-configuration") { _, _ in discovery() }
        routes.get("/.well-known/jwks.json") { _, _ in try await jwks() }
        routes.get("/v1/statuslists/:n") { _, context in try await statusList(context) }
        return routes
    }

    /// OpenID Connect Discovery 1.0 §3 / RFC 8414 §2 metadata.
    func discovery() -> Response {
        let base = tokens.baseURL
        let doc: [String: JSONValue] = [
            "issuer": .string(tokens.issuer),
            "jwks_uri": .string(base + "/.well-known/jwks.json"),
            "token_endpoint": .string(base + "/v1/token"),
            "device_authorization_endpoint": .string(base + "/v1/device_authorization"),
            "grant_types_supported": .array([.string(GrantType.tokenExchange), .string(GrantType.deviceCode)]),
            "token_endpoint_auth_methods_supported": .array([
                .string("client_secret_basic"), .string("client_secret_post"),
            ]),
            "response_types_supported": .array([]),
            "subject_types_supported": .array([.string("public")]),
            "id_token_signing_alg_values_supported": .array(JWSAlgorithm.allCases.map { .string($0.rawValue) }),
            "access_token_signing_alg_values_supported": .array(JWSAlgorithm.allCases.map { .string($0.rawValue) }),
            "acr_values_supported": .array(ACR.values(for: Set(FactorKind.allCases)).map { .string($0) }),
            // RFC 9449 §5.1: the algorithms the token endpoint accepts for DPoP proofs.
            "dpop_signing_alg_values_supported": .array(DPoPProof.algorithms.map { .string($0.rawValue) }),
            "status_list_endpoint": .string(base + "/v1/statuslists"),
            "status_list_uri": .string(tokens.statusListURI(1)),
        ]
        return Response(
            status: .ok,
            headers: [.contentType: "application/json", .cacheControl: "public, max-age=300"],
            body: .init(byteBuffer: ByteBuffer(string: JSONValue.object(doc).serialized()))
        )
    }

    /// RFC 7517 §5 JWK Set; `max-age` is shorter than the key pre-publication window (Keys/README.md).
    func jwks() async throws -> Response {
        let doc = try await tokens.keys.jwks().serialized()
        return Response(
            status: .ok,
            headers: [
                .contentType: "application/jwk-set+json",
                .cacheControl: "public, max-age=\(tokens.keys.jwksMaxAge)",
            ],
            body: .init(byteBuffer: ByteBuffer(string: doc))
        )
    }

    /// draft-ietf-oauth-status-list-20 §8.1: the list is served as `application/statuslist+jwt`.
    func statusList(_ context: StagepassRequestContext) async throws -> Response {
        guard let n = Int64(try context.parameters.require("n")), let jwt = try await tokens.statusLists.list(n) else {
            throw Problem(code: "not_found", status: .notFound, title: "Not found", detail: "no such status list")
        }
        let ttl = tokens.policy.current.tokens.statusListTTL
        return Response(
            status: .ok,
            headers: [.contentType: "application/statuslist+jwt", .cacheControl: "public, max-age=\(ttl)"],
            body: .init(byteBuffer: ByteBuffer(string: jwt))
        )
    }
}

extension TokenBroker {
    /// The issuer URL without a trailing `/`, for building the URLs of documents and pages.
    var baseURL: String { issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer }
}
