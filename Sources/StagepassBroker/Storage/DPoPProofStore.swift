/// The token endpoint's record of DPoP proofs already used (RFC 9449 §11.1): it survives restarts and is shared by
/// every broker on one database, so a proof is accepted once across all of them.
public protocol DPoPProofStore: Sendable {
    // MARK: DPoP proofs
    /// Records the proof identified by `key` (its key thumbprint and `jti`) as used until `expiresAt`, deleting
    /// expired records in the same transaction. Atomic: of concurrent calls with one key, exactly one returns true.
    /// - Returns: false when `key` is already recorded and unexpired at `now` (a replay); nothing is changed then.
    func recordDPoPProof(key: String, expiresAt: Int64, now: Int64) async throws -> Bool
}
