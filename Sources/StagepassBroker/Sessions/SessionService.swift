import StagepassJOSE

/// A session as other components see it (HTTP middleware, token exchange).
public struct Session: Sendable, Hashable, Codable {
    public var id: String
    public var userId: String
    public var userName: String
    public var groups: [String]
    public var state: SessionState
    /// RFC 8176 values, e.g. `["pwd","otp"]` (see ``AMR``).
    public var amr: [String]
    /// When the user last proved a factor (unix seconds): sign-in or the latest step-up.
    public var authTime: Int64
    public var createdAt: Int64
    public var idleExpiresAt: Int64
    public var absoluteExpiresAt: Int64
    /// True once the second factor was proved (or the policy exempts the user).
    public var isMFA: Bool { state == .mfa }
}

/// A freshly issued session and its bearer token. The token is shown once; only its SHA-256 is stored.
public struct IssuedSession: Sendable {
    public var token: String
    public var session: Session
}

/// The outcome of the password step.
public struct PasswordStepResult: Sendable {
    public var token: String
    public var session: Session
    /// True when a second factor is needed (the session is `pending`).
    public var needsFactor: Bool
    /// The factor kinds the policy accepts for this user (empty when no factor is needed).
    public var allowedFactors: [FactorKind]
}

/// A second-factor proof.
public enum FactorProof: Sendable {
    case totp(String)
    case backupCode(String)
    /// A security key's assertion: the credential JSON the page posts after `navigator.credentials.get()` (see
    /// ``WebAuthnService/finishAssertion(userId:purpose:credentialJSON:)``), answering a challenge from
    /// ``WebAuthnService/beginAssertion(userId:purpose:)`` for the same purpose.
    case webauthn(credentialJSON: String)

    public var kind: FactorKind {
        switch self {
        case .totp: return .totp
        case .backupCode: return .backup
        case .webauthn: return .webauthn
        }
    }

    /// A typed code as people enter it: backup codes are `xxxxx-xxxxx` (or longer than a TOTP code), anything else
    /// is taken as a TOTP code.
    public static func code(_ code: String) -> FactorProof {
        code.contains("-") || code.count > 8 ? .backupCode(code) : .totp(code)
    }
}

/// Sign-in, step-up, session lookup and sign-out.
///
/// Password (Argon2id) → a `pending` session that needs a factor → TOTP, backup code or security key → an `mfa`
/// session with a new 256-bit random token, `amr` and `auth_time` (OpenID Connect Core 1.0 §2). Abuse resistance:
/// - unknown user, wrong password and disabled account give the same ``BrokerError/invalidCredentials`` after the
///   same work (an unknown user is verified against ``PasswordHasher/dummyHash``), and the same throttle accounting;
/// - per-account and per-address throttling with growing delays (``Throttle``);
/// - after ``Throttle/Policy/lockoutAfterFactorFailures`` factor failures the account is locked until an admin unlock;
/// - tokens are compared by their SHA-256 in constant time.
///
/// ```swift
/// let step1 = try await sessions.signIn(name: "alice", password: pw, address: ip)
/// let mfa = try sessions.completeFactor(pendingToken: step1.token, proof: .totp("123456"), address: ip)
/// let s = try sessions.authenticate(token: mfa.token)   // s.amr == ["pwd","otp"]
/// ```
public struct SessionService: Sendable {
    public let store: any BrokerStore
    public let hasher: PasswordHasher
    public let factors: FactorService
    public let policy: AuthPolicy
    public let clock: BrokerClock
    public let audit: any AuditSink
    public let throttle: Throttle
    /// Verifies security-key proofs (``FactorProof/webauthn(credentialJSON:)``).
    public let webauthn: WebAuthnService

    /// - Parameter webauthn: the security-key service; nil builds one on the same store, clock and audit sink with
    ///   ``WebAuthnConfiguration/localDevelopment``.
    public init(
        store: any BrokerStore, hasher: PasswordHasher, factors: FactorService, policy: AuthPolicy = .default,
        clock: BrokerClock, audit: any AuditSink, webauthn: WebAuthnService? = nil
    ) {
        self.store = store
        self.hasher = hasher
        self.factors = factors
        self.policy = policy
        self.clock = clock
        self.audit = audit
        self.throttle = Throttle(store: store, clock: clock, policy: policy.throttle)
        self.webauthn = webauthn ?? WebAuthnService(store: store, clock: clock, audit: audit)
    }

    /// The SHA-256 of a bearer token, as stored.
    public static func tokenHash(_ token: String) throws -> [UInt8] { try Crypto.sha256(Array(token.utf8)) }

