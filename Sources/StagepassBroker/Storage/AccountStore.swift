/// Storage of user accounts and their groups.
public protocol AccountStore: Sendable {
    // MARK: users and groups
    func insertUser(_ user: UserRecord, groups: [String]) async throws
    func user(named name: String) async throws -> UserRecord?
    func user(id: String) async throws -> UserRecord?
    func allUsers() async throws -> [UserRecord]
    func setDisabled(userId: String, _ disabled: Bool) async throws
    func setLocked(userId: String, _ locked: Bool) async throws
    func setPasswordHash(userId: String, _ hash: String) async throws
    func groups(ofUser userId: String) async throws -> [String]
    func setGroups(userId: String, _ groups: [String]) async throws
    func allGroups() async throws -> [String]
}
