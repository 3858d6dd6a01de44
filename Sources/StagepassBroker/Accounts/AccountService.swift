import StagepassJOSE

/// A user as other components see it: no password hash.
public struct User: Sendable, Hashable, Codable {
    public var id: String
    public var name: String
    public var groups: [String]
    public var disabled: Bool
    public var locked: Bool
    public var createdAt: Int64
}

/// Accounts and groups: add, list, disable, enable, unlock, change groups and passwords. Every change is audited.
///
/// ```swift
/// let accounts = AccountService(store: store, hasher: try PasswordHasher(), clock: .system, audit: log)
/// let alice = try accounts.add(name: "alice", password: "…", groups: ["deployers"], actor: "admin")
/// ```
public struct AccountService: Sendable {
    public let store: any BrokerStore
    public let hasher: PasswordHasher
    public let clock: BrokerClock
    public let audit: any AuditSink

    /// Minimum password length (NIST SP 800-63B §3.1.1.2: at least 8; we ask for 12 since there is no blocklist yet).
    public static let minimumPasswordLength = 12
    /// Upper bound so that hashing cost cannot be driven by input size.
    public static let maximumPasswordLength = 1024

    public init(store: any BrokerStore, hasher: PasswordHasher, clock: BrokerClock, audit: any AuditSink) {
        self.store = store
        self.hasher = hasher
        self.clock = clock
        self.audit = audit
    }

    /// User and group names: 1–64 of `a-z 0-9 . _ -`, starting with a letter or digit.
    public static func isValidName(_ s: String) -> Bool {
        guard let first = s.utf8.first, s.utf8.count <= 64 else { return false }
        func ok(_ c: UInt8) -> Bool { (c >= 97 && c <= 122) || (c >= 48 && c <= 57) }
        return ok(first) && s.utf8.allSatisfy { ok($0) || $0 == 46 || $0 == 95 || $0 == 45 }
    }

    static func validatePassword(_ p: String) throws {
        let n = p.count
        guard n >= minimumPasswordLength else {
            throw BrokerError.invalidRequest("the password needs at least \(minimumPasswordLength) characters")
        }
        guard p.utf8.count <= maximumPasswordLength else {
            throw BrokerError.invalidRequest("the password is too long")
        }
    }

    /// Creates a user with an Argon2id password hash.
    /// - Throws: ``BrokerError/invalidRequest(_:)`` for a bad name, group or password (nothing is stored),
    ///   ``BrokerError/conflict(_:)`` if the name is taken.
    @discardableResult
    public func add(name: String, password: String, groups: [String] = [], actor: String) async throws -> User {
        guard Self.isValidName(name) else {
            throw BrokerError.invalidRequest(
                "user names are 1-64 characters of a-z 0-9 . _ - (starting with a-z or 0-9)"
            )
        }
        for g in groups where !Self.isValidName(g) { throw BrokerError.invalidRequest("bad group name '\(g)'") }
        try Self.validatePassword(password)
        let id = "u_" + Base64URL.encode(try Crypto.randomBytes(12))
        let record = UserRecord(id: id, name: name, passwordHash: try hasher.hash(password), createdAt: clock.now())
        do {
            try await store.insertUser(record, groups: groups)
        } catch let e as StoreError where e == .conflict {
            throw BrokerError.conflict("a user named \(name) already exists")
        }
        try await audit.record(
            AuditEvent(
                action: "user.add",
                actor: actor,
                subject: name,
                details: ["groups": groups.sorted().joined(separator: ",")]
            )
        )
        return try await get(name)
    }

    /// The user named `name`, with groups.
    /// - Throws: ``BrokerError/notFound(_:)``.
    public func get(_ name: String) async throws -> User {
        guard let r = try await store.user(named: name) else { throw BrokerError.notFound("no user named \(name)") }
        return try await user(r)
    }

    func user(_ r: UserRecord) async throws -> User {
        User(
            id: r.id,
            name: r.name,
            groups: try await store.groups(ofUser: r.id),
            disabled: r.disabled,
            locked: r.locked,
            createdAt: r.createdAt
        )
    }

