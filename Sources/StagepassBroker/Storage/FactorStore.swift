/// Storage of second factors and backup codes.
///
/// The two writes that decide whether a code is accepted are single atomic statements:
/// ``claimTOTPStep(factorId:step:)`` (a TOTP step is used once) and ``consumeBackupCode(id:at:)`` (a backup code is
/// used once).
public protocol FactorStore: Sendable {
    // MARK: factors
    func insertFactor(_ factor: FactorRecord) throws
    func factor(id: String) throws -> FactorRecord?
    func factors(ofUser userId: String) throws -> [FactorRecord]
    func factors(kind: FactorKind) throws -> [FactorRecord]
    func setFactorState(id: String, _ state: FactorState) throws
    func deleteFactor(id: String) throws
    /// Deletes the user's pending factors of `kind` (a new enrolment replaces an unconfirmed one).
    func deletePendingFactors(userId: String, kind: FactorKind) throws
    /// Replaces the secret boxes of many factors in one transaction (master-key rotation): all or nothing.
    func replaceSecretBoxes(_ boxes: [String: [UInt8]]) throws
    /// Atomically records `step` as used if it is newer than the last used step; false means replay (RFC 6238 §5.2).
    func claimTOTPStep(factorId: String, step: Int64) throws -> Bool
    /// Records that a factor just proved its user (``FactorRecord/lastUsedAt``).
    func touchFactor(id: String, at: Int64) throws

    // MARK: backup codes
    /// Replaces the user's whole set of backup codes (regeneration invalidates the old set).
    func replaceBackupCodes(userId: String, hashes: [[UInt8]]) throws
    func unusedBackupCodes(userId: String) throws -> [BackupCodeRecord]
    /// Atomically marks an unused code used; false if it was already used.
    func consumeBackupCode(id: Int64, at: Int64) throws -> Bool
}
