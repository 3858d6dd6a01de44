/// Storage of second factors and backup codes.
///
/// The two writes that decide whether a code is accepted are single atomic statements:
/// ``claimTOTPStep(factorId:step:)`` (a TOTP step is used once) and ``consumeBackupCode(id:at:)`` (a backup code is
/// used once).
public protocol FactorStore: Sendable {
    // MARK: factors
    func insertFactor(_ factor: FactorRecord) async throws
    func factor(id: String) async throws -> FactorRecord?
    func factors(ofUser userId: String) async throws -> [FactorRecord]
    func factors(kind: FactorKind) async throws -> [FactorRecord]
    func setFactorState(id: String, _ state: FactorState) async throws
    func deleteFactor(id: String) async throws
    /// Deletes the user's pending factors of `kind` (a new enrolment replaces an unconfirmed one).
    func deletePendingFactors(userId: String, kind: FactorKind) async throws
    /// Replaces the secret boxes of many factors in one transaction (master-key rotation): all or nothing.
    func replaceSecretBoxes(_ boxes: [String: [UInt8]]) async throws
    /// Atomically records `step` as used if it is newer than the last used step; false means replay (RFC 6238 §5.2).
    func claimTOTPStep(factorId: String, step: Int64) async throws -> Bool
    /// Records that a factor just proved its user (``FactorRecord/lastUsedAt``).
    func touchFactor(id: String, at: Int64) async throws

    // MARK: backup codes
    /// Replaces the user's whole set of backup codes (regeneration invalidates the old set).
    func replaceBackupCodes(userId: String, hashes: [[UInt8]]) async throws
    func unusedBackupCodes(userId: String) async throws -> [BackupCodeRecord]
    /// Atomically marks an unused code used; false if it was already used.
    func consumeBackupCode(id: Int64, at: Int64) async throws -> Bool
}