    /// Every user, sorted by name.
    public func list() async throws -> [User] {
        var out: [User] = []
        for u in try await store.allUsers() { out.append(try await user(u)) }
        return out
    }

    /// Disables (or re-enables) an account; disabling ends its sessions and its delegations.
    public func setDisabled(_ name: String, _ disabled: Bool, actor: String) async throws {
        let u = try await get(name)
        try await store.setDisabled(userId: u.id, disabled)
        if disabled { try await store.deleteSessions(userId: u.id) }
        try await audit.record(
            AuditEvent(action: disabled ? "user.disable" : "user.enable", actor: actor, subject: name)
        )
        if disabled {
            try await endDelegations(userId: u.id, reason: "the delegator was disabled", actor: actor)
        }
    }

    /// Ends the live delegations granted by a user (`userId`) or from one session (`sessionId`), with one
    /// `delegation.revoke` audit record naming them (in the same transaction when the audit log chains). The one
    /// place delegations end because of what happened to the human behind them.
    /// - Returns: the ids revoked now.
    @discardableResult
    func endDelegations(
        userId: String? = nil,
        sessionId: String? = nil,
        reason: String,
        actor: String
    ) async throws
        -> [String]
    {
        let now = clock.now()
        var live: [DelegationRecord] = []
        if let userId { live += try await store.liveDelegations(userId: userId, now: now) }
        if let sessionId { live += try await store.liveDelegations(sessionId: sessionId, now: now) }
        let ids = Array(Set(live.map(\.id))).sorted()
        guard !ids.isEmpty else { return [] }
        let event = AuditEvent(
            action: "delegation.revoke",
            actor: actor,
            subject: live.first?.userName,
            reason: reason,
            details: ["delegations": ids.joined(separator: ",")]
        )
        let chained = try audit.chainedEntry(event)
        let revoked = try await store.revokeDelegations(ids: ids, at: now, reason: reason, audit: chained)
        if chained == nil, !revoked.isEmpty { try await audit.record(event) }
        return revoked
    }

    /// Clears a factor lockout and the user's throttle counters.
    public func unlock(_ name: String, actor: String) async throws {
        let u = try await get(name)
        try await store.setLocked(userId: u.id, false)
        try await store.clearThrottle(key: Throttle.factorKey(u.id))
        try await store.clearThrottle(key: Throttle.accountKey(name))
        try await audit.record(AuditEvent(action: "user.unlock", actor: actor, subject: name))
    }

    /// Replaces the user's groups. Removing any group ends the user's delegations (a delegation is only as alive
    /// as the role behind it; approvals are re-checked against the groups when the token is issued).
    public func setGroups(_ name: String, _ groups: [String], actor: String) async throws {
        for g in groups where !Self.isValidName(g) { throw BrokerError.invalidRequest("bad group name '\(g)'") }
        let u = try await get(name)
        try await store.setGroups(userId: u.id, groups)
        try await audit.record(
            AuditEvent(
                action: "user.groups",
                actor: actor,
                subject: name,
                details: ["groups": groups.sorted().joined(separator: ",")]
            )
        )
        let removed = Set(u.groups).subtracting(groups)
        if !removed.isEmpty {
            try await endDelegations(
                userId: u.id,
                reason: "the delegator left \(removed.sorted().joined(separator: ","))",
                actor: actor
            )
        }
    }

    /// Sets a new password (ends the user's sessions).
    public func setPassword(_ name: String, _ password: String, actor: String) async throws {
        try Self.validatePassword(password)
        let u = try await get(name)
        try await store.setPasswordHash(userId: u.id, try hasher.hash(password))
        try await store.deleteSessions(userId: u.id)
        try await audit.record(AuditEvent(action: "user.password", actor: actor, subject: name))
    }

    /// Every group that has at least one member or was ever assigned.
    public func groups() async throws -> [String] { try await store.allGroups() }
}
