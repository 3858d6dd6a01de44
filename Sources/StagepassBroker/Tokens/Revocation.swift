import Foundation
public import StagepassJOSE

/// What a revocation request names.
public enum RevocationRequest: Sendable, Hashable {
    case jti(String)
    case session(String)
    /// Every token of the named user issued up to now.
    case user(String)
    /// Every token the key signed; the key is marked compromised (unpublished, replaced) if it is not already.
    case kid(String)

    /// From the `jti` / `session` / `user` / `kid` names the API and the pages use; nil for any other name.
    public init?(kind: String, value: String) {
        switch kind {
        case "jti": self = .jti(value)
        case "session": self = .session(value)
        case "user": self = .user(value)
        case "kid": self = .kid(value)
        default: return nil
        }
    }
}

extension HumanBroker {
    /// Marks every matching token revoked in the ledger, with its `revoke` audit record, in one transaction.
    /// Running brokers serve the new status list at once (the revocation epoch moves). Returns the jtis revoked.
    public func revokeTokens(
        _ target: RevocationTarget,
        describedAs subject: String,
        actor: String,
        factors: [String],
        reason: String?,
        details: [String: String] = [:]
    ) throws -> [String] {
        let entry = try audit.entry(
            AuditEvent(
                action: "revoke",
                actor: actor,
                subject: subject,
                reason: reason,
                factors: factors,
                details: details.merging(["target": subject]) { a, _ in a }
            )
        )
        return try store.revoke(target, at: clock.now(), reason: reason ?? "revoked by \(actor)", audit: entry)
    }
}

extension TokenBroker {
    /// Revokes tokens on behalf of a signed-in human. A user may revoke their own tokens (by jti), their own
    /// sessions and all their own tokens; everything else (another user's tokens or sessions, a key) needs an
    /// administrator whose factor is fresh. Revocation takes effect in the served status list at once.
    /// - Returns: the jtis newly revoked.
    /// - Throws: ``OAuthError`` (`forbidden`, `insufficient_user_authentication`, `not_found`).
    public func revoke(_ what: RevocationRequest, sessionToken: String, reason: String?) async throws -> [String] {
        // The checks read storage: on the storage lanes, off the cooperative pool.
        let s = try await BrokerExecutor.storage.run {
            try self.authorizeRevocation(what, sessionToken: sessionToken, reason: reason)
        }
        return try await revoke(what, actor: s.userName, factors: s.amr, reason: reason)
    }

    /// Who may revoke what (see ``revoke(_:sessionToken:reason:)``); refusals are audited.
    func authorizeRevocation(_ what: RevocationRequest, sessionToken: String, reason: String?) throws -> Session {
        let s = try human.sessions.requireMFA(token: sessionToken)
        if let reason, reason.utf8.count > 500 {
            throw OAuthError.invalidRequest("the reason is longer than 500 bytes")
        }
        do {
            switch what {
            case .jti(let j):
                guard let t = try store.token(jti: j) else { throw OAuthError.notFound("no token with that jti") }
                if t.userId != s.userId { try requireAdmin(s) }
            case .session(let sid):
                let owner = try store.session(id: sid)?.userId
                if sid != s.id && owner != s.userId { try requireAdmin(s) }
            case .user(let name):
                if name != s.userName { try requireAdmin(s) }
            case .kid:
                try requireAdmin(s)
            }
        } catch let e as OAuthError {
            throw denied(
                e,
                action: "revoke",
                actor: s.userName,
                factors: s.amr,
                details: ["target": Self.describe(what)]
            )
        }
        return s
    }

