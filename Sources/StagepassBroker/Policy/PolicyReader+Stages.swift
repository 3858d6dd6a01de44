// The `audiences` and `stages` sections.

extension PolicyReader {
    static let audienceKeys = ["description"]

    static let stageKeys = [
        "max_ttl", "mfa_max_age", "factors", "approval_factors", "approval", "max_window", "approvers",
        "allow_self_approval", "require_dpop",
    ]

    func audiences(_ section: Entry) throws -> [String: AudiencePolicy] {
        var result: [String: AudiencePolicy] = [:]
        for a in try named(section, "audience") {
            var audience = AudiencePolicy(name: a.key)
            let body = try entries(a.value, path: a.path, line: a.line, allowed: Self.audienceKeys)
            for e in body where e.key == "description" { audience.description = try string(e) }
            result[a.key] = audience
        }
        return result
    }

    func stages(_ section: Entry, tokens: TokenSettings, auth: AuthPolicy) throws -> [String: StagePolicy] {
        var result: [String: StagePolicy] = [:]
        for s in try named(section, "stage") {
            let list = try entries(s.value, path: s.path, line: s.line, allowed: Self.stageKeys)
            func entry(_ key: String) -> Entry? { list.first { $0.key == key } }
            var stage = StagePolicy(name: s.key, maxTTL: tokens.maxTTL)
            if let e = entry("max_ttl") {
                stage.maxTTL = try duration(e)
                guard stage.maxTTL <= tokens.maxTTL else {
                    throw fail(
                        e.valueLine,
                        "\(e.path) (\(PolicyDuration.format(stage.maxTTL))) exceeds tokens.max_ttl "
                            + "(\(PolicyDuration.format(tokens.maxTTL))); raise tokens.max_ttl or lower this"
                    )
                }
            }
            // The key that signs a token stays published until the token expires: no stage may issue tokens that
            // live longer than the key schedule covers.
            let cover = KeySchedule.standard.longestCoverableLifetime
            if stage.maxTTL > cover {
                let what =
                    entry("max_ttl").map { "\($0.path) (\(PolicyDuration.format(stage.maxTTL)))" }
                    ?? "\(s.path) takes tokens.max_ttl (\(PolicyDuration.format(stage.maxTTL))), which"
                throw fail(
                    entry("max_ttl")?.valueLine ?? s.line,
                    "\(what) exceeds what the key schedule covers (\(PolicyDuration.format(cover)): a key stays "
                        + "published for at most one rotation period after it stops signing); lower it"
                )
            }
            if let e = entry("mfa_max_age") { stage.mfaMaxAge = try duration(e) }
            if let e = entry("factors") {
                stage.factors = try factors(e)
                guard !stage.factors.isDisjoint(with: auth.factors) else {
                    throw fail(
                        e.valueLine,
                        "\(e.path): none of these factors is enabled in mfa.factors "
                            + "(\(joined(auth.factors.map(\.rawValue)))); no one could reach stage '\(s.key)'"
                    )
                }
            }
            if let e = entry("approval_factors") {
                let kinds = try factors(e)
                guard !kinds.isDisjoint(with: auth.factors) else {
                    throw fail(
                        e.valueLine,
                        "\(e.path): none of these factors is enabled in mfa.factors "
                            + "(\(joined(auth.factors.map(\.rawValue)))); no one could approve stage '\(s.key)'"
                    )
                }
                stage.approvalFactors = kinds
            }
            if let e = entry("approvers") { stage.approvers = try integer(e, atLeast: 1) }
            if let e = entry("allow_self_approval") { stage.allowSelfApproval = try bool(e) }
            if let e = entry("require_dpop") { stage.requireDPoP = try bool(e) }
            guard let modeEntry = entry("approval") else {
                throw fail(s.line, "\(s.path): missing 'approval' (per_run, delegated or session)")
            }
            let window = entry("max_window")
            switch try string(modeEntry) {
            case "per_run": stage.approval = .perRun
            case "session": stage.approval = .session
            case "delegated":
                guard let window else {
                    throw fail(
                        modeEntry.valueLine,
                        "\(s.path): approval 'delegated' needs 'max_window' (the longest delegation, e.g. 8h)"
                    )
                }
                stage.approval = .delegated(maxWindow: try duration(window))
            case let other:
                throw fail(
                    modeEntry.valueLine,
                    "\(modeEntry.path): unknown approval mode '\(other)' "
                        + "(expected one of: per_run, delegated, session)"
                )
            }
            if let window, stage.approval.name != "delegated" {
                throw fail(
                    window.line,
                    "\(window.path): only meaningful with approval: delegated (this stage is \(stage.approval.name))"
                )
            }
            result[s.key] = stage
        }
        return result
    }
}
