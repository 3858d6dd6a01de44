import Foundation
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
}

/// The scoped-token API: discovery, JWKS, the token endpoint (RFC 8693 exchange and RFC 8628 device grant), device
/// authorization, status lists, approvals, delegations, revocation and admin actions.
struct TokenAPI: Sendable {
    let tokens: TokenBroker
    let options: HTTPOptions
    let registry: PrometheusCollectorRegistry
    var broker: HumanBroker { tokens.human }

    func register(on router: Router<BrokerRequestContext>) {
        router.get("/.well-known/openid-configuration") { _, _ in discovery() }
        router.get("/.well-known/jwks.json") { _, _ in try await jwks() }
        router.post("/v1/token") { request, context in try await token(request, context) }
        router.post("/v1/device_authorization") { request, context in try await deviceAuthorization(request, context) }
        router.get("/v1/statuslists/:n") { request, context in try await statusList(request, context) }
        router.get("/v1/approvals") { request, _ in
            let views = try tokens.pendingRequests(sessionToken: try bearer(request))
            return json(.ok, ["requests": .array(views.map { .object(requestJSON($0)) })])
        }
        router.get("/v1/approvals/:code") { request, context in
            let code = try context.parameters.require("code")
            let v = try tokens.view(userCode: code, sessionToken: try bearer(request), address: context.clientAddress)
            return json(.ok, requestJSON(v))
        }
        router.post("/v1/approvals/:code/approve") { request, context in try await approve(request, context) }
        router.post("/v1/approvals/:code/deny") { request, context in try await deny(request, context) }
        router.post("/v1/delegations") { request, context in try await delegate(request, context) }
        router.get("/v1/delegations") { request, _ in
            let all = request.uri.queryParameters["all"].map { $0 == "true" || $0 == "1" } ?? false
            let list = try tokens.delegations(sessionToken: try bearer(request), all: all)
            return json(.ok, ["delegations": .array(list.map { .object(delegationJSON($0)) })])
        }
        router.post("/v1/delegations/:id/revoke") { request, context in
            let id = try context.parameters.require("id")
            let token = try bearer(request)
            let body = try await JSONBody(request, options, allowEmpty: true)
            let reason = body.fields["reason"] == nil ? nil : try body.string("reason", max: 500)
            let revoked = try tokens.revokeDelegation(id: id, sessionToken: token, reason: reason)
            return json(.ok, ["delegation_id": .string(id), "revoked": .bool(revoked)])
        }
        router.post("/v1/revocations") { request, context in try await revoke(request, context) }
        router.post("/v1/admin/keys/rotate") { request, context in try await rotate(request, context) }
        router.post("/v1/admin/policy/reload") { request, context in try await reloadPolicy(request, context) }
        router.post("/v1/admin/clients") { request, context in try await addClient(request, context) }
        router.get("/v1/admin/users") { request, _ in
            _ = try admin(request)
            return json(.ok, ["users": .array(try broker.accounts.list().map { .object(userJSON($0)) })])
        }
        router.post("/v1/admin/users") { request, context in try await addUser(request, context) }
        router.post("/v1/admin/users/:name/:action") { request, context in try await changeUser(request, context) }
    }

    var base: String { tokens.issuer.hasSuffix("/") ? String(tokens.issuer.dropLast()) : tokens.issuer }

    // MARK: documents

