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
    /// The latest proof of each method in this session (``SessionRecord/proofs``).
    public var proofs: [String: FactorStamp]
    /// True once the second factor was proved (or the policy exempts the user).
    public var isMFA: Bool { state == .mfa }

    /// The most recent proof in this session of one of `kinds`, or nil when none of them was proved.
    public func freshestProof(of kinds: Set<FactorKind>) -> FreshProof? {
        kinds.compactMap { kind -> FreshProof? in
            guard let stamp = proofs[AMR.value(for: kind)] else { return nil }
            return FreshProof(kind: kind, at: stamp.at, credential: stamp.credential)
        }.max { ($0.at, $0.kind.rawValue) < ($1.at, $1.kind.rawValue) }
    }
}

/// The proof that satisfied a freshness rule: which factor kind, when, and which credential.
public struct FreshProof: Sendable, Hashable {
    public var kind: FactorKind
    public var at: Int64
    public var credential: String?
    /// The ``AMR`` value of the method.
    public var method: String { AMR.value(for: kind) }
    /// `method:credential`, as audit records name the factor that authorised something.
    public var label: String { credential.map { "\(method):\($0)" } ?? method }

    public init(kind: FactorKind, at: Int64, credential: String?) {
        self.kind = kind
        self.at = at
        self.credential = credential
    }
}

/// A factor just verified: what it earns and which credential proved it. Nothing is recorded in the session until
/// ``SessionService/record(_:in:address:details:)``.
public struct ProvedFactor: Sendable, Hashable {
    public var kind: FactorKind
    /// The ``AMR`` values it earns (`hwk` plus `user` for a user-verifying security key).
    public var methods: [String]
    /// The factor id.
    public var credential: String
    public var at: Int64
    public var fresh: FreshProof { FreshProof(kind: kind, at: at, credential: credential) }
}

/// What authorised a factor change: a fresh proof of an existing active factor, or the first-enrolment rule.
public struct FactorChangeGrant: Sendable {
    public var session: Session
    /// The proof that authorised it; nil for a first enrolment with the password alone.
    public var proof: FreshProof?
    /// For the audit record: `otp:f_…`, `hwk:f_…`, or `password (first enrolment)`.
    public var authorisedBy: String { proof?.label ?? "password (first enrolment)" }
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
/// session with a new 256-bit random token, `amr` and `auth_time` (OpenID Connect Core 1.0 §2). The session keeps the
/// latest proof of each method (``SessionRecord/proofs``): freshness rules read the method they count, never a
/// union. Abuse resistance:
/// - unknown user, wrong password, disabled account and locked account give the same
///   ``BrokerError/invalidCredentials`` after the same work (an unknown user is verified against
///   ``PasswordHasher/dummyHash``), and the same throttle accounting;
/// - every password or factor attempt is reserved in the store before any work (``Throttle/reserve(_:)``), and at
///   most a few run at once per account and per address (``InFlightLimiter``);
/// - password attempts also spend a global budget, and Argon2 runs on a bounded pool (``WorkPool``): past either
///   bound an attempt is refused at once with ``BrokerError/overloaded(retryAfter:)``, for known and unknown names
///   alike, and leaves no count behind;
/// - after ``Throttle/Policy/lockoutAfterFactorFailures`` factor failures the account is locked until an admin unlock;
/// - only active factors prove anything (a pending TOTP factor is accepted at sign-in only as the first factor of a
///   user who has none, which is how an administrator-started first enrolment is completed);
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
    public let clock: BrokerClock
    public let audit: any AuditSink
    public let throttle: Throttle
    /// Verifies security-key proofs (``FactorProof/webauthn(credentialJSON:)``).
    public let webauthn: WebAuthnService
    /// The one policy holder; read per call, so a reload applies at once.
    let policies: PolicyHolder

    /// The authentication policy in force.
    public var policy: AuthPolicy { policies.current.auth }

