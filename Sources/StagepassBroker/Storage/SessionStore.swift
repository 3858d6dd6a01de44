/// Storage of sessions (only the SHA-256 of a session token is stored).
public protocol SessionStore: Sendable {
    // MARK: sessions
    func insertSession(_ session: SessionRecord) async throws
    func session(tokenHash: [UInt8]) async throws -> SessionRecord?
    func session(id: String) async throws -> SessionRecord?
    func updateSession(_ session: SessionRecord) async throws
    func deleteSession(id: String) async throws
    func deleteSessions(userId: String) async throws
    /// Every session of a user (any state, expired ones included until swept).
    func sessions(userId: String) async throws -> [SessionRecord]
    func deleteExpiredSessions(now: Int64) async throws -> Int
}
