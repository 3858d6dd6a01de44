import Hummingbird
import Prometheus
import StagepassBroker
import StagepassJOSE

/// Grant and token type URIs.
enum GrantType {
    /// RFC 8693 §2.1.
    static let tokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
    /// RFC 8628 §3.4.
    static let deviceCode = "urn:ietf:params:oauth:grant-type:device_code"
    /// RFC 8693 §3: the issued token is an access token.
    static let accessTokenType = "urn:ietf:params:oauth:token-type:access_token"
    /// The `subject_token_type` of a Stagepass session token (RFC 8693 §3 allows other URIs).
    static let sessionTokenType = "urn:stagepass:params:oauth:token-type:session"
    /// RFC 8693 §3: an OpenID Connect ID token, here a CI platform's token for the job.
    static let idTokenType = "urn:ietf:params:oauth:token-type:id_token"
    /// RFC 7523 §2.2: a JWT as client authentication.
    static let jwtBearerAssertion = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
}

extension FormBody {
    /// The CI token of an RFC 7523 §2.2 client assertion (`client_assertion_type` jwt-bearer), nil without one.
    /// - Throws: `invalid_request` for another assertion type, or an assertion beside a client secret.
    func ciAssertion() throws -> String? {
        guard let type = fields["client_assertion_type"] else {
            if fields["client_assertion"] != nil {
                throw OAuthError.invalidRequest("client_assertion needs client_assertion_type")
            }
            return nil
        }
        guard type == GrantType.jwtBearerAssertion else {
            throw OAuthError.invalidRequest("client_assertion_type must be \(GrantType.jwtBearerAssertion)")
        }
        guard fields["client_secret"] == nil else {
            throw OAuthError.invalidRequest("use one client authentication method")
        }
        return try required("client_assertion")
    }
}

/// The OAuth endpoints: the token endpoint (RFC 8693 exchange and RFC 8628 device grant) and device authorization.
/// Errors are RFC 6749 §5.2 bodies, not problems; a storage fault is 503 `temporarily_unavailable`
/// (``StorageFault/tokenEndpointResponse``).
struct TokenEndpointRoutes: Sendable {
    let tokens: TokenBroker
    let options: HTTPOptions
    let registry: PrometheusCollectorRegistry

    var routes: RouteCollection<StagepassRequestContext> {
        let routes = RouteCollection(context: StagepassRequestContext.self)
        routes.add(middleware: ClientCredentialsAuthenticator())
        routes.post("/v1/token") { request, context in try await token(request, context) }
        routes.post("/v1/device_authorization") { request, context in try await deviceAuthorization(request, context) }
        return routes
    }

    /// `stagepass_token_requests_total{grant,result}`: result is `issued` or the OAuth error code.
    func count(_ grant: String, _ result: String) {
        registry.makeCounter(name: "stagepass_token_requests_total", labels: [("grant", grant), ("result", result)])
            .increment()
    }

