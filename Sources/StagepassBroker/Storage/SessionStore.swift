/// Storage of sessions (only the SHA-256 of a session token is stored).
public protocol SessionStore: Sendable {
    // MARK: sessions
    func insertSession(_ session: SessionRecord) async throws
    func session(tokenHash: [UInt8]) async throws -> SessionRecord?
    /// The session with this token hash, its user and the user's groups, read together (one snapshot; one round
    /// trip on PostgreSQL): what every authenticated request needs. Nil when there is no such session.
    func sessionHolder(tokenHash: [UInt8]) async throws -> SessionHolder?
    func session(id: String) async throws -> SessionRecord?
    func updateSession(_ session: SessionRecord) async throws
    func deleteSession(id: String) async throws
    func deleteSessions(userId: String) async throws
    /// Every session of a user (any state, expired ones included until swept).
    func sessions(userId: String) async throws -> [SessionRecord]
    func deleteExpiredSessions(now: Int64) async throws -> Int
}

/// A session with its user and the user's groups (``SessionStore/sessionHolder(tokenHash:)``).
public struct SessionHolder: Sendable, Hashable {
    public var session: SessionRecord
    public var user: UserRecord
    /// The user's groups, sorted by name.
    public var groups: [String]

    public init(session: SessionRecord, user: UserRecord, groups: [String]) {
        self.session = session
        self.user = user
        self.groups = groups
    }
}