    static func newToken() throws -> String { "sps_" + Base64URL.encode(try Crypto.randomBytes(32)) }

    // MARK: sign-in

    /// The password step.
    /// - Parameters:
    ///   - address: the client address, for per-address throttling.
    /// - Throws: ``BrokerError/invalidCredentials``, ``BrokerError/throttled(retryAfter:)``,
    ///   ``BrokerError/accountLocked``, ``BrokerError/invalidRequest(_:)``.
    public func signIn(name: String, password: String, address: String) async throws -> PasswordStepResult {
        guard !name.isEmpty, name.utf8.count <= 256, !password.isEmpty,
            password.utf8.count <= AccountService.maximumPasswordLength
        else { throw BrokerError.invalidRequest("user and password are required and bounded in length") }
        let keys = [Throttle.accountKey(name), Throttle.addressKey(address)]
        _ = try store.deleteExpiredSessions(now: clock.now())  // opportunistic sweep
        do { try throttle.check(keys) } catch {
            try audit.record(
                AuditEvent(
                    action: "signin.password", subject: name, result: "denied",
                    reason: "throttled", factors: [AMR.password], details: ["address": address]))
            throw error
        }
        let user = try store.user(named: name)
        let ok = await hasher.verifyOffPool(password, against: user?.passwordHash ?? hasher.dummyHash)
        guard let user, ok, !user.disabled else {
            try throttle.fail(keys)
            let reason = user == nil ? "unknown_user" : (ok ? "disabled" : "bad_password")
            try audit.record(
                AuditEvent(
                    action: "signin.password", subject: name, result: "failure", reason: reason,
                    factors: [AMR.password], details: ["address": address]))
            throw BrokerError.invalidCredentials
        }
        if user.locked {
            try audit.record(
                AuditEvent(
                    action: "signin.password", subject: name, result: "denied", reason: "locked",
                    factors: [AMR.password], details: ["address": address]))
            throw BrokerError.accountLocked
        }
        try throttle.succeed([Throttle.accountKey(name)])
        if hasher.needsRehash(user.passwordHash), let fresh = try? await hasher.hashOffPool(password) {
            try store.setPasswordHash(userId: user.id, fresh)
        }
        let groups = try store.groups(ofUser: user.id)
        let now = clock.now()
        let token = try Self.newToken()
        if !policy.requiresMFA(groups: groups) {
            let rec = SessionRecord(
                id: try Self.newSessionId(), tokenHash: try Self.tokenHash(token), userId: user.id,
                state: .mfa, amr: [AMR.password], authTime: now, createdAt: now,
                idleExpiresAt: min(now + policy.idleSeconds, now + policy.absoluteSeconds),
                absoluteExpiresAt: now + policy.absoluteSeconds)
            try store.insertSession(rec)
            try audit.record(
                AuditEvent(
                    action: "signin", actor: name, subject: name, factors: [AMR.password],
                    details: ["session": rec.id, "address": address, "mfa": "exempt"]))
            return PasswordStepResult(
                token: token, session: session(rec, name: name, groups: groups), needsFactor: false,
                allowedFactors: [])
        }
        let rec = SessionRecord(
            id: try Self.newSessionId(), tokenHash: try Self.tokenHash(token), userId: user.id,
            state: .pending, amr: [AMR.password], authTime: now, createdAt: now,
            idleExpiresAt: now + policy.pendingSeconds, absoluteExpiresAt: now + policy.pendingSeconds)
        try store.insertSession(rec)
        try audit.record(
            AuditEvent(
                action: "signin.password", subject: name, factors: [AMR.password],
                details: ["session": rec.id, "address": address, "next": "factor"]))
        let usable = Set(try store.factors(ofUser: user.id).map(\.kind))
        let allowed = policy.allowedFactors(groups: groups).intersection(usable)
        return PasswordStepResult(
            token: token, session: session(rec, name: name, groups: groups), needsFactor: true,
            allowedFactors: allowed.sorted { $0.rawValue < $1.rawValue })
    }

    static func newSessionId() throws -> String { "s_" + Base64URL.encode(try Crypto.randomBytes(12)) }

