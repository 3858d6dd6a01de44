/// The lifetimes the key schedule must cover (Keys/README.md "Timing"; Specs/policy.md "Token lifetimes and the key
/// schedule").
extension AccessPolicy {
    /// The longest token any stage can issue: each stage's `max_ttl` capped by `tokens.max_ttl`, maximised over the
    /// stages (`tokens.max_ttl` when there are none).
    public var longestTokenLifetime: Int64 {
        stages.values.map { min($0.maxTTL, tokens.maxTTL) }.max() ?? tokens.maxTTL
    }

    /// The longest lifetime of anything the broker signs under this policy: tokens and status lists (both are signed
    /// by the active key and must stay verifiable until they expire).
    public var longestSignedLifetime: Int64 { max(longestTokenLifetime, tokens.statusListLifetime) }
}
