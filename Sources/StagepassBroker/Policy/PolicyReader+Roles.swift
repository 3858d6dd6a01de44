// The `roles` section.

extension PolicyReader {
    static let roleKeys = ["groups", "stages", "audiences"]

    func roles(_ section: Entry, policy: AccessPolicy) throws -> [String: RolePolicy] {
        var result: [String: RolePolicy] = [:]
        for r in try named(section, "role") {
            let list = try entries(r.value, path: r.path, line: r.line, allowed: Self.roleKeys)
            func required(_ key: String, _ what: String) throws -> [Item] {
                guard let e = list.first(where: { $0.key == key }) else {
                    throw fail(r.line, "\(r.path): missing '\(key)' (the \(what)s of this role)")
                }
                let items = try requiredNames(e, what)
                return items
            }
            let groups = try required("groups", "group")
            let stages = try required("stages", "stage")
            try checkDefined(stages, in: policy.stages.keys, "stage", path: "\(r.path).stages")
            let audiences = try required("audiences", "audience")
            try checkDefined(audiences, in: policy.audiences.keys, "audience", path: "\(r.path).audiences")
            result[r.key] = RolePolicy(
                name: r.key,
                groups: Set(groups.map(\.name)),
                stages: Set(stages.map(\.name)),
                audiences: Set(audiences.map(\.name))
            )
        }
        return result
    }
}