    /// The factor step: turns a pending session into an MFA session with a new token (the pending token stops working).
    ///
    /// With a security key the `amr` is `["pwd","hwk"]`, plus `"user"` when the authenticator verified the user; the
    /// assertion must answer a challenge from ``WebAuthnService/beginAssertion(userId:purpose:)`` with `.signIn`.
    /// - Throws: ``BrokerError/invalidSession``, ``BrokerError/invalidFactor``, ``BrokerError/factorReplay``,
    ///   ``BrokerError/factorNotAllowed(_:)``, ``BrokerError/noFactor(_:)``, ``BrokerError/throttled(retryAfter:)``,
    ///   ``BrokerError/accountLocked``, ``BrokerError/invalidRequest(_:)``.
    public func completeFactor(pendingToken: String, proof: FactorProof, address: String) throws -> IssuedSession {
        let (rec, user) = try lookup(pendingToken)
        guard rec.state == .pending else { throw BrokerError.invalidSession }
        let methods = try proveFactor(
            user: user, proof: proof, address: address, action: "signin.factor", sessionId: rec.id,
            purpose: .signIn)
        return try promote(rec, user: user, amr: [AMR.password] + methods, details: ["address": address])
    }

    /// Replaces a pending session by a new MFA session with a new token (the pending token stops working), and
    /// audits the sign-in with both factors.
    private func promote(_ pending: SessionRecord, user: UserRecord, amr: [String], details: [String: String])
        throws -> IssuedSession
    {
        let now = clock.now()
        let token = try Self.newToken()
        let mfa = SessionRecord(
            id: try Self.newSessionId(), tokenHash: try Self.tokenHash(token), userId: user.id,
            state: .mfa, amr: amr, authTime: now, createdAt: now,
            idleExpiresAt: min(now + policy.idleSeconds, now + policy.absoluteSeconds),
            absoluteExpiresAt: now + policy.absoluteSeconds)
        try store.deleteSession(id: pending.id)
        try store.insertSession(mfa)
        try audit.record(
            AuditEvent(
                action: "signin", actor: user.name, subject: user.name, factors: mfa.amr,
                details: details.merging(["session": mfa.id]) { a, _ in a }))
        return IssuedSession(
            token: token, session: session(mfa, name: user.name, groups: try store.groups(ofUser: user.id)))
    }

    /// Step-up: re-verifies a factor on an MFA session and refreshes `auth_time` (the `amr` gains the method).
    ///
    /// - Parameter purpose: what a security-key assertion must have been made for (ignored for other proofs): the
    ///   default `.stepUp`, or `.approval(binding:)` when the step-up approves one pipeline request, so that an
    ///   assertion made for one request is refused for any other.
    /// - Throws: as ``completeFactor(pendingToken:proof:address:)``, and ``BrokerError/mfaRequired``.
    public func stepUp(token: String, proof: FactorProof, address: String, purpose: WebAuthnPurpose = .stepUp) throws
        -> Session
    {
        let (rec, user) = try lookup(token)
        guard rec.state == .mfa else { throw BrokerError.mfaRequired }
        let methods = try proveFactor(
            user: user, proof: proof, address: address, action: "stepup", sessionId: rec.id, purpose: purpose)
        var updated = rec
        updated.authTime = clock.now()
        for method in methods where !updated.amr.contains(method) { updated.amr.append(method) }
        try store.updateSession(updated)
        var details = ["session": rec.id, "address": address]
        if let binding = purpose.binding, case .webauthn = proof { details["binding"] = binding }
        try audit.record(
            AuditEvent(
                action: "stepup", actor: user.name, subject: user.name, factors: methods,
                details: details))
        return session(updated, name: user.name, groups: try store.groups(ofUser: user.id))
    }

    /// Verifies `proof` for `user` with throttling and lockout, and returns the `amr` values it earns.
    private func proveFactor(
        user: UserRecord, proof: FactorProof, address: String, action: String,
        sessionId: String, purpose: WebAuthnPurpose
    ) throws -> [String] {
        if user.locked { throw BrokerError.accountLocked }
        let keys = [Throttle.factorKey(user.id), Throttle.addressKey(address)]
        try throttle.check(keys)
        let groups = try store.groups(ofUser: user.id)
        let method = AMR.value(for: proof.kind)
        guard policy.allowedFactors(groups: groups).contains(proof.kind) else {
            throw BrokerError.factorNotAllowed("the policy does not accept \(proof.kind.rawValue) for this account")
        }
        var methods = [method]
        var webauthnReason: String?
        do {
            switch proof {
            case .totp(let code): _ = try factors.verifyTOTP(userId: user.id, code: code, allowPending: true)
            case .backupCode(let code): try factors.useBackupCode(userId: user.id, code: code)
            case .webauthn(let json):
                do {
                    methods = try webauthn.finishAssertion(userId: user.id, purpose: purpose, credentialJSON: json).amr
                } catch let e as WebAuthnError {
                    // A refused assertion counts exactly like a wrong TOTP code (brokerError is invalid_factor);
                    // malformed JSON and "no key registered" do not, like a malformed code and "no TOTP factor".
                    webauthnReason = e.code
                    throw e.brokerError
                }
            }
        } catch let e as BrokerError where e == .invalidFactor || e == .factorReplay {
            let counts = try throttle.fail(keys)
            var details = ["session": sessionId, "address": address]
            if let webauthnReason { details["webauthn"] = webauthnReason }
            try audit.record(
                AuditEvent(
                    action: action, actor: user.name, subject: user.name, result: "failure",
                    reason: e.code, factors: [method],
                    details: details))
            if let n = counts.first, n >= policy.throttle.lockoutAfterFactorFailures {
                try store.setLocked(userId: user.id, true)
                try store.deleteSessions(userId: user.id)
                try audit.record(
                    AuditEvent(
                        action: "lockout", subject: user.name, result: "success",
                        reason: "\(n) factor failures", factors: [method]))
                throw BrokerError.accountLocked
            }
            throw e
        }
        try throttle.succeed([Throttle.factorKey(user.id)])
        return methods
    }