    /// Rotates the signing keys now on behalf of an administrator whose factor is fresh (API and pages).
    ///
    /// The pre-publication guard holds as for `stagepass keys rotate`: a `next` key published for less than the
    /// window is promoted only with `force` (verifiers whose cached JWKS predates it then reject its tokens, failing
    /// closed, for up to the JWKS max-age); a forced rotation is audited with `forced = "true"`, a refused one as a
    /// failure.
    /// - Throws: ``KeyStoreError/nextNotPrePublished`` (its ``KeyStoreError/safeAfter`` says from when the rotation
    ///   is safe) without `force`; ``OAuthError`` when `admin` is not a fresh administrator.
    public func rotateKeys(
        by admin: Session,
        alg: JWSAlgorithm? = nil,
        force: Bool = false
    ) async throws
        -> RotationResult
    {
        try requireAdmin(admin)
        let r: RotationResult
        do {
            r = try await keys.rotate(alg: alg, force: force)
        } catch let e as KeyStoreError where e == .nextNotPrePublished {
            try? audit.record(
                AuditEvent(
                    action: "admin.key.rotate",
                    actor: admin.userName,
                    subject: "keys",
                    result: "denied",
                    reason: e.detail,
                    factors: admin.amr,
                    details: ["safe_after": e.safeAfter.map(String.init) ?? ""]
                )
            )
            throw e
        }
        var details = ["active": r.activeKid, "next": r.nextKid, "retiring": r.retiringKid ?? ""]
        if force { details["forced"] = "true" }
        let event = AuditEvent(
            action: "admin.key.rotate",
            actor: admin.userName,
            subject: r.activeKid,
            factors: admin.amr,
            details: details
        )
        try await BrokerExecutor.storage.run { try self.audit.record(event) }
        return r
    }

    static func describe(_ what: RevocationRequest) -> String {
        switch what {
        case .jti(let j): return "jti:" + j
        case .session(let s): return "session:" + s
        case .user(let u): return "user:" + u
        case .kid(let k): return "kid:" + k
        }
    }

    /// Revokes without an authorisation check (the caller did it: an admin HTTP call, or a local admin command).
    public func revoke(
        _ what: RevocationRequest,
        actor: String,
        factors: [String],
        reason: String?
    ) async throws
        -> [String]
    {
        // A key still in the keyring is marked compromised first (unpublished at once, replaced if active); a key
        // already gone only has its ledger rows revoked.
        var keyDetails: [String: String] = [:]
        if case .kid(let kid) = what, let info = await keys.keys().first(where: { $0.kid == kid }),
            info.state != .compromised
        {
            keyDetails["new_active"] = try await keys.compromise(kid: kid).activeKid
        }
        let initial = keyDetails
        return try await BrokerExecutor.storage.run {
            try self.revokeInStore(what, actor: actor, factors: factors, reason: reason, details: initial)
        }
    }

    /// The storage part of ``revoke(_:actor:factors:reason:)``: ends sessions and delegations where the target asks
    /// for it, marks the ledger rows revoked and audits, in the store.
    func revokeInStore(
        _ what: RevocationRequest,
        actor: String,
        factors: [String],
        reason: String?,
        details initial: [String: String]
    ) throws -> [String] {
        let now = clock.now()
        let target: RevocationTarget
        var details = initial
        switch what {
        case .jti(let j): target = .jti(j)
        case .session(let sid):
            target = .session(sid)
            // Revoking a session also ends it, and the delegations granted from it.
            try store.deleteSession(id: sid)
            let ended = try human.accounts.endDelegations(
                sessionId: sid,
                reason: "its session was revoked",
                actor: actor
            )
            if !ended.isEmpty { details["delegations"] = ended.joined(separator: ",") }
        case .user(let name):
            guard let u = try store.user(named: name) else { throw OAuthError.notFound("no such user") }
            target = .user(id: u.id, issuedBefore: now)
            // A compromised account must stop minting at once: every session and every delegation ends too.
            try store.deleteSessions(userId: u.id)
            let ended = try human.accounts.endDelegations(
                userId: u.id,
                reason: "the delegator was revoked",
                actor: actor
            )
            if !ended.isEmpty { details["delegations"] = ended.joined(separator: ",") }
            details["sessions"] = "ended"
        case .kid(let kid):
            target = .kid(kid)
        }
        return try human.revokeTokens(
            target,
            describedAs: Self.describe(what),
            actor: actor,
            factors: factors,
            reason: reason,
            details: details
        )
    }
}

