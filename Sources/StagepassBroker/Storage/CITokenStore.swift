/// The replay cache of CI tokens: each CI token (by issuer and `jti`, or the token's hash where it has no `jti`) is
/// accepted once, across restarts and across the replicas sharing one database.
public protocol CITokenStore: Sendable {
    /// Records that the token `key` of `issuer` was used now; false (nothing written) if it was used before. Entries
    /// whose token expired before `now` minus a margin are pruned in the same transaction.
    /// - Parameters:
    ///   - expiresAt: the token's `exp` plus the issuer's leeway: the entry is kept at least until then.
    func useCIToken(issuer: String, key: String, expiresAt: Int64, now: Int64) async throws -> Bool
}
