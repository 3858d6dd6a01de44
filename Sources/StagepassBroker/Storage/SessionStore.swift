/// Storage of sessions (only the SHA-256 of a session token is stored).
public protocol SessionStore: Sendable {
    // MARK: sessions
    func insertSession(_ session: SessionRecord) throws
    func session(tokenHash: [UInt8]) throws -> SessionRecord?
    func session(id: String) throws -> SessionRecord?
    func updateSession(_ session: SessionRecord) throws
    func deleteSession(id: String) throws
    func deleteSessions(userId: String) throws
    /// Every session of a user (any state, expired ones included until swept).
    func sessions(userId: String) throws -> [SessionRecord]
    func deleteExpiredSessions(now: Int64) throws -> Int
}
