import Foundation
public import StagepassJOSE
import Synchronization

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
    ) async throws -> [String] {
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
        return try await store.revoke(target, at: clock.now(), reason: reason ?? "revoked by \(actor)", audit: entry)
    }
}

extension TokenBroker {
    /// Revokes tokens on behalf of a signed-in human. A user may revoke their own tokens (by jti), their own
    /// sessions and all their own tokens; everything else (another user's tokens or sessions, a key) needs an
    /// administrator whose factor is fresh. Revocation takes effect in the served status list at once.
    /// - Returns: the jtis newly revoked.
    /// - Throws: ``OAuthError`` (`forbidden`, `insufficient_user_authentication`, `not_found`).
    public func revoke(_ what: RevocationRequest, sessionToken: String, reason: String?) async throws -> [String] {
        let s = try await self.authorizeRevocation(what, sessionToken: sessionToken, reason: reason)
        return try await revoke(what, actor: s.userName, factors: s.amr, reason: reason)
    }

    /// Who may revoke what (see ``revoke(_:sessionToken:reason:)``); refusals are audited.
    func authorizeRevocation(_ what: RevocationRequest, sessionToken: String, reason: String?) async throws -> Session {
        let s = try await human.sessions.requireMFA(token: sessionToken)
        if let reason, reason.utf8.count > 500 {
            throw OAuthError.invalidRequest("the reason is longer than 500 bytes")
        }
        do {
            switch what {
            case .jti(let j):
                guard let t = try await store.token(jti: j) else { throw OAuthError.notFound("no token with that jti") }
                if t.userId != s.userId { try requireAdmin(s) }
            case .session(let sid):
                let owner = try await store.session(id: sid)?.userId
                if sid != s.id && owner != s.userId { try requireAdmin(s) }
            case .user(let name):
                if name != s.userName { try requireAdmin(s) }
            case .kid:
                try requireAdmin(s)
            }
        } catch let e as OAuthError {
            throw await denied(
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
            try? await audit.record(
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
        try await self.audit.record(event)
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
        return try await self.revokeInStore(what, actor: actor, factors: factors, reason: reason, details: initial)
    }

    /// The storage part of ``revoke(_:actor:factors:reason:)``: ends sessions and delegations where the target asks
    /// for it, marks the ledger rows revoked and audits, in the store.
    func revokeInStore(
        _ what: RevocationRequest,
        actor: String,
        factors: [String],
        reason: String?,
        details initial: [String: String]
    ) async throws -> [String] {
        let now = clock.now()
        let target: RevocationTarget
        var details = initial
        switch what {
        case .jti(let j): target = .jti(j)
        case .session(let sid):
            target = .session(sid)
            // Revoking a session also ends it, and the delegations granted from it.
            try await store.deleteSession(id: sid)
            let ended = try await human.accounts.endDelegations(
                sessionId: sid,
                reason: "its session was revoked",
                actor: actor
            )
            if !ended.isEmpty { details["delegations"] = ended.joined(separator: ",") }
        case .user(let name):
            guard let u = try await store.user(named: name) else { throw OAuthError.notFound("no such user") }
            target = .user(id: u.id, issuedBefore: now)
            // A compromised account must stop minting at once: every session and every delegation ends too.
            try await store.deleteSessions(userId: u.id)
            let ended = try await human.accounts.endDelegations(
                userId: u.id,
                reason: "the delegator was revoked",
                actor: actor
            )
            if !ended.isEmpty { details["delegations"] = ended.joined(separator: ",") }
            details["sessions"] = "ended"
        case .kid(let kid):
            target = .kid(kid)
        }
        return try await human.revokeTokens(
            target,
            describedAs: Self.describe(what),
            actor: actor,
            factors: factors,
            reason: reason,
            details: details
        )
    }
}

/// Where issued tokens sit in the Token Status Lists: the store's ``StatusListRecord``s, with the newest list kept
/// in memory so that placing a token costs no storage round trip except once per list (when the first token past
/// the last list's end creates the next one).
///
/// A token with ledger `seq` sits in the list whose range holds it, at `idx = seq - firstSeq`. Lists are created
/// contiguously, each with the policy's `tokens.status_list_size` at its creation, and never change: a size change
/// shapes only lists created after it, so no issued token's `(idx, uri)` ever moves or collides with another's.
public final class StatusListLayout: Sendable {
    let store: any BrokerStore
    private let newest = Mutex<StatusListRecord?>(nil)

    init(store: any BrokerStore) { self.store = store }

    /// The list holding `seq` (creating it with `size` entries if `seq` is past the last list).
    func place(seq: Int64, size: Int64, at now: Int64) async throws -> StatusListRecord {
        if let r = newest.withLock({ $0 }), r.contains(seq: seq) { return r }
        let r = try await store.placeStatusList(seq: seq, size: size, at: now)
        newest.withLock { n in
            if n.map({ $0.number < r.number }) ?? true { n = r }
        }
        return r
    }

    /// The newest list, if this layout already knows it and it holds `seq` (no storage work).
    func known(seq: Int64) -> StatusListRecord? {
        newest.withLock { n in n.flatMap { $0.contains(seq: seq) ? $0 : nil } }
    }

    /// Every list created so far (from the store).
    public func lists() async throws -> [StatusListRecord] { try await store.statusLists() }
}

/// Serves the Token Status Lists (draft-ietf-oauth-status-list-20): one `statuslist+jwt` per
/// ``StatusListRecord``, one bit per entry, signed with the active key.
///
/// The signed bytes of each list are cached and served as they are until one of these happens, and then the list is
/// signed once more:
/// - a revocation changed this list's bits (the store's revocation epoch moved and the recomputed bits differ; a
///   revocation in another list only costs a recomputation, not a signature);
/// - the active key changed;
/// - half the list's `ttl` passed since it was signed (verifiers count a list's age from its `iat`, and the list's
///   `exp` is `status_list_lifetime` ≥ `ttl` after it, so a served list is always valid for longer than a verifier
///   caches it).
///
/// Never per request: concurrent requests for one list share one computation (single flight). A request reads the
/// revocation epoch first and joins a computation of that list only if it started at that epoch or later, so a
/// request made after a revocation never receives a list computed before it.
public actor StatusListPublisher {

    let store: any BrokerStore
    let keys: KeyStore
    let policy: PolicyHolder
    let issuer: String
    let clock: BrokerClock
    let layout: StatusListLayout

    struct Cached {
        var jwt: String
        var iat: Int64
        var epoch: Int64
        var kid: String
        var size: Int64
        /// SHA-256 of the uncompressed bits, to tell whether a revocation elsewhere left this list unchanged.
        var digest: [UInt8]
    }
    private var cache: [Int64: Cached] = [:]
    /// The computation of each list under way, with the revocation epoch it started at.
    private var inFlight: [Int64: (epoch: Int64, task: Task<String?, any Error>)] = [:]
    /// How many list tokens this publisher signed (tests and the benchmark read it).
    public private(set) var signatures = 0

    init(
        store: any BrokerStore,
        keys: KeyStore,
        policy: PolicyHolder,
        issuer: String,
        clock: BrokerClock,
        layout: StatusListLayout
    ) {
        self.store = store
        self.keys = keys
        self.policy = policy
        self.issuer = issuer
        self.clock = clock
        self.layout = layout
    }

    static func uri(issuer: String, _ n: Int64) -> String {
        (issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer) + "/v1/statuslists/\(n)"
    }

    /// How many lists exist (at least one, even before the first token).
    public func count() async throws -> Int64 { max(1, try await layout.lists().last?.number ?? 0) }

    /// List `n`'s place in the ledger; before the first token, list 1 is an empty list of the policy's size.
    func record(_ n: Int64) async throws -> StatusListRecord? {
        let lists = try await layout.lists()
        if let r = lists.first(where: { $0.number == n }) { return r }
        guard n == 1, lists.isEmpty else { return nil }
        return StatusListRecord(number: 1, firstSeq: 1, size: policy.current.tokens.statusListSize, createdAt: 0)
    }

    /// The signed list `n`, or nil when there is no such list.
    public func list(_ n: Int64) async throws -> String? {
        guard n >= 1 else { return nil }
        let epoch = try await store.revocationEpoch()
        if let running = inFlight[n], running.epoch >= epoch { return try await running.task.value }
        let task = Task { try await self.compute(n, epoch: epoch) }
        inFlight[n] = (epoch, task)
        defer { if inFlight[n]?.task == task { inFlight[n] = nil } }
        return try await task.value
    }

    /// List `n` as of revocation epoch `epoch` (read before its bits, so the bits are at least that recent): the
    /// cached copy while it holds, else a new signature.
    private func compute(_ n: Int64, epoch: Int64) async throws -> String? {
        let tokens = policy.current.tokens
        // The key must stay published until this list expires.
        let key = try await keys.signingKey(coveringLifetime: tokens.statusListLifetime)
        guard let r = try await record(n) else { return nil }
        let now = clock.now()
        let fresh: (Cached) -> Bool = { c in
            c.kid == key.kid && c.size == r.size && now - c.iat < max(1, tokens.statusListTTL / 2)
        }
        if let c = cache[n], c.epoch == epoch, fresh(c) { return c.jwt }
        let bytes = try await bits(r)
        let digest = try Crypto.sha256(bytes)
        if var c = cache[n], fresh(c), c.digest == digest {
            // A revocation elsewhere: this list's bits did not change, the signed copy still holds.
            c.epoch = epoch
            cache[n] = c
            return c.jwt
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
        signatures += 1
        cache[n] = Cached(jwt: jwt, iat: now, epoch: epoch, kid: key.kid, size: r.size, digest: digest)
        return jwt
    }

    /// The uncompressed list: `size / 8` bytes, one bit per entry.
    func bits(_ r: StatusListRecord) async throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Int((r.size + 7) / 8))
        for idx in try await revokedIndices(r).map(Int.init) {
            // draft §4.1: entry idx is bit (idx % 8) of byte idx / 8, least significant bit first; 1 = INVALID (§7.1).
            bytes[idx / 8] |= UInt8(1) << UInt8(idx % 8)
        }
        return bytes
    }

    /// The revoked indices of list `n` (the `stagepass status-list` view, from the store).
    public func revokedIndices(_ n: Int64) async throws -> [Int64] {
        guard let r = try await record(n) else { return [] }
        return try await revokedIndices(r)
    }

    func revokedIndices(_ r: StatusListRecord) async throws -> [Int64] {
        try await store.revokedSeqs(in: r.seqs).map { $0 - r.firstSeq }
    }
}