    /// OpenID Connect Discovery 1.0 §3 / RFC 8414 §2 metadata.
    func discovery() -> Response {
        let doc: [String: JSONValue] = [
            "issuer": .string(tokens.issuer),
            "jwks_uri": .string(base + "/.well-known/jwks.json"),
            "token_endpoint": .string(base + "/v1/token"),
            "device_authorization_endpoint": .string(base + "/v1/device_authorization"),
            "grant_types_supported": .array([.string(GrantType.tokenExchange), .string(GrantType.deviceCode)]),
            "token_endpoint_auth_methods_supported": .array([.string("client_secret_basic"), .string("client_secret_post")]),
            "response_types_supported": .array([]),
            "subject_types_supported": .array([.string("public")]),
            "id_token_signing_alg_values_supported": .array(JWSAlgorithm.allCases.map { .string($0.rawValue) }),
            "access_token_signing_alg_values_supported": .array(JWSAlgorithm.allCases.map { .string($0.rawValue) }),
            "acr_values_supported": .array(ACR.values(for: Set(FactorKind.allCases)).map { .string($0) }),
            "status_list_endpoint": .string(base + "/v1/statuslists"),
            "status_list_uri": .string(tokens.statusListURI(1)),
        ]
        return Response(
            status: .ok, headers: [.contentType: "application/json", .cacheControl: "public, max-age=300"],
            body: .init(byteBuffer: ByteBuffer(string: JSONValue.object(doc).serialized())))
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
            body: .init(byteBuffer: ByteBuffer(string: doc)))
    }

    /// draft-ietf-oauth-status-list-20 §8.1: the list is served as `application/statuslist+jwt`.
    func statusList(_ request: Request, _ context: BrokerRequestContext) async throws -> Response {
        guard let n = Int64(try context.parameters.require("n")), let jwt = try await tokens.statusLists.list(n) else {
            throw Problem(code: "not_found", status: .notFound, title: "Not found", detail: "no such status list")
        }
        let ttl = tokens.policy.current.tokens.statusListTTL
        return Response(
            status: .ok,
            headers: [.contentType: "application/statuslist+jwt", .cacheControl: "public, max-age=\(ttl)"],
            body: .init(byteBuffer: ByteBuffer(string: jwt)))
    }

    // MARK: token endpoint

    /// RFC 6749 §5.2 / RFC 8693 §2.2.2 / RFC 8628 §3.5 error response (RFC 9470 members when they apply).
    func oauthError(_ e: OAuthError) -> Response {
        var body: [String: JSONValue] = ["error": .string(e.error), "error_description": .string(e.errorDescription)]
        if let m = e.maxAge { body["max_age"] = .int(m) }
        if let a = e.acrValues { body["acr_values"] = .string(a.joined(separator: " ")) }
        var headers: HTTPFields = [.contentType: "application/json", .cacheControl: "no-store"]
        var status: HTTPResponse.Status = .badRequest
        if e.error == "invalid_client" {
            // RFC 6749 §5.2: 401 with a challenge when the client authenticated with the Authorization header.
            status = .unauthorized
            headers[.wwwAuthenticate] = "Basic realm=\"stagepass\""
        }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: JSONValue.object(body).serialized())))
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
            "token_type": .string("Bearer"), "expires_in": .int(t.expiresIn),
            "scope": .string("\(t.record.role):\(t.record.stage)"),
        ]
        return Response(
            status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: JSONValue.object(body).serialized())))
    }

    func token(_ request: Request, _ context: BrokerRequestContext) async throws -> Response {
        var grant = "unknown"
        do {
            let form = try await FormBody(request, options)
            switch try form.required("grant_type") {
            case GrantType.tokenExchange:
                grant = "token-exchange"
                let subject = try form.required("subject_token")
                // RFC 8693 §2.1: subject_token_type is REQUIRED.
                guard try form.required("subject_token_type") == GrantType.sessionTokenType else {
                    throw OAuthError.invalidRequest("subject_token_type must be \(GrantType.sessionTokenType)")
                }
                if let rt = form.fields["requested_token_type"], rt != GrantType.accessTokenType {
                    throw OAuthError.invalidRequest("only \(GrantType.accessTokenType) can be issued")
                }
                let t = try await tokens.exchange(
                    sessionToken: subject, audience: try form.required("audience"), role: try form.required("role"),
                    stage: try form.required("stage"), pipeline: form.fields["pipeline"])
                count(grant, "issued")
                return tokenResponse(t)
            case GrantType.deviceCode:
                grant = "device-code"
                let (client, secret) = try clientCredentials(request, form)
                let t = try await tokens.poll(
                    client: client, secret: secret, deviceCode: try form.required("device_code"))
                count(grant, "issued")
                return tokenResponse(t)
            case let other:
                throw OAuthError.unsupportedGrantType("grant_type \(other.prefix(80)) is not supported")
            }
        } catch let e as OAuthError {
            count(grant, e.error)
            return oauthError(e)
        }
    }

    /// RFC 8628 §3.1 / §3.2.
    func deviceAuthorization(_ request: Request, _ context: BrokerRequestContext) async throws -> Response {
        do {
            let form = try await FormBody(request, options)
            let (client, secret) = try clientCredentials(request, form)
            let d = try tokens.startRequest(
                client: client, secret: secret, audience: try form.required("audience"),
                role: try form.required("role"), stage: try form.required("stage"),
                runId: try form.required("run_id"), commit: form.fields["commit"],
                triggeredBy: form.fields["triggered_by"])
            let verify = base + "/approve"
            let body: [String: JSONValue] = [
                "device_code": .string(d.deviceCode), "user_code": .string(d.userCode),
                "verification_uri": .string(verify),
                "verification_uri_complete": .string(verify + "?code=" + d.userCode),
                "expires_in": .int(d.expiresIn), "interval": .int(d.interval), "request_id": .string(d.requestId),
                "pre_approved": .bool(d.preApproved),
            ]
            return Response(
                status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(string: JSONValue.object(body).serialized())))
        } catch let e as OAuthError {
            return oauthError(e)
        }
    }

    /// RFC 6749 §2.3.1: HTTP Basic (form-urlencoded id and secret) or `client_id`/`client_secret` in the body, never
    /// both (§2.3).
    func clientCredentials(_ request: Request, _ form: FormBody) throws -> (String, String) {
        if let h = request.headers[.authorization] {
            guard form.fields["client_secret"] == nil else {
                throw OAuthError.invalidRequest("use one client authentication method")
            }
            guard h.count > 6, h.prefix(6).lowercased() == "basic ",
                let raw = Data(base64Encoded: String(h.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
                let pair = String(data: raw, encoding: .utf8), let colon = pair.firstIndex(of: ":"),
                let id = FormBody.decode(String(pair[..<colon])),
                let secret = FormBody.decode(String(pair[pair.index(after: colon)...]))
            else { throw OAuthError.invalidClient }
            return (id, secret)
        }
        guard let id = form.fields["client_id"], let secret = form.fields["client_secret"] else {
            throw OAuthError.invalidClient
        }
        return (id, secret)
    }

    // MARK: humans

    func requestJSON(_ v: RequestView) -> [String: JSONValue] {
        let r = v.request
        var o: [String: JSONValue] = [
            "request_id": .string(r.id), "user_code": .string(r.userCode), "client": .string(r.clientId),
            "role": .string(r.role), "stage": .string(r.stage), "audience": .string(r.audience),
            "run_id": .string(r.runId), "state": .string(v.expired && r.state == .pending ? "expired" : r.state.rawValue),
            "created_at": .int(r.createdAt), "expires_at": .int(r.expiresAt),
            "approvals": .array(v.approvals.map { .object(["id": .string($0.id), "user": .string($0.userName), "amr": .array($0.amr.map { .string($0) })]) }),
            "approvers_needed": .int(Int64(v.approversNeeded)),
        ]
        if let c = r.commit { o["commit"] = .string(c) }
        if let t = r.triggeredBy { o["triggered_by"] = .string(t) }
        if let stage = tokens.policy.current.stages[r.stage] {
            o["approval_factors"] = .array(stage.factorsForApproval.map(\.rawValue).sorted().map { .string($0) })
        }
        // The page that can approve with any factor, security keys included.
        o["approve_url"] = .string(base + "/approve?code=" + r.userCode)
        return o
    }

    func approve(_ request: Request, _ context: BrokerRequestContext) async throws -> Response {
        let code = try context.parameters.require("code")
        let token = try bearer(request)
        let body = try await JSONBody(request, options, allowEmpty: true)
        let proof = body.fields["method"] == nil ? nil : try body.proof()
        let o = try tokens.approve(userCode: code, sessionToken: token, proof: proof, address: context.clientAddress)
        return json(
            .ok,
            [
                "approval_id": .string(o.approval.id), "approvals": .int(Int64(o.approvals)),
                "approvers_needed": .int(Int64(o.needed)), "state": .string(o.approved ? "approved" : "pending"),
            ])
    }

    func deny(_ request: Request, _ context: BrokerRequestContext) async throws -> Response {
        let code = try context.parameters.require("code")
        let token = try bearer(request)
        let body = try await JSONBody(request, options, allowEmpty: true)
        let reason = body.fields["reason"] == nil ? nil : try body.string("reason", max: 500)
        try tokens.deny(userCode: code, sessionToken: token, reason: reason, address: context.clientAddress)
        return json(.ok, ["state": .string("denied")])
    }

    func delegate(_ request: Request, _ context: BrokerRequestContext) async throws -> Response {
        let token = try bearer(request)
        let body = try await JSONBody(request, options)
        guard let window = body.fields["window_seconds"]?.intValue else {
            throw Problem.badRequest("field 'window_seconds' must be an integer")
        }
        let d = try tokens.delegate(
            sessionToken: token, client: try body.string("client", max: 128), role: try body.string("role", max: 128),
            stage: try body.string("stage", max: 128), audience: try body.string("audience", max: 256), window: window)
        return json(.created, delegationJSON(d))
    }

    func delegationJSON(_ d: DelegationRecord) -> [String: JSONValue] {
        [
            "delegation_id": .string(d.id), "delegator": .string(d.userName), "client": .string(d.clientId),
            "role": .string(d.role), "stage": .string(d.stage), "audience": .string(d.audience),
            "created_at": .int(d.createdAt), "expires_at": .int(d.expiresAt),
        ]
    }

    /// `{"jti"|"session"|"user"|"kid": …, "reason"?: …}`: exactly one target.
    func revoke(_ request: Request, _ context: BrokerRequestContext) async throws -> Response {
        let token = try bearer(request)
        let body = try await JSONBody(request, options)
        let targets = ["jti", "session", "user", "kid"].filter { body.fields[$0] != nil }
        guard targets.count == 1, let field = targets.first else {
            throw Problem.badRequest("name exactly one of jti, session, user, kid")
        }
        guard let what = RevocationRequest(kind: field, value: try body.string(field, max: 256)) else {
            throw Problem.badRequest("name exactly one of jti, session, user, kid")
        }
        let reason = body.fields["reason"] == nil ? nil : try body.string("reason", max: 500)
        let jtis = try await tokens.revoke(what, sessionToken: token, reason: reason)
        return json(.ok, ["revoked": .int(Int64(jtis.count))])
    }

    // MARK: admin (administrator session with a fresh factor)

    func admin(_ request: Request) throws -> Session {
        let s = try broker.sessions.requireMFA(token: try bearer(request))
        do { try tokens.requireAdmin(s) } catch {
            try? broker.audit.record(
                AuditEvent(
                    action: "admin", actor: s.userName, subject: request.uri.path, result: "denied",
                    reason: error.errorDescription, factors: s.amr))
            throw error
        }
        return s
    }

    func rotate(_ request: Request, _ context: BrokerRequestContext) async throws -> Response {
        let s = try admin(request)
        let body = try await JSONBody(request, options, allowEmpty: true)
        var alg: JWSAlgorithm?
        if body.fields["alg"] != nil {
            guard let a = JWSAlgorithm(rawValue: try body.string("alg", max: 16)) else {
                throw Problem.badRequest("alg must be one of \(JWSAlgorithm.allCases.map(\.rawValue))")
            }
            alg = a
        }
        // `{"force": true}` promotes a next key published for less than the pre-publication window.
        var force = false
        if let f = body.fields["force"] {
            guard let b = f.boolValue else { throw Problem.badRequest("force must be true or false") }
            force = b
        }
        let r: RotationResult
        do {
            r = try await tokens.rotateKeys(by: s, alg: alg, force: force)
        } catch let e as KeyStoreError where e == .nextNotPrePublished {
            var p = Problem(
                code: e.code, status: .conflict, title: "Rotation not yet safe", detail: e.detail,
                retryAfter: e.safeAfter.map { max(1, $0 - broker.clock.now()) })
            if let t = e.safeAfter { p.extra["safe_after"] = .int(t) }
            throw p
        }
        return json(
            .ok,
            [
                "active": .string(r.activeKid), "next": .string(r.nextKid),
                "retiring": r.retiringKid.map { .string($0) } ?? .null,
            ])
    }

    /// Re-reads the policy file and applies every section at once (the broker has one policy holder that sign-in,
    /// throttles, token rules and pages read per call), or refuses with the reason and changes nothing. The audit
    /// record names the sections that changed.
    func reloadPolicy(_ request: Request, _ context: BrokerRequestContext) async throws -> Response {
        let s = try admin(request)
        guard let file = tokens.policy.file else {
            throw Problem(
                code: "conflict", status: .conflict, title: "Conflict",
                detail: "the broker runs the shipped example policy; start it with --policy FILE to reload")
        }
        let p: AccessPolicy
        do { p = try AccessPolicy.load(file: file) } catch {
            try broker.audit.record(
                AuditEvent(
                    action: "policy.load", actor: s.userName, subject: file, result: "failure",
                    reason: "\(error)", factors: s.amr, details: ["applied": "none"]))
            throw Problem.badRequest("the policy file is invalid; the running policy is unchanged: \(error)")
        }
        let old = tokens.policy.current
        let changed = PolicySections.changed(from: old, to: p)
        tokens.policy.replace(p)
        try broker.audit.record(
            AuditEvent(
                action: "policy.load", actor: s.userName, subject: file, factors: s.amr,
                details: [
                    "roles": String(p.roles.count), "stages": String(p.stages.count), "applied": "all",
                    "changed": changed.isEmpty ? "none" : changed.joined(separator: ","),
                ]))
        return json(
            .ok,
            [
                "roles": .int(Int64(p.roles.count)), "stages": .int(Int64(p.stages.count)),
                "changed": .array(changed.map { .string($0) }),
            ])
    }

    func userJSON(_ u: User) -> [String: JSONValue] {
        [
            "name": .string(u.name), "groups": .array(u.groups.map { .string($0) }), "disabled": .bool(u.disabled),
            "locked": .bool(u.locked),
        ]
    }

    /// `{"name","password","groups":[…]}`: user changes are administrator actions (fresh factor).
    func addUser(_ request: Request, _ context: BrokerRequestContext) async throws -> Response {
        let s = try admin(request)
        let body = try await JSONBody(request, options)
        guard let groups = body.fields["groups"]?.arrayValue?.compactMap(\.stringValue) else {
            throw Problem.badRequest("field 'groups' must be an array of strings")
        }
        let u = try broker.accounts.add(
            name: try body.string("name", max: 256),
            password: try body.string("password", max: AccountService.maximumPasswordLength), groups: groups,
            actor: s.userName)
        return json(.created, userJSON(u))
    }

    /// `POST /v1/admin/users/{name}/{disable|enable|unlock|groups}` (`groups` takes `{"groups":[…]}`).
    func changeUser(_ request: Request, _ context: BrokerRequestContext) async throws -> Response {
        let s = try admin(request)
        let name = try context.parameters.require("name")
        let body = try await JSONBody(request, options, allowEmpty: true)
        switch try context.parameters.require("action") {
        case "disable": try broker.accounts.setDisabled(name, true, actor: s.userName)
        case "enable": try broker.accounts.setDisabled(name, false, actor: s.userName)
        case "unlock": try broker.accounts.unlock(name, actor: s.userName)
        case "groups":
            guard let groups = body.fields["groups"]?.arrayValue?.compactMap(\.stringValue) else {
                throw Problem.badRequest("field 'groups' must be an array of strings")
            }
            try broker.accounts.setGroups(name, groups, actor: s.userName)
        default:
            throw Problem(code: "not_found", status: .notFound, title: "Not found", detail: "no such user action")
        }
        return json(.ok, userJSON(try broker.accounts.get(name)))
    }

    func addClient(_ request: Request, _ context: BrokerRequestContext) async throws -> Response {
        let s = try admin(request)
        let body = try await JSONBody(request, options)
        let name = try body.string("name", max: 128)
        let secret = try tokens.clients.add(name: name, actor: s.userName)
        return json(.created, ["name": .string(name), "client_secret": .string(secret)])
    }
}

/// An `application/x-www-form-urlencoded` body (RFC 6749 §3.2, Appendix B). Parameters sent more than once are
/// refused (RFC 6749 §3.1, §3.2: "MUST NOT be included more than once").
struct FormBody {
    let fields: [String: String]

    init(_ request: Request, _ options: HTTPOptions) async throws {
        var request = request
        guard let ct = request.headers[.contentType],
            ct.lowercased().hasPrefix("application/x-www-form-urlencoded")
        else { throw OAuthError.invalidRequest("send application/x-www-form-urlencoded") }
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: options.maxBodyBytes) } catch {
            throw OAuthError.invalidRequest("the request body is larger than \(options.maxBodyBytes) bytes")
        }
        var out: [String: String] = [:]
        let text = String(decoding: buffer.readableBytesView, as: UTF8.self)
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let k = Self.decode(String(parts[0])), let v = Self.decode(parts.count > 1 ? String(parts[1]) : "")
            else { throw OAuthError.invalidRequest("malformed form encoding") }
            guard out[k] == nil else { throw OAuthError.invalidRequest("parameter \(k.prefix(40)) is repeated") }
            out[k] = v
        }
        fields = out
    }

    /// Form decoding: `+` is a space, then percent-decoding (UTF-8).
    static func decode(_ s: String) -> String? {
        s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    func required(_ key: String) throws -> String {
        guard let v = fields[key], !v.isEmpty else { throw OAuthError.invalidRequest("missing parameter \(key)") }
        guard v.utf8.count <= 4096 else { throw OAuthError.invalidRequest("parameter \(key) is too long") }
        return v
    }
}

/// The sections of a policy file, for saying what a reload changed.
enum PolicySections {
    static func changed(from a: AccessPolicy, to b: AccessPolicy) -> [String] {
        var out: [String] = []
        if a.tokens != b.tokens { out.append("tokens") }
        if a.auth.exemptGroups != b.auth.exemptGroups || a.auth.factors != b.auth.factors
            || a.auth.groupFactors != b.auth.groupFactors
            || a.auth.firstEnrolmentWithPassword != b.auth.firstEnrolmentWithPassword
            || a.auth.factorChangeMaxAge != b.auth.factorChangeMaxAge
        {
            out.append("mfa")
        }
        if a.auth.idleSeconds != b.auth.idleSeconds || a.auth.absoluteSeconds != b.auth.absoluteSeconds
            || a.auth.pendingSeconds != b.auth.pendingSeconds
        {
            out.append("sessions")
        }
        if a.auth.throttle != b.auth.throttle { out.append("throttle") }
        if a.audiences != b.audiences { out.append("audiences") }
        if a.stages != b.stages { out.append("stages") }
        if a.roles != b.roles { out.append("roles") }
        if a.pipelines != b.pipelines { out.append("pipelines") }
        if a.identities != b.identities { out.append("identities") }
        return out
    }
}
