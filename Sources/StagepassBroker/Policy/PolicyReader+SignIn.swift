// Sign-in: the `mfa`, `sessions` and `throttle` sections.

extension PolicyReader {
    static let mfaKeys = [
        "exempt_groups", "factors", "group_factors", "first_enrolment_with_password", "factor_change_max_age",
    ]

    static let sessionKeys = ["idle_seconds", "absolute_seconds", "pending_seconds"]

    static let throttleKeys = [
        "free_failures", "base_delay_seconds", "max_delay_seconds", "lockout_after_factor_failures",
        "max_concurrent_per_account", "max_concurrent_per_address", "global_failures", "global_window_seconds",
        "hash_queue_per_worker", "hash_max_wait_seconds",
    ]

    func auth(mfa: Entry?, sessions: Entry?, throttle: Entry?) throws -> AuthPolicy {
        var p = AuthPolicy()
        if let mfa {
            var groupFactors: [(group: Entry, factors: Set<FactorKind>)] = []
            for e in try entries(mfa.value, path: "mfa", line: mfa.line, allowed: Self.mfaKeys) {
                switch e.key {
                case "exempt_groups": p.exemptGroups = Set(try names(e, "group").map(\.name))
                case "factors": p.factors = try factors(e)
                case "group_factors":
                    for g in try entries(e.value, path: e.path, line: e.line, allowed: nil) {
                        try checkName(g.key, "group", path: e.path, line: g.line)
                        groupFactors.append((g, try factors(g)))
                    }
                case "first_enrolment_with_password": p.firstEnrolmentWithPassword = try bool(e)
                case "factor_change_max_age": p.factorChangeMaxAge = try duration(e)
                default: break
                }
            }
            for (g, kinds) in groupFactors where kinds.isDisjoint(with: p.factors) {
                throw fail(
                    g.valueLine,
                    "\(g.path): none of these factors is enabled in mfa.factors "
                        + "(\(joined(p.factors.map(\.rawValue)))); "
                        + "members of '\(g.key)' could never sign in"
                )
            }
            p.groupFactors = [:]
            for (g, kinds) in groupFactors { p.groupFactors[g.key] = kinds }
        }
        if let sessions {
            for e in try entries(sessions.value, path: "sessions", line: sessions.line, allowed: Self.sessionKeys) {
                switch e.key {
                case "idle_seconds": p.idleSeconds = try duration(e)
                case "absolute_seconds": p.absoluteSeconds = try duration(e)
                case "pending_seconds": p.pendingSeconds = try duration(e)
                default: break
                }
            }
        }
        if let throttle {
            let list = try entries(throttle.value, path: "throttle", line: throttle.line, allowed: Self.throttleKeys)
            for e in list {
                switch e.key {
                case "free_failures": p.throttle.freeFailures = try integer(e, atLeast: 0)
                case "base_delay_seconds": p.throttle.baseDelay = try duration(e)
                case "max_delay_seconds": p.throttle.maxDelay = try duration(e)
                case "lockout_after_factor_failures": p.throttle.lockoutAfterFactorFailures = try integer(e, atLeast: 1)
                case "max_concurrent_per_account": p.throttle.maxConcurrentPerAccount = try integer(e, atLeast: 1)
                case "max_concurrent_per_address": p.throttle.maxConcurrentPerAddress = try integer(e, atLeast: 1)
                case "global_failures": p.throttle.globalFailures = try integer(e, atLeast: 1)
                case "global_window_seconds": p.throttle.globalWindow = try duration(e)
                case "hash_queue_per_worker": p.throttle.hashQueuePerWorker = try integer(e, atLeast: 0)
                case "hash_max_wait_seconds": p.throttle.hashMaxWait = try duration(e)
                default: break
                }
            }
            guard p.throttle.maxDelay >= p.throttle.baseDelay else {
                let e = list.first { $0.key == "max_delay_seconds" } ?? list.first { $0.key == "base_delay_seconds" }
                throw fail(
                    e?.valueLine ?? throttle.line,
                    "throttle.max_delay_seconds (\(PolicyDuration.format(p.throttle.maxDelay))) must not be shorter "
                        + "than throttle.base_delay_seconds (\(PolicyDuration.format(p.throttle.baseDelay)))"
                )
            }
        }
        return p
    }
}
