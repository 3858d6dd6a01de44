import Yams

/// Walks the composed node tree by hand so that every error names the line of the offending key or value.
struct PolicyReader {
    let source: String

    /// One `key: value` of a mapping, with the dotted path of the key for messages.
    struct Entry {
        let key: String
        let keyNode: Node
        let value: Node
        let path: String
        /// The key's line.
        var line: Int { keyNode.mark?.line ?? 1 }
        /// The value's line (the key's for an empty value, whose mark may be on the next line).
        var valueLine: Int { isNull(value) ? line : (value.mark?.line ?? line) }
    }

    /// A list item (a name) and its line.
    struct Item {
        let name: String
        let line: Int
    }

    static let sections = [
        "tokens", "mfa", "sessions", "throttle", "audiences", "stages", "roles", "pipelines", "identities",
        "ci_issuers", "ci_guardrails",
    ]

    func fail(_ line: Int, _ message: String) -> PolicyError { PolicyError(file: source, line: line, message: message) }

    func policy(_ root: Node) throws -> AccessPolicy {
        guard case .mapping = root else {
            throw fail(
                root.mark?.line ?? 1,
                "the policy must be a mapping of sections (tokens, stages, roles, …), found \(describe(root))"
            )
        }
        let top = try entries(root, path: "", line: 1, allowed: Self.sections)
        func section(_ name: String) -> Entry? { top.first { $0.key == name } }
        var policy = AccessPolicy()
        if let s = section("tokens") { policy.tokens = try tokens(s) }
        policy.auth = try auth(mfa: section("mfa"), sessions: section("sessions"), throttle: section("throttle"))
        if let s = section("audiences") { policy.audiences = try audiences(s) }
        if let s = section("stages") { policy.stages = try stages(s, tokens: policy.tokens, auth: policy.auth) }
        if let s = section("roles") { policy.roles = try roles(s, policy: policy) }
        if let s = section("ci_issuers") { policy.ciIssuers = try ciIssuers(s) }
        if let s = section("ci_guardrails") { policy.ciGuardrails = try ciGuardrails(s, policy: policy) }
        if let s = section("pipelines") { policy.pipelines = try pipelines(s, policy: policy) }
        if let s = section("identities") { policy.identities = try identities(s) }
        return policy
    }
}

/// Whether a node is YAML null: an empty value, `~` or `null` (plain, not quoted).
func isNull(_ node: Node) -> Bool {
    guard case .scalar(let s) = node, s.style == .plain || s.style == .any else { return false }
    return ["", "~", "null", "Null", "NULL"].contains(s.string)
}

/// How a node is named in "expected X, found Y".
func describe(_ node: Node) -> String {
    switch node {
    case .scalar(let s):
        if isNull(node) { return "nothing" }
        let plain = s.style == .plain || s.style == .any
        if plain, Int(s.string) != nil { return "the number \(s.string)" }
        if plain, ["true", "false"].contains(s.string.lowercased()) { return s.string }
        return "the string '\(s.string)'"
    case .mapping: return "a mapping"
    case .sequence: return "a list"
    case .alias: return "an alias"
    }
}