    /// - Parameter webauthn: the security-key service; nil builds one on the same store, clock and audit sink with
    ///   ``WebAuthnConfiguration/localDevelopment``.
    public init(
        store: any BrokerStore,
        hasher: PasswordHasher,
        factors: FactorService,
        policy: AuthPolicy = .default,
        clock: BrokerClock,
        audit: any AuditSink,
        webauthn: WebAuthnService? = nil
    ) {
        self.init(
            store: store,
            hasher: hasher,
            factors: factors,
            policies: PolicyHolder(AccessPolicy(auth: policy)),
            clock: clock,
            audit: audit,
            webauthn: webauthn
        )
    }

    init(
        store: any BrokerStore,
        hasher: PasswordHasher,
        factors: FactorService,
        policies: PolicyHolder,
        clock: BrokerClock,
        audit: any AuditSink,
        webauthn: WebAuthnService?
    ) {
        self.store = store
        self.hasher = hasher
        self.factors = factors
        self.policies = policies
        self.clock = clock
        self.audit = audit
        self.throttle = Throttle(store: store, clock: clock, inFlight: InFlightLimiter()) {
            policies.current.auth.throttle
        }
        self.webauthn = webauthn ?? WebAuthnService(store: store, clock: clock, audit: audit)
    }

    /// The SHA-256 of a bearer token, as stored.
    public static func tokenHash(_ token: String) throws -> [UInt8] { try Crypto.sha256(Array(token.utf8)) }

    static func newToken() throws -> String { "sps_" + Base64URL.encode(try Crypto.randomBytes(32)) }

    // MARK: sign-in

    /// The password step.
    /// - Parameters:
    ///   - address: the client address, for per-address throttling.
    /// - Throws: ``BrokerError/invalidCredentials`` (also for a disabled or locked account: no oracle),
    ///   ``BrokerError/throttled(retryAfter:)``, ``BrokerError/invalidRequest(_:)``,
    ///   ``BrokerError/overloaded(retryAfter:)`` when the hashing pool is full, the hash waited too long for a worker,
    ///   or the global budget is spent (nothing counted or changed then, whatever the name).
    public func signIn(name: String, password: String, address: String) async throws -> PasswordStepResult {
        guard !name.isEmpty, name.utf8.count <= 256, !password.isEmpty,
            password.utf8.count <= AccountService.maximumPasswordLength
        else { throw BrokerError.invalidRequest("user and password are required and bounded in length") }
        let account = Throttle.accountKey(name)
        let addressKey = Throttle.addressKey(address)
        let limits = throttle.policy.hashLimits(workers: hasher.pool.workers)
        return try await throttle.limitingConcurrency(account: account, address: addressKey) {
            // A place on the hashing pool first: when it is full the attempt is refused before anything is counted.
            let admission = try hasher.pool.admit(limits)
            _ = try await store.deleteExpiredSessions(now: clock.now())  // opportunistic sweep
            let ticket: Throttle.Ticket
            do { ticket = try await throttle.reservePassword(account: account, address: addressKey) } catch let e
                as BrokerError where e.kind == .throttled
            {
                try await audit.record(
                    AuditEvent(
                        action: "signin.password",
                        subject: name,
                        result: "denied",
                        reason: "throttled",
                        factors: [AMR.password],
                        details: ["address": address]
                    )
                )
                throw e
            }
            let user = try await store.user(named: name)
            let ok: Bool
            do {
                ok = try await hasher.verifyOffPool(
                    password,
                    against: user?.passwordHash ?? hasher.dummyHash,
                    admission: admission
                )
            } catch {
                // Refused for waiting too long: the attempt proved and guessed nothing, so it leaves no trace.
                try await throttle.refund(ticket)
                throw error
            }
            guard let accepted = user, ok, !accepted.disabled, !accepted.locked else {
                let reason =
                    user == nil
                    ? "unknown_user" : !ok ? "bad_password" : user?.disabled == true ? "disabled" : "locked"
                try await audit.record(
                    AuditEvent(
                        action: "signin.password",
                        subject: name,
                        result: "failure",
                        reason: reason,
                        factors: [AMR.password],
                        details: ["address": address]
                    )
                )
                throw BrokerError.invalidCredentials
            }
            try await throttle.succeeded(ticket)
            // A rehash refused by a busy pool waits for the next sign-in.
            if hasher.needsRehash(accepted.passwordHash),
                let fresh = try? await hasher.hashOffPool(password, limits: limits)
            {
                try await store.setPasswordHash(userId: accepted.id, fresh)
            }
            return try await startSession(user: accepted, address: address)
        }
    }