    // MARK: lookup and sign-out

    private func lookup(_ token: String) throws -> (SessionRecord, UserRecord) {
        guard token.utf8.count <= 128 else { throw BrokerError.invalidSession }
        let h = try Self.tokenHash(token)
        guard let rec = try store.session(tokenHash: h), Crypto.constantTimeEqual(rec.tokenHash, h) else {
            throw BrokerError.invalidSession
        }
        let now = clock.now()
        guard now < rec.idleExpiresAt, now < rec.absoluteExpiresAt else {
            try store.deleteSession(id: rec.id)
            throw BrokerError.invalidSession
        }
        guard let user = try store.user(id: rec.userId), !user.disabled else { throw BrokerError.invalidSession }
        return (rec, user)
    }

    /// Looks up a session by bearer token (any state), checks idle and absolute expiry, and slides the idle expiry.
    /// - Throws: ``BrokerError/invalidSession``.
    public func authenticate(token: String) throws -> Session {
        var (rec, user) = try lookup(token)
        if rec.state == .mfa {
            let now = clock.now()
            let next = min(now + policy.idleSeconds, rec.absoluteExpiresAt)
            // Slide only when it gains a noticeable step (≤ 60 s, a tenth of the idle time): every authenticated
            // call (token exchange included) would otherwise write the session row. The expiry can only come
            // earlier than the exact idle rule, never later.
            if next - rec.idleExpiresAt >= max(1, min(60, policy.idleSeconds / 10)) {
                rec.idleExpiresAt = next
                try store.updateSession(rec)
            }
        }
        return session(rec, name: user.name, groups: try store.groups(ofUser: user.id))
    }

    /// Like ``authenticate(token:)`` but requires a completed second factor.
    /// - Throws: ``BrokerError/invalidSession``, ``BrokerError/mfaRequired``.
    public func requireMFA(token: String) throws -> Session {
        let s = try authenticate(token: token)
        guard s.isMFA else { throw BrokerError.mfaRequired }
        return s
    }

    /// Upgrades a pending session to MFA after a first TOTP enrolment was confirmed in it (self-service enrolment by a
    /// user who had no factor yet). Returns the new token.
    public func upgradeAfterEnrolment(pendingToken: String, method: FactorKind, address: String) throws -> IssuedSession
    {
        let (rec, user) = try lookup(pendingToken)
        guard rec.state == .pending else { throw BrokerError.invalidSession }
        return try promote(
            rec, user: user, amr: [AMR.password, AMR.value(for: method)],
            details: ["address": address, "via": "enrolment"])
    }

    /// Ends the session of `token`.
    /// - Throws: ``BrokerError/invalidSession`` when there is no such session.
    public func signOut(token: String) throws {
        let (rec, user) = try lookup(token)
        try store.deleteSession(id: rec.id)
        try audit.record(
            AuditEvent(action: "signout", actor: user.name, subject: user.name, details: ["session": rec.id]))
    }

    /// Ends every session of a user (admin action).
    public func signOutAll(userName: String, actor: String) throws {
        guard let u = try store.user(named: userName) else { throw BrokerError.notFound("no user named \(userName)") }
        try store.deleteSessions(userId: u.id)
        try audit.record(AuditEvent(action: "signout.all", actor: actor, subject: userName))
    }

    private func session(_ r: SessionRecord, name: String, groups: [String]) -> Session {
        Session(
            id: r.id, userId: r.userId, userName: name, groups: groups, state: r.state, amr: r.amr,
            authTime: r.authTime, createdAt: r.createdAt, idleExpiresAt: r.idleExpiresAt,
            absoluteExpiresAt: r.absoluteExpiresAt)
    }
}
