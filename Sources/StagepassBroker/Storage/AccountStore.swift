/// Storage of user accounts and their groups.
public protocol AccountStore: Sendable {
    // MARK: users and groups
    func insertUser(_ user: UserRecord, groups: [String]) throws
    func user(named name: String) throws -> UserRecord?
    func user(id: String) throws -> UserRecord?
    func allUsers() throws -> [UserRecord]
    func setDisabled(userId: String, _ disabled: Bool) throws
    func setLocked(userId: String, _ locked: Bool) throws
    func setPasswordHash(userId: String, _ hash: String) throws
    func groups(ofUser userId: String) throws -> [String]
    func setGroups(userId: String, _ groups: [String]) throws
    func allGroups() throws -> [String]
}
