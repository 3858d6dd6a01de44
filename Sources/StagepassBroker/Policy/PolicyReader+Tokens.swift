// The `tokens` section.

extension PolicyReader {
    static let tokenKeys = [
        "max_ttl", "status_list_ttl", "status_list_lifetime", "status_list_size", "request_lifetime", "poll_interval",
        "admin_mfa_max_age",
        "admin_groups",
    ]

    func tokens(_ section: Entry) throws -> TokenSettings {
        var t = TokenSettings()
        let list = try entries(section.value, path: "tokens", line: section.line, allowed: Self.tokenKeys)
        for e in list {
            switch e.key {
            case "max_ttl": t.maxTTL = try duration(e)
            case "status_list_ttl": t.statusListTTL = try duration(e)
            case "status_list_lifetime": t.statusListLifetime = try duration(e)
            case "status_list_size": t.statusListSize = try statusListSize(e)
            case "request_lifetime": t.requestLifetime = try duration(e)
            case "poll_interval": t.pollInterval = try duration(e)
            case "admin_mfa_max_age": t.adminMFAMaxAge = try duration(e)
            case "admin_groups": t.adminGroups = Set(try names(e, "group").map(\.name))
            default: break  // unreachable: entries(_:allowed:) refused other keys
            }
        }
        func line(_ key: String, or other: String) -> Int {
            (list.first { $0.key == key } ?? list.first { $0.key == other })?.valueLine ?? section.line
        }
        guard t.statusListTTL <= t.statusListLifetime else {
            throw fail(
                line("status_list_ttl", or: "status_list_lifetime"),
                "tokens.status_list_ttl (\(PolicyDuration.format(t.statusListTTL))) must not exceed "
                    + "tokens.status_list_lifetime (\(PolicyDuration.format(t.statusListLifetime)))"
            )
        }
        let cover = KeySchedule.standard.longestCoverableLifetime
        guard t.statusListLifetime <= cover else {
            throw fail(
                line("status_list_lifetime", or: "status_list_lifetime"),
                "tokens.status_list_lifetime (\(PolicyDuration.format(t.statusListLifetime))) exceeds what the "
                    + "key schedule covers (\(PolicyDuration.format(cover)): a key stays published for at most one "
                    + "rotation period after it stops signing); lower it"
            )
        }
        guard t.pollInterval <= t.requestLifetime else {
            throw fail(
                line("poll_interval", or: "request_lifetime"),
                "tokens.poll_interval (\(PolicyDuration.format(t.pollInterval))) must not exceed "
                    + "tokens.request_lifetime (\(PolicyDuration.format(t.requestLifetime)))"
            )
        }
        return t
    }

    /// `tokens.status_list_size`: a power of two within ``TokenSettings/statusListSizeBounds``.
    func statusListSize(_ e: Entry) throws -> Int64 {
        let bounds = TokenSettings.statusListSizeBounds
        let n = Int64(try integer(e, atLeast: 1))
        guard bounds.contains(n), n & (n - 1) == 0 else {
            throw fail(
                e.valueLine,
                "\(e.path): must be a power of two from \(bounds.lowerBound) (2^10) to \(bounds.upperBound) (2^24), "
                    + "found \(n)"
            )
        }
        return n
    }
}