    /// After a correct password: an MFA session for an exempt user, else a pending session that needs a factor.
    private func startSession(user: UserRecord, address: String) async throws -> PasswordStepResult {
        let p = policy
        let groups = try await store.groups(ofUser: user.id)
        let now = clock.now()
        let token = try Self.newToken()
        let passwordProof = [AMR.password: FactorStamp(at: now, credential: nil)]
        if !p.requiresMFA(groups: groups) {
            let rec = SessionRecord(
                id: try Self.newSessionId(),
                tokenHash: try Self.tokenHash(token),
                userId: user.id,
                state: .mfa,
                amr: [AMR.password],
                authTime: now,
                createdAt: now,
                idleExpiresAt: min(now + p.idleSeconds, now + p.absoluteSeconds),
                absoluteExpiresAt: now + p.absoluteSeconds,
                proofs: passwordProof
            )
            try await store.insertSession(rec)
            try await audit.record(
                AuditEvent(
                    action: "signin",
                    actor: user.name,
                    subject: user.name,
                    factors: [AMR.password],
                    details: ["session": rec.id, "address": address, "mfa": "exempt"]
                )
            )
            return PasswordStepResult(
                token: token,
                session: session(rec, name: user.name, groups: groups),
                needsFactor: false,
                allowedFactors: []
            )
        }
        let rec = SessionRecord(
            id: try Self.newSessionId(),
            tokenHash: try Self.tokenHash(token),
            userId: user.id,
            state: .pending,
            amr: [AMR.password],
            authTime: now,
            createdAt: now,
            idleExpiresAt: now + p.pendingSeconds,
            absoluteExpiresAt: now + p.pendingSeconds,
            proofs: passwordProof
        )
        try await store.insertSession(rec)
        try await audit.record(
            AuditEvent(
                action: "signin.password",
                subject: user.name,
                factors: [AMR.password],
                details: ["session": rec.id, "address": address, "next": "factor"]
            )
        )
        let usable = Set(try await store.factors(ofUser: user.id).map(\.kind))
        let allowed = p.allowedFactors(groups: groups).intersection(usable)
        return PasswordStepResult(
            token: token,
            session: session(rec, name: user.name, groups: groups),
            needsFactor: true,
            allowedFactors: allowed.sorted { $0.rawValue < $1.rawValue }
        )
    }

    static func newSessionId() throws -> String { "s_" + Base64URL.encode(try Crypto.randomBytes(12)) }

