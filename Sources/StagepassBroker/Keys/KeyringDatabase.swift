/// Where a ``KeyStore`` keeps its keyring when several brokers share one database: the key records and their
/// encrypted PKCS#8 PEM text in the database instead of `keyring.json` and `<kid>.pem` files
/// (``KeyStoreConfiguration/database``). ``PostgresStore`` is the implementation.
///
/// The keyring has a version that every committed change increases by one: a broker compares its loaded version
/// with the database's before each signing and JWKS request (one single-row read), so a key change committed by any
/// broker or by `stagepass keys … --database` is used everywhere from the next request on.
public protocol KeyringDatabase: Sendable {
    /// The keyring's current version (0: never written).
    func keyringVersion() throws -> Int64
    /// The whole keyring, read in one snapshot: every record in keyring order (oldest first) with its private key PEM
    /// (nil for retired and compromised keys, whose PEM is destroyed).
    func loadKeyring() throws -> StoredKeyring
    /// Writes `change` in one transaction, if the keyring is still at `change.expectedVersion`: the records, the new
    /// PEMs, the audit records (chained into the broker's audit log in the same transaction) and a change
    /// notification for the other brokers. Returns the new version, or nil when another writer got there first
    /// (nothing was written; the caller re-reads and tries again).
    func commitKeyring(_ change: KeyringChange) throws -> Int64?
}

/// A keyring as read from a ``KeyringDatabase``.
public struct StoredKeyring: Sendable {
    public var version: Int64
    public var keys: [StoredKey]

    public init(version: Int64, keys: [StoredKey]) {
        self.version = version
        self.keys = keys
    }
}

/// One key record and, while it is published, its encrypted PKCS#8 PEM.
public struct StoredKey: Sendable {
    public var record: KeyRecord
    public var pem: String?

    public init(record: KeyRecord, pem: String?) {
        self.record = record
        self.pem = pem
    }
}

/// One key change for ``KeyringDatabase/commitKeyring(_:)``.
public struct KeyringChange: Sendable {
    /// The version the change was computed from (compare-and-set).
    public var expectedVersion: Int64
    /// Every record of the new keyring, in keyring order.
    public var keys: [KeyRecord]
    /// The PEMs of keys new in this change, by kid.
    public var newPEMs: [String: String]
    /// Audit records committed in the same transaction.
    public var audit: [AuditAppend]

    public init(expectedVersion: Int64, keys: [KeyRecord], newPEMs: [String: String], audit: [AuditAppend]) {
        self.expectedVersion = expectedVersion
        self.keys = keys
        self.newPEMs = newPEMs
        self.audit = audit
    }
}