    func tokenResponse(_ t: IssuedToken) -> Response {
        // RFC 8693 §2.2.1 (a superset of RFC 6749 §5.1).
        let body: [String: JSONValue] = [
            "access_token": .string(t.accessToken), "issued_token_type": .string(GrantType.accessTokenType),
            // RFC 9449 §5: token_type DPoP for a token bound to the proof's key (cnf.jkt), Bearer otherwise.
            "token_type": .string(t.tokenType), "expires_in": .int(t.expiresIn),
            "scope": .string("\(t.record.role):\(t.record.stage)"),
        ]
        return Response(
            status: .ok,
            headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: JSONValue.object(body).serialized()))
        )
    }

    func token(_ request: Request, _ context: StagepassRequestContext) async throws -> Response {
        var grant = "unknown"
        do {
            let form = try await FormBody(request, options)
            let dpop = try dpopProof(request)
            switch try form.required("grant_type") {
            case GrantType.tokenExchange:
                grant = "token-exchange"
                let subject = try form.required("subject_token")
                // RFC 8693 §2.1: subject_token_type is REQUIRED.
                let subjectType = try form.required("subject_token_type")
                guard subjectType == GrantType.sessionTokenType || subjectType == GrantType.idTokenType else {
                    throw OAuthError.invalidRequest(
                        "subject_token_type must be \(GrantType.sessionTokenType) or \(GrantType.idTokenType)"
                    )
                }
                if let rt = form.fields["requested_token_type"], rt != GrantType.accessTokenType {
                    throw OAuthError.invalidRequest("only \(GrantType.accessTokenType) can be issued")
                }
                if subjectType == GrantType.idTokenType {
                    grant = "token-exchange-ci"
                    let t = try await tokens.exchangeCI(
                        ciToken: subject,
                        pipeline: form.fields["pipeline"] ?? form.fields["client_id"],
                        audience: try form.required("audience"),
                        role: try form.required("role"),
                        stage: try form.required("stage"),
                        dpopProof: dpop
                    )
                    count(grant, "issued")
                    return tokenResponse(t)
                }
                let t = try await tokens.exchange(
                    sessionToken: subject,
                    audience: try form.required("audience"),
                    role: try form.required("role"),
                    stage: try form.required("stage"),
                    pipeline: form.fields["pipeline"],
                    dpopProof: dpop
                )
                count(grant, "issued")
                return tokenResponse(t)
            case GrantType.deviceCode:
                grant = "device-code"
                // A request opened with a CI token is polled by its device code with the public client_id alone
                // (RFC 8628 §3.4; RFC 6749 §2.1 public client): no secret exists for it.
                let client: ClientCredentials?
                if context.identity.clientAuthorization == nil, form.fields["client_secret"] == nil {
                    client = nil
                } else {
                    client = try context.requireClient(form: form)
                }
                guard let clientId = client?.id ?? form.fields["client_id"] else { throw OAuthError.invalidClient }
                let t = try await tokens.poll(
                    client: clientId,
                    secret: client?.secret,
                    deviceCode: try form.required("device_code"),
                    dpopProof: dpop
                )
                count(grant, "issued")
                return tokenResponse(t)
            case let other:
                throw OAuthError.unsupportedGrantType("grant_type \(other.prefix(80)) is not supported")
            }
        } catch let e as OAuthError {
            count(grant, e.error)
            return e.tokenEndpointResponse
        } catch let f as StorageFault {
            count(grant, "temporarily_unavailable")
            reportStorageFault(f, logger: context.logger, registry: registry)
            return f.tokenEndpointResponse
        } catch let b as BrokerError {
            guard let e = OAuthError.tokenEndpoint(b) else { throw b }
            count(grant, e.error)
            return e.tokenEndpointResponse
        }
    }

    /// The request's `DPoP` header (RFC 9449 §4.1), or nil. §4.3 step 1: more than one is refused.
    func dpopProof(_ request: Request) throws(OAuthError) -> String? {
        guard let name = PageSecurity.name("DPoP") else { return nil }
        let values = request.headers[values: name]
        guard values.count <= 1 else { throw .invalidDPoPProof("more than one DPoP header") }
        return values.first
    }

    /// RFC 8628 §3.1 / §3.2.
    func deviceAuthorization(_ request: Request, _ context: StagepassRequestContext) async throws -> Response {
        do {
            let form = try await FormBody(request, options)
            let (audience, role) = (try form.required("audience"), try form.required("role"))
            let d: DeviceAuthorization
            if let assertion = try form.ciAssertion() {
                guard context.identity.clientAuthorization == nil else {
                    throw OAuthError.invalidRequest("use one client authentication method")
                }
                // The run id, commit and trigger come from the signed CI token; the job's own are not accepted.
                for f in ["run_id", "commit", "triggered_by"] where form.fields[f] != nil {
                    throw OAuthError.invalidRequest("\(f) comes from the CI token; do not send it")
                }
                d = try await tokens.startCIRequest(
                    ciToken: assertion,
                    pipeline: form.fields["client_id"],
                    audience: audience,
                    role: role,
                    stage: try form.required("stage")
                )
            } else {
                let client = try context.requireClient(form: form)
                let (stage, runId) = (try form.required("stage"), try form.required("run_id"))
                let (commit, triggeredBy) = (form.fields["commit"], form.fields["triggered_by"])
                d = try await tokens.startRequest(
                    client: client.id,
                    secret: client.secret,
                    audience: audience,
                    role: role,
                    stage: stage,
                    runId: runId,
                    commit: commit,
                    triggeredBy: triggeredBy
                )
            }
            let verify = tokens.baseURL + "/approve"
            let body: [String: JSONValue] = [
                "device_code": .string(d.deviceCode), "user_code": .string(d.userCode),
                "verification_uri": .string(verify),
                "verification_uri_complete": .string(verify + "?code=" + d.userCode),
                "expires_in": .int(d.expiresIn), "interval": .int(d.interval), "request_id": .string(d.requestId),
                "pre_approved": .bool(d.preApproved), "client_id": .string(d.pipeline), "run_id": .string(d.runId),
            ]
            return Response(
                status: .ok,
                headers: [.contentType: "application/json", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(string: JSONValue.object(body).serialized()))
            )
        } catch let e as OAuthError {
            return e.tokenEndpointResponse
        } catch let f as StorageFault {
            reportStorageFault(f, logger: context.logger, registry: registry)
            return f.tokenEndpointResponse
        } catch let b as BrokerError {
            guard let e = OAuthError.tokenEndpoint(b) else { throw b }
            return e.tokenEndpointResponse
        }
    }
}