    /// The factor step: turns a pending session into an MFA session with a new token (the pending token stops working).
    ///
    /// With a security key the `amr` is `["pwd","hwk"]`, plus `"user"` when the authenticator verified the user; the
    /// assertion must answer a challenge from ``WebAuthnService/beginAssertion(userId:purpose:)`` with `.signIn`.
    /// Only active factors count, except a pending TOTP factor of a user who has no active factor at all (the
    /// administrator-started first enrolment, completed by its first correct code).
    /// - Throws: ``BrokerError/invalidSession``, ``BrokerError/invalidFactor``, ``BrokerError/factorReplay``,
    ///   ``BrokerError/factorNotAllowed(_:)``, ``BrokerError/noFactor(_:)``, ``BrokerError/throttled(retryAfter:)``,
    ///   ``BrokerError/accountLocked``, ``BrokerError/invalidRequest(_:)``.
    public func completeFactor(pendingToken: String, proof: FactorProof, address: String) async throws -> IssuedSession
    {
        let held = try await lookup(pendingToken)
        let (rec, user) = (held.session, held.user)
        guard rec.state == .pending else { throw BrokerError.invalidSession }
        let firstFactor = !(try await factors.hasActiveFactor(userId: user.id, kinds: Set(FactorKind.allCases)))
        let proved = try await prove(
            user: user,
            proof: proof,
            address: address,
            action: "signin.factor",
            sessionId: rec.id,
            purpose: .signIn,
            allowPending: firstFactor
        )
        var proofs = rec.proofs
        proofs[AMR.value(for: proved.kind)] = FactorStamp(at: proved.at, credential: proved.credential)
        return try await promote(
            rec,
            user: user,
            amr: [AMR.password] + proved.methods,
            proofs: proofs,
            details: ["address": address]
        )
    }

    /// Replaces a pending session by a new MFA session with a new token (the pending token stops working), and
    /// audits the sign-in with both factors.
    private func promote(
        _ pending: SessionRecord,
        user: UserRecord,
        amr: [String],
        proofs: [String: FactorStamp],
        details: [String: String]
    ) async throws -> IssuedSession {
        let p = policy
        let now = clock.now()
        let token = try Self.newToken()
        let mfa = SessionRecord(
            id: try Self.newSessionId(),
            tokenHash: try Self.tokenHash(token),
            userId: user.id,
            state: .mfa,
            amr: amr,
            authTime: now,
            createdAt: now,
            idleExpiresAt: min(now + p.idleSeconds, now + p.absoluteSeconds),
            absoluteExpiresAt: now + p.absoluteSeconds,
            proofs: proofs
        )
        try await store.deleteSession(id: pending.id)
        try await store.insertSession(mfa)
        try await audit.record(
            AuditEvent(
                action: "signin",
                actor: user.name,
                subject: user.name,
                factors: mfa.amr,
                details: details.merging(["session": mfa.id]) { a, _ in a }
            )
        )
        return IssuedSession(
            token: token,
            session: session(mfa, name: user.name, groups: try await store.groups(ofUser: user.id))
        )
    }

    /// Step-up: verifies an active factor on an MFA session and records the proof of that method (its time and
    /// credential); the `amr` gains the method. A failed attempt records nothing.
    ///
    /// - Parameter purpose: what a security-key assertion must have been made for (ignored for other proofs).
    /// - Throws: as ``completeFactor(pendingToken:proof:address:)``, and ``BrokerError/mfaRequired``.
    public func stepUp(
        token: String,
        proof: FactorProof,
        address: String,
        purpose: WebAuthnPurpose = .stepUp
    ) async throws
        -> Session
    {
        let (s, proved) = try await verify(token: token, proof: proof, address: address, purpose: purpose)
        return try await record(proved, in: s, address: address)
    }

    /// Verifies a factor for an MFA session without recording it in the session: the caller decides, once the
    /// action the proof is for has been accepted, whether to ``record(_:in:address:details:)`` it. Only active
    /// factors are accepted.
    /// - Returns: the session (as it was) and the verified factor.
    public func verify(
        token: String,
        proof: FactorProof,
        address: String,
        purpose: WebAuthnPurpose = .stepUp
    ) async throws
        -> (Session, ProvedFactor)
    {
        let held = try await lookup(token)
        let (rec, user) = (held.session, held.user)
        guard rec.state == .mfa else { throw BrokerError.mfaRequired }
        let proved = try await prove(
            user: user,
            proof: proof,
            address: address,
            action: "stepup",
            sessionId: rec.id,
            purpose: purpose,
            allowPending: false
        )
        return (session(rec, name: user.name, groups: try await store.groups(ofUser: user.id)), proved)
    }

