// The `identities` section.

extension PolicyReader {
    /// `identities`: CI identities (what pipelines send as `triggered_by`, e.g. a GitHub login) mapped to user
    /// names. Keys are compared normalised (``Identity/normalize(_:)``), so two keys that normalise alike are an
    /// error.
    func identities(_ section: Entry) throws -> [String: String] {
        var result: [String: String] = [:]
        for e in try entries(section.value, path: "identities", line: section.line, allowed: nil) {
            let key = Identity.normalize(e.key)
            guard !key.isEmpty, key.utf8.count <= 256 else {
                throw fail(e.line, "identities: an identity is 1-256 characters")
            }
            let user = try string(e)
            guard AccountService.isValidName(user) else {
                throw fail(e.valueLine, "\(e.path): '\(user)' is not a user name (a-z 0-9 . _ -)")
            }
            guard result[key] == nil else {
                throw fail(
                    e.line,
                    "identities: '\(e.key)' is listed twice (identities are compared case-insensitively)"
                )
            }
            result[key] = user
        }
        return result
    }
}
