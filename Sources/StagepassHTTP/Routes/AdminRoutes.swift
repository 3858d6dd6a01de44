import Hummingbird
import Logging
import StagepassBroker
import StagepassJOSE

/// Revocation and the administrator actions. Admin routes need an administrator session with a fresh factor
/// (``AdminAuthorizer``); revocation rights are checked by the broker per target.
struct AdminRoutes: Sendable {
    let tokens: TokenBroker
    let options: HTTPOptions
    var broker: HumanBroker { tokens.human }

    var routes: RouteCollection<StagepassRequestContext> {
        let routes = RouteCollection(context: StagepassRequestContext.self)
        routes.add(middleware: BearerTokenAuthenticator())
        routes.post("/v1/revocations") { request, context in try await revoke(request, context) }
        routes.add(middleware: BearerSessionAuthenticator(sessions: broker.sessions))
        routes.add(middleware: AdminAuthorizer(tokens: tokens))
        routes.post("/v1/admin/keys/rotate") { request, context in try await rotate(request, context) }
        routes.post("/v1/admin/policy/reload") { request, context in try await reloadPolicy(request, context) }
        routes.post("/v1/admin/clients") { request, context in try await addClient(request, context) }
        routes.get("/v1/admin/users") { _, context in
            _ = try context.requireAdmin()
            let users = try await broker.accounts.list()
            return json(.ok, ["users": .array(users.map { .object(userJSON($0)) })])
        }
        routes.post("/v1/admin/users") { request, context in try await addUser(request, context) }
        routes.post("/v1/admin/users/:name/:action") { request, context in try await changeUser(request, context) }
        return routes
    }

    /// `{"jti"|"session"|"user"|"kid": …, "reason"?: …}`: exactly one target.
    func revoke(_ request: Request, _ context: StagepassRequestContext) async throws -> Response {
        let token = try context.requireSessionToken()
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

    func rotate(_ request: Request, _ context: StagepassRequestContext) async throws -> Response {
        let s = try context.requireAdmin()
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
                code: e.code,
                status: .conflict,
                title: "Rotation not yet safe",
                detail: e.detail,
                retryAfter: e.safeAfter.map { max(1, $0 - broker.clock.now()) }
            )
            if let t = e.safeAfter { p.extra["safe_after"] = .int(t) }
            throw p
        }
        return json(
            .ok,
            [
                "active": .string(r.activeKid), "next": .string(r.nextKid),
                "retiring": r.retiringKid.map { .string($0) } ?? .null,
            ]
        )
    }

    /// Re-reads the policy file and applies every section at once (the broker has one policy holder that sign-in,
    /// throttles, token rules and pages read per call), or refuses with the reason and changes nothing. The audit
    /// record names the sections that changed.
    func reloadPolicy(_ request: Request, _ context: StagepassRequestContext) async throws -> Response {
        let s = try context.requireAdmin()
        guard let file = tokens.policy.file else {
            throw Problem(
                code: "conflict",
                status: .conflict,
                title: "Conflict",
                detail: "the broker runs the shipped example policy; start it with --policy FILE to reload"
            )
        }
        let p: AccessPolicy
        // Reading the file blocks: on a blocking lane, off the cooperative pool.
        do { p = try await BrokerExecutor.blocking.run { try AccessPolicy.load(file: file) } } catch {
            try await broker.audit.record(
                AuditEvent(
                    action: "policy.load",
                    actor: s.userName,
                    subject: file,
                    result: "failure",
                    reason: "\(error)",
                    factors: s.amr,
                    details: ["applied": "none"]
                )
            )
            throw Problem.badRequest("the policy file is invalid; the running policy is unchanged: \(error)")
        }
        let old = tokens.policy.current
        let changed = PolicySections.changed(from: old, to: p)
        tokens.policy.replace(p)
        try await broker.audit.record(
            AuditEvent(
                action: "policy.load",
                actor: s.userName,
                subject: file,
                factors: s.amr,
                details: [
                    "roles": String(p.roles.count), "stages": String(p.stages.count), "applied": "all",
                    "changed": changed.isEmpty ? "none" : changed.joined(separator: ","),
                ]
            )
        )
        // Brokers sharing a PostgreSQL database reload their own policy files too.
        if let postgres = broker.store as? PostgresStore {
            do { try await postgres.announcePolicyReload() } catch {
                Logger(label: "stagepass.replicas").warning(
                    "could not tell the other brokers about the policy reload: they keep their policy"
                )
            }
        }
        return json(
            .ok,
            [
                "roles": .int(Int64(p.roles.count)), "stages": .int(Int64(p.stages.count)),
                "changed": .array(changed.map { .string($0) }),
            ]
        )
    }

    func userJSON(_ u: User) -> [String: JSONValue] {
        [
            "name": .string(u.name), "groups": .array(u.groups.map { .string($0) }), "disabled": .bool(u.disabled),
            "locked": .bool(u.locked),
        ]
    }

    /// `{"name","password","groups":[…]}`: user changes are administrator actions (fresh factor).
    func addUser(_ request: Request, _ context: StagepassRequestContext) async throws -> Response {
        let s = try context.requireAdmin()
        let body = try await JSONBody(request, options)
        guard let groups = body.fields["groups"]?.arrayValue?.compactMap(\.stringValue) else {
            throw Problem.badRequest("field 'groups' must be an array of strings")
        }
        let name = try body.string("name", max: 256)
        let password = try body.string("password", max: AccountService.maximumPasswordLength)
        let u = try await broker.accounts.add(name: name, password: password, groups: groups, actor: s.userName)
        return json(.created, userJSON(u))
    }

    /// `POST /v1/admin/users/{name}/{disable|enable|unlock|groups}` (`groups` takes `{"groups":[…]}`).
    func changeUser(_ request: Request, _ context: StagepassRequestContext) async throws -> Response {
        let s = try context.requireAdmin()
        let name = try context.parameters.require("name")
        let body = try await JSONBody(request, options, allowEmpty: true)
        let accounts = broker.accounts
        switch try context.parameters.require("action") {
        case "disable": try await accounts.setDisabled(name, true, actor: s.userName)
        case "enable": try await accounts.setDisabled(name, false, actor: s.userName)
        case "unlock": try await accounts.unlock(name, actor: s.userName)
        case "groups":
            guard let groups = body.fields["groups"]?.arrayValue?.compactMap(\.stringValue) else {
                throw Problem.badRequest("field 'groups' must be an array of strings")
            }
            try await accounts.setGroups(name, groups, actor: s.userName)
        default:
            throw Problem(code: "not_found", status: .notFound, title: "Not found", detail: "no such user action")
        }
        return json(.ok, userJSON(try await accounts.get(name)))
    }

    func addClient(_ request: Request, _ context: StagepassRequestContext) async throws -> Response {
        let s = try context.requireAdmin()
        let body = try await JSONBody(request, options)
        let name = try body.string("name", max: 128)
        let clients = tokens.clients
        let secret = try await clients.add(name: name, actor: s.userName)
        return json(.created, ["name": .string(name), "client_secret": .string(secret)])
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