    /// Records a verified factor in the session: the proof of its method, `auth_time`, and the method in `amr`.
    public func record(
        _ proved: ProvedFactor,
        in s: Session,
        address: String,
        details: [String: String] = [:]
    ) async throws
        -> Session
    {
        guard var rec = try await store.session(id: s.id), rec.userId == s.userId, rec.state == .mfa else {
            throw BrokerError.invalidSession
        }
        rec.authTime = max(rec.authTime, proved.at)
        rec.proofs[AMR.value(for: proved.kind)] = FactorStamp(at: proved.at, credential: proved.credential)
        for method in proved.methods where !rec.amr.contains(method) { rec.amr.append(method) }
        try await store.updateSession(rec)
        try await audit.record(
            AuditEvent(
                action: "stepup",
                actor: s.userName,
                subject: s.userName,
                factors: proved.methods,
                details: details.merging(["session": rec.id, "address": address, "factor_id": proved.credential]) {
                    a,
                    _ in a
                }
            )
        )
        return session(rec, name: s.userName, groups: try await store.groups(ofUser: rec.userId))
    }

    /// Verifies `proof` for `user` with throttling (reserved before the work) and lockout.
    private func prove(
        user: UserRecord,
        proof: FactorProof,
        address: String,
        action: String,
        sessionId: String,
        purpose: WebAuthnPurpose,
        allowPending: Bool
    ) async throws -> ProvedFactor {
        if user.locked { throw BrokerError.accountLocked }
        let groups = try await store.groups(ofUser: user.id)
        let method = AMR.value(for: proof.kind)
        guard policy.allowedFactors(groups: groups).contains(proof.kind) else {
            throw BrokerError.factorNotAllowed("the policy does not accept \(proof.kind.rawValue) for this account")
        }
        let factorKey = Throttle.factorKey(user.id)
        let addressKey = Throttle.addressKey(address)
        return try await throttle.limitingConcurrency(account: factorKey, address: addressKey) {
            let ticket = try await throttle.reserve([factorKey, addressKey])
            var methods = [method]
            let credential: String
            var webauthnReason: String?
            do {
                switch proof {
                case .totp(let code):
                    credential = try await factors.verifyTOTP(userId: user.id, code: code, allowPending: allowPending)
                        .id
                case .backupCode(let code):
                    credential = try await factors.useBackupCode(userId: user.id, code: code)
                case .webauthn(let json):
                    do {
                        let r = try await webauthn.finishAssertion(
                            userId: user.id,
                            purpose: purpose,
                            credentialJSON: json
                        )
                        methods = r.amr
                        credential = r.factorId
                    } catch let e as WebAuthnError {
                        // A refused assertion counts exactly like a wrong TOTP code (brokerError is invalid_factor);
                        // malformed JSON and "no key registered" do not, like a malformed code and "no TOTP factor".
                        webauthnReason = e.code
                        throw e.brokerError
                    }
                }
            } catch let e as BrokerError where e == .invalidFactor || e == .factorReplay {
                var details = ["session": sessionId, "address": address]
                if let webauthnReason { details["webauthn"] = webauthnReason }
                try await audit.record(
                    AuditEvent(
                        action: action,
                        actor: user.name,
                        subject: user.name,
                        result: "failure",
                        reason: e.code,
                        factors: [method],
                        details: details
                    )
                )
                if let n = ticket.counts.first, n >= policy.throttle.lockoutAfterFactorFailures {
                    try await store.setLocked(userId: user.id, true)
                    try await store.deleteSessions(userId: user.id)
                    try await audit.record(
                        AuditEvent(
                            action: "lockout",
                            subject: user.name,
                            result: "success",
                            reason: "\(n) factor failures",
                            factors: [method]
                        )
                    )
                    throw BrokerError.accountLocked
                }
                throw e
            } catch {
                // Malformed input or a missing factor proved nothing and guessed nothing: give the attempt back.
                try await throttle.refund(ticket)
                throw error
            }
            try await throttle.succeeded(ticket)
            let now = clock.now()
            try await store.touchFactor(id: credential, at: now)
            return ProvedFactor(kind: proof.kind, methods: methods, credential: credential, at: now)
        }
    }