/// Serves the Token Status Lists (draft-ietf-oauth-status-list-20): one `statuslist+jwt` per list of
/// ``TokenBroker/listSize`` one-bit entries, signed with the active key. A list is re-signed when a revocation
/// happened (the store's revocation epoch moved), when the active key changed, or when half its `ttl` has passed;
/// otherwise the cached signature is served.
public actor StatusListPublisher {
    /// The publisher reads the ledger synchronously: it runs on the storage lanes, never on the cooperative pool.
    public nonisolated var unownedExecutor: UnownedSerialExecutor { BrokerExecutor.storage.asUnownedSerialExecutor() }

    let store: any BrokerStore
    let keys: KeyStore
    let policy: PolicyHolder
    let issuer: String
    let clock: BrokerClock

    struct Cached {
        var jwt: String
        var iat: Int64
        var epoch: Int64
        var kid: String
    }
    private var cache: [Int64: Cached] = [:]

    init(store: any BrokerStore, keys: KeyStore, policy: PolicyHolder, issuer: String, clock: BrokerClock) {
        self.store = store
        self.keys = keys
        self.policy = policy
        self.issuer = issuer
        self.clock = clock
    }

    static func uri(issuer: String, _ n: Int64) -> String {
        (issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer) + "/v1/statuslists/\(n)"
    }

    /// How many lists exist (at least one, even before the first token).
    public func count() throws -> Int64 {
        let last = try store.lastTokenSeq()
        return max(1, (last + TokenBroker.listSize - 1) / TokenBroker.listSize)
    }

    /// The signed list `n`, or nil when there is no such list.
    public func list(_ n: Int64) async throws -> String? {
        guard n >= 1, n <= (try count()) else { return nil }
        let epoch = try store.revocationEpoch()
        let tokens = policy.current.tokens
        // The key must stay published until this list expires.
        let key = try await keys.signingKey(coveringLifetime: tokens.statusListLifetime)
        let now = clock.now()
        if let c = cache[n], c.epoch == epoch, c.kid == key.kid, now - c.iat < max(1, tokens.statusListTTL / 2) {
            return c.jwt
        }
        var bytes = [UInt8](repeating: 0, count: Int(TokenBroker.listSize / 8))
        for idx in try revokedIndices(n).map(Int.init) {
            // draft §4.1: entry idx is bit (idx % 8) of byte idx / 8, least significant bit first; 1 = INVALID (§7.1).
            bytes[idx / 8] |= UInt8(1) << UInt8(idx % 8)
        }
        // draft §4.2: lst is the base64url of the ZLIB (RFC 1950) compressed byte array.
        let lst = Base64URL.encode(try Zlib.compress(bytes))
        let claims: JSONValue = .object([
            "sub": .string(Self.uri(issuer: issuer, n)), "iat": .int(now),
            "exp": .int(now + tokens.statusListLifetime), "ttl": .int(tokens.statusListTTL),
            "status_list": .object(["bits": .int(1), "lst": .string(lst)]),
        ])
        // draft §5.1: typ statuslist+jwt, signed like the tokens (same JWKS).
        let jwt = try JWS.sign(
            claims: claims,
            header: ["typ": .string("statuslist+jwt"), "kid": .string(key.kid)],
            key: key.privateKey,
            alg: key.alg
        )
        cache[n] = Cached(jwt: jwt, iat: now, epoch: epoch, kid: key.kid)
        return jwt
    }

    /// The revoked indices of list `n` (the `stagepass status-list` view, from the store).
    public func revokedIndices(_ n: Int64) throws -> [Int64] {
        let first = (n - 1) * TokenBroker.listSize + 1
        return try store.revokedSeqs(in: first...(first + TokenBroker.listSize - 1)).map { $0 - first }
    }
}
