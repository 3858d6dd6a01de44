// The `pipelines` section.

extension PolicyReader {
    static let pipelineKeys = ["roles", "stages", "audiences", "require_dpop"]

    func pipelines(_ section: Entry, policy: AccessPolicy) throws -> [String: PipelinePolicy] {
        var result: [String: PipelinePolicy] = [:]
        for p in try named(section, "pipeline") {
            var roles: [Item] = []
            var stages: [Item] = []
            var audiences: [Item] = []
            var requireDPoP = false
            for e in try entries(p.value, path: p.path, line: p.line, allowed: Self.pipelineKeys) {
                switch e.key {
                case "roles":
                    roles = try names(e, "role")
                    try checkDefined(roles, in: policy.roles.keys, "role", path: e.path)
                case "stages":
                    stages = try names(e, "stage")
                    try checkDefined(stages, in: policy.stages.keys, "stage", path: e.path)
                case "audiences":
                    audiences = try names(e, "audience")
                    try checkDefined(audiences, in: policy.audiences.keys, "audience", path: e.path)
                case "require_dpop": requireDPoP = try bool(e)
                default: break
                }
            }
            // A stage or audience the pipeline's roles can never reach is a mistake, not a restriction.
            let reachable = roles.isEmpty ? Array(policy.roles.values) : roles.compactMap { policy.roles[$0.name] }
            let via = roles.isEmpty ? "any role" : "its roles (\(joined(roles.map(\.name))))"
            for s in stages where !reachable.contains(where: { $0.stages.contains(s.name) }) {
                throw fail(s.line, "\(p.path).stages: stage '\(s.name)' is not reachable by \(via)")
            }
            for a in audiences where !reachable.contains(where: { $0.audiences.contains(a.name) }) {
                throw fail(a.line, "\(p.path).audiences: audience '\(a.name)' is not reachable by \(via)")
            }
            result[p.key] = PipelinePolicy(
                name: p.key,
                roles: Set(roles.map(\.name)),
                stages: Set(stages.map(\.name)),
                audiences: Set(audiences.map(\.name)),
                requireDPoP: requireDPoP
            )
        }
        return result
    }
}