    // MARK: factor changes

    /// Authorises a change to the session user's factors (enrol TOTP, confirm it, regenerate backup codes, register
    /// or remove a security key): the session must hold a proof of one of the user's *active* factors, made within
    /// `mfa.factor_change_max_age`, with that very factor (a removed factor's proofs are forgotten). A user with no
    /// active factor may enrol only when `mfa.first_enrolment_with_password` is on; otherwise an administrator starts
    /// the first enrolment (`stagepass factors totp-enrol NAME`).
    /// - Throws: ``BrokerError/invalidSession``, ``BrokerError/mfaRequired``, ``BrokerError/stepUpRequired(_:)``.
    public func authorizeFactorChange(token: String) async throws -> FactorChangeGrant {
        let held = try await lookup(token)
        let (rec, user) = (held.session, held.user)
        let s = session(rec, name: user.name, groups: try await store.groups(ofUser: user.id))
        let p = policy
        let active = try await store.factors(ofUser: user.id).filter { $0.state == .active }
        if active.isEmpty {
            guard p.firstEnrolmentWithPassword else {
                throw BrokerError.stepUpRequired(
                    "you have no active factor: an administrator starts your first enrolment "
                        + "(stagepass factors totp-enrol \(user.name))"
                )
            }
            return FactorChangeGrant(session: s, proof: nil)
        }
        guard rec.state == .mfa else { throw BrokerError.mfaRequired }
        let now = clock.now()
        let activeIds = Set(active.map(\.id))
        let usable = s.proofs.compactMap { method, stamp -> FreshProof? in
            guard let credential = stamp.credential, activeIds.contains(credential),
                let kind = FactorKind.allCases.first(where: { AMR.value(for: $0) == method }),
                now - stamp.at <= p.factorChangeMaxAge
            else { return nil }
            return FreshProof(kind: kind, at: stamp.at, credential: credential)
        }
        guard let proof = usable.max(by: { $0.at < $1.at }) else {
            throw BrokerError.stepUpRequired(
                "changing factors needs one of your active factors proved within \(p.factorChangeMaxAge) s: "
                    + "step up, then retry"
            )
        }
        return FactorChangeGrant(session: s, proof: proof)
    }

    // MARK: lookup and sign-out

    /// The live session of `token` with its user and groups (one store read).
    private func lookup(_ token: String) async throws -> SessionHolder {
        guard token.utf8.count <= 128 else { throw BrokerError.invalidSession }
        let h = try Self.tokenHash(token)
        guard let held = try await store.sessionHolder(tokenHash: h),
            Crypto.constantTimeEqual(held.session.tokenHash, h)
        else {
            throw BrokerError.invalidSession
        }
        let rec = held.session
        let now = clock.now()
        guard now < rec.idleExpiresAt, now < rec.absoluteExpiresAt else {
            try await store.deleteSession(id: rec.id)
            throw BrokerError.invalidSession
        }
        guard !held.user.disabled, !held.user.locked else { throw BrokerError.invalidSession }
        return held
    }

    /// Looks up a session by bearer token (any state), checks idle and absolute expiry, and slides the idle expiry.
    /// - Throws: ``BrokerError/invalidSession``.
    public func authenticate(token: String) async throws -> Session {
        let held = try await lookup(token)
        var rec = held.session
        if rec.state == .mfa {
            let p = policy
            let now = clock.now()
            let next = min(now + p.idleSeconds, rec.absoluteExpiresAt)
            // Slide only when it gains a noticeable step (≤ 60 s, a tenth of the idle time): every authenticated
            // call (token exchange included) would otherwise write the session row. The expiry can only come
            // earlier than the exact idle rule, never later.
            if next - rec.idleExpiresAt >= max(1, min(60, p.idleSeconds / 10)) {
                rec.idleExpiresAt = next
                try await store.updateSession(rec)
            }
        }
        return session(rec, name: held.user.name, groups: held.groups)
    }

    /// Like ``authenticate(token:)`` but requires a completed second factor.
    /// - Throws: ``BrokerError/invalidSession``, ``BrokerError/mfaRequired``.
    public func requireMFA(token: String) async throws -> Session {
        let s = try await authenticate(token: token)
        guard s.isMFA else { throw BrokerError.mfaRequired }
        return s
    }

    /// Whether the session `id` of user `userId` is still alive (exists, unexpired, its user enabled and unlocked).
    public func isAlive(sessionId id: String, userId: String) async throws -> Bool {
        guard let rec = try await store.session(id: id), rec.userId == userId, rec.state == .mfa else { return false }
        let now = clock.now()
        guard now < rec.idleExpiresAt, now < rec.absoluteExpiresAt else { return false }
        guard let user = try await store.user(id: userId) else { return false }
        return !user.disabled && !user.locked
    }

    /// Upgrades a pending session to MFA after a first TOTP enrolment was confirmed in it (self-service enrolment by a
    /// user who had no factor yet, `first_enrolment_with_password`). Returns the new token.
    public func upgradeAfterEnrolment(
        pendingToken: String,
        factor: FactorInfo,
        address: String
    ) async throws
        -> IssuedSession
    {
        let held = try await lookup(pendingToken)
        let (rec, user) = (held.session, held.user)
        guard rec.state == .pending else { throw BrokerError.invalidSession }
        var proofs = rec.proofs
        proofs[AMR.value(for: factor.kind)] = FactorStamp(at: clock.now(), credential: factor.id)
        return try await promote(
            rec,
            user: user,
            amr: [AMR.password, AMR.value(for: factor.kind)],
            proofs: proofs,
            details: ["address": address, "via": "enrolment"]
        )
    }

    /// Ends the session of `token`.
    /// - Throws: ``BrokerError/invalidSession`` when there is no such session.
    public func signOut(token: String) async throws {
        let held = try await lookup(token)
        let (rec, user) = (held.session, held.user)
        try await store.deleteSession(id: rec.id)
        try await audit.record(
            AuditEvent(action: "signout", actor: user.name, subject: user.name, details: ["session": rec.id])
        )
    }

    /// Ends every session of a user (admin action).
    public func signOutAll(userName: String, actor: String) async throws {
        guard let u = try await store.user(named: userName) else {
            throw BrokerError.notFound("no user named \(userName)")
        }
        try await store.deleteSessions(userId: u.id)
        try await audit.record(AuditEvent(action: "signout.all", actor: actor, subject: userName))
    }

    private func session(_ r: SessionRecord, name: String, groups: [String]) -> Session {
        Session(
            id: r.id,
            userId: r.userId,
            userName: name,
            groups: groups,
            state: r.state,
            amr: r.amr,
            authTime: r.authTime,
            createdAt: r.createdAt,
            idleExpiresAt: r.idleExpiresAt,
            absoluteExpiresAt: r.absoluteExpiresAt,
            proofs: r.proofs
        )
    }
}

extension BrokerStore {
    /// Forgets every proof made with `credential` in the user's sessions (the factor was removed or replaced): a
    /// proof is only as good as the factor behind it.
    func forgetProofs(userId: String, credentials: Set<String>) async throws {
        guard !credentials.isEmpty else { return }
        for var rec in try await sessions(userId: userId) {
            let stale = rec.proofs.filter { $0.value.credential.map(credentials.contains) ?? false }.map(\.key)
            guard !stale.isEmpty else { continue }
            for method in stale { rec.proofs[method] = nil }
            try await updateSession(rec)
        }
    }
}
