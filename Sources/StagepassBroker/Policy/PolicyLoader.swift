import Foundation
import Yams

/// A policy file error that names the file and the line (1-based) of the offending key or value.
///
/// `description` is `FILE:LINE: message`, the form `stagepass policy check` and `stagepass serve` print.
public struct PolicyError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The file name, or the `source` given to ``AccessPolicy/load(yaml:source:)``.
    public var file: String
    /// The 1-based line of the offending key or value; nil only when the file could not be read at all.
    public var line: Int?
    /// What is wrong, starting with the dotted path of the key when there is one (`stages.production.max_ttl: …`).
    public var message: String

    public init(file: String, line: Int?, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String { line.map { "\(file):\($0): \(message)" } ?? "\(file): \(message)" }
}

/// Durations in the policy file: an integer number of seconds (`300`), or one or more number-unit pairs with the
/// units `s`, `m`, `h`, `d` (`300s`, `5m`, `8h`, `1d`, `1h30m`). No sign, fraction, space or other unit.
public enum PolicyDuration {
    /// The longest duration a policy accepts: 3650 days (keeps `iat + ttl` arithmetic far from overflow).
    public static let maximum: Int64 = 3650 * 86_400

    /// Parses a duration; nil when the text is not a duration or exceeds ``maximum``. `0` parses (to 0): the loader
    /// then reports "must be positive", which says more than "not a duration".
    ///
    /// ```swift
    /// PolicyDuration.parse("5m")     // 300
    /// PolicyDuration.parse("1h30m")  // 5400
    /// PolicyDuration.parse("90")     // 90
    /// PolicyDuration.parse("1.5h")   // nil
    /// ```
    public static func parse(_ text: String) -> Int64? {
        if case .seconds(let n) = read(text) { return n }
        return nil
    }

    enum Reading: Equatable {
        case seconds(Int64)
        case malformed
        case tooLong
    }

    /// Tells a malformed duration from one that is too long.
    static func read(_ text: String) -> Reading {
        let chars = Array(text.utf8)
        guard !chars.isEmpty else { return .malformed }
        if chars.allSatisfy(isDigit) {
            guard let n = number(chars[...]) else { return .tooLong }
            return n <= maximum ? .seconds(n) : .tooLong
        }
        var total: Int64 = 0
        var tooLong = false
        var i = 0
        while i < chars.count {
            let start = i
            while i < chars.count, isDigit(chars[i]) { i += 1 }
            guard i > start, i < chars.count else { return .malformed }
            let unit: Int64
            switch chars[i] {
            case UInt8(ascii: "s"): unit = 1
            case UInt8(ascii: "m"): unit = 60
            case UInt8(ascii: "h"): unit = 3600
            case UInt8(ascii: "d"): unit = 86_400
            default: return .malformed
            }
            i += 1
            guard !tooLong, let n = number(chars[start..<(i - 1)]) else {
                tooLong = true
                continue
            }
            let part = n.multipliedReportingOverflow(by: unit)
            let sum = total.addingReportingOverflow(part.partialValue)
            if part.overflow || sum.overflow || sum.partialValue > maximum {
                tooLong = true
            } else {
                total = sum.partialValue
            }
        }
        return tooLong ? .tooLong : .seconds(total)
    }

    /// The shortest spelling with units, as used in messages and docs: 300 → `5m`, 5400 → `1h30m`, 0 → `0s`.
    public static func format(_ seconds: Int64) -> String {
        guard seconds > 0 else { return "\(seconds)s" }
        var rest = seconds
        var out = ""
        for (unit, suffix) in [(Int64(86_400), "d"), (3600, "h"), (60, "m"), (1, "s")] where rest >= unit {
            out += "\(rest / unit)\(suffix)"
            rest %= unit
        }
        return out
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }

    private static func number(_ digits: ArraySlice<UInt8>) -> Int64? {
        guard digits.count <= 18 else { return nil }
        return digits.reduce(Int64(0)) { $0 * 10 + Int64($1 - UInt8(ascii: "0")) }
    }
}

extension AccessPolicy {
    /// Parses and validates a policy document (the format is `Specs/policy.md`).
    ///
    /// The whole document is checked before anything is returned: unknown sections and keys, wrong types,
    /// non-positive durations, unknown factor kinds and approval modes, and references to roles, stages or audiences
    /// that are not defined are all errors, each naming the line of the offending key or value.
    ///
    /// ```swift
    /// let policy = try AccessPolicy.load(yaml: text, source: "policy.yaml")
    /// ```
    /// - Parameters:
    ///   - yaml: The YAML text.
    ///   - source: The name used in errors (a file name).
    /// - Throws: ``PolicyError`` naming `source` and the line.
    public static func load(yaml: String, source: String = "<policy>") throws -> AccessPolicy {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw PolicyError(yaml: error, source: source, text: yaml)
        } catch {
            throw PolicyError(file: source, line: 1, message: "malformed YAML: \(error)")
        }
        guard let root, !isNull(root) else {
            throw PolicyError(
                file: source, line: 1, message: "the policy is empty (expected sections such as stages, roles)")
        }
        return try PolicyReader(source: source).policy(root)
    }

    /// Reads, parses and validates a policy file.
    /// - Throws: ``PolicyError`` (with a nil `line` when the file cannot be read).
    public static func load(file: String) throws -> AccessPolicy {
        let text: String
        do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
            let reason = FileManager.default.fileExists(atPath: file) ? error.localizedDescription : "no such file"
            throw PolicyError(file: file, line: nil, message: "cannot read the policy file: \(reason)")
        }
        return try load(yaml: text, source: file)
    }

    /// The shipped example policy (``exampleYAML``), which `stagepass serve` uses without `--policy`.
    /// - Throws: ``PolicyError``; never in practice, a test loads it.
    public static func example() throws -> AccessPolicy { try load(yaml: exampleYAML, source: "<example policy>") }

    /// The shipped example policy's YAML text (`stagepass policy example` prints it).
    ///
    /// Groups `developers` (role `builder`: stages `build` and `staging`) and `release-managers` (role `deployer`:
    /// `staging` and `production`), the audience `deploy-api`; `production` needs a per-run approval for pipelines,
    /// a factor proved at most 5 minutes ago, and gives tokens of at most 5 minutes. Members of `admins` (the account
    /// created on first start) are administrators.
    public static let exampleYAML = """
        # Stagepass example policy: what `stagepass serve` uses when started without --policy.
        # Start your own from it:  stagepass policy example > policy.yaml
        # check it:                stagepass policy check policy.yaml
        # and run with it:         stagepass serve --policy policy.yaml
        # The format (every key, its default, the errors) is described in Specs/policy.md.
        # Durations are integer seconds (300) or number-unit pairs: 300s, 5m, 8h, 1d, 1h30m.

        tokens:
          max_ttl: 1h                # no token lives longer, whatever a stage allows
          status_list_ttl: 60s       # how long a verifier may cache the revocation list
          status_list_lifetime: 1h   # exp of a status list token
          request_lifetime: 10m      # a pipeline approval request expires after this
          poll_interval: 5s          # a pipeline polls its request at most this often
          admin_mfa_max_age: 5m      # admin actions need a factor proved this recently
          admin_groups: [admins]     # the account created on first start is in `admins`

        # Sign-in (the same keys as before the policy file existed; defaults shown).
        mfa:
          exempt_groups: []          # a user is exempt only if ALL of their groups are listed
          factors: [totp, webauthn, backup]
          first_enrolment_with_password: false
        sessions:
          idle_seconds: 30m
          absolute_seconds: 12h
          pending_seconds: 5m
        throttle:
          free_failures: 3
          base_delay_seconds: 2s
          max_delay_seconds: 15m
          lockout_after_factor_failures: 10

        # Deploy endpoints: the `aud` of a token.
        audiences:
          deploy-api:
            description: The deploy API

        stages:
          build:
            max_ttl: 1h
            approval: session        # an MFA session is enough
          staging:
            max_ttl: 30m
            mfa_max_age: 12h
            approval: delegated      # a human may approve a pipeline for up to max_window at once
            max_window: 8h
          production:
            max_ttl: 5m              # tokens of at most 5 minutes
            mfa_max_age: 5m          # a factor proved at most 5 minutes ago
            factors: [totp, webauthn]  # a backup code does not count here
            approval: per_run        # every pipeline run is approved by a human
            approval_factors: [webauthn]  # ... with a security key: phishing-resistant, bound to that run
            approvers: 1
            allow_self_approval: false  # not by the human who triggered the run

        # Who may reach which stages and audiences: a user holds a role when they are in one of its groups.
        roles:
          builder:
            groups: [developers]
            stages: [build, staging]
            audiences: [deploy-api]
          deployer:
            groups: [release-managers]
            stages: [staging, production]
            audiences: [deploy-api]

        # Registered pipeline clients (their secrets live in the broker's store, not here). A pipeline may narrow
        # what it gets with roles, stages and audiences; left out, it gets whatever its roles allow.
        pipelines:
          acme-web:
            roles: [builder, deployer]

        """
}

// MARK: - Reading the node tree

extension PolicyError {
    /// Yams' parse errors, with the line Yams reports.
    fileprivate init(yaml error: YamlError, source: String, text: String) {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let ctx = context.map { " (\($0.text), line \($0.mark.line))" } ?? ""
            self.init(file: source, line: mark.line, message: "malformed YAML: \(problem)\(ctx)")
        case .reader(let problem, let offset, _, _):
            let line = offset.map { text.prefix($0).reduce(1) { $1 == "\n" ? $0 + 1 : $0 } } ?? 1
            self.init(file: source, line: line, message: "malformed YAML: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            let keys = duplicates.map { "'\($0)'" }.joined(separator: ", ")
            self.init(
                file: source, line: context.mark.line,
                message: "duplicate key \(keys) (first written on this line; a key may appear only once in a mapping)")
        default:
            self.init(file: source, line: 1, message: "malformed YAML: \(error)")
        }
    }
}

/// Whether a node is YAML null: an empty value, `~` or `null` (plain, not quoted).
private func isNull(_ node: Node) -> Bool {
    guard case .scalar(let s) = node, s.style == .plain || s.style == .any else { return false }
    return ["", "~", "null", "Null", "NULL"].contains(s.string)
}

/// How a node is named in "expected X, found Y".
private func describe(_ node: Node) -> String {
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

/// Levenshtein distance, for "did you mean" on misspelt keys.
private func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    guard !a.isEmpty else { return b.count }
    var row = Array(0...b.count)
    for i in 1...a.count {
        var diagonal = row[0]
        row[0] = i
        for j in stride(from: 1, through: b.count, by: 1) {
            let above = row[j]
            row[j] = min(above + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1))
            diagonal = above
        }
    }
    return row[b.count]
}

/// Walks the composed node tree by hand so that every error names the line of the offending key or value.
private struct PolicyReader {
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
    ]
    static let tokenKeys = [
        "max_ttl", "status_list_ttl", "status_list_lifetime", "request_lifetime", "poll_interval", "admin_mfa_max_age",
        "admin_groups",
    ]
    static let mfaKeys = [
        "exempt_groups", "factors", "group_factors", "first_enrolment_with_password", "factor_change_max_age",
    ]
    static let sessionKeys = ["idle_seconds", "absolute_seconds", "pending_seconds"]
    static let throttleKeys = [
        "free_failures", "base_delay_seconds", "max_delay_seconds", "lockout_after_factor_failures",
        "max_concurrent_per_account", "max_concurrent_per_address",
    ]
    static let audienceKeys = ["description"]
    static let stageKeys = [
        "max_ttl", "mfa_max_age", "factors", "approval_factors", "approval", "max_window", "approvers",
        "allow_self_approval",
    ]
    static let roleKeys = ["groups", "stages", "audiences"]
    static let pipelineKeys = ["roles", "stages", "audiences"]

    func fail(_ line: Int, _ message: String) -> PolicyError { PolicyError(file: source, line: line, message: message) }

    // MARK: Generic readers

    /// The entries of a mapping (an empty value counts as an empty mapping). With `allowed`, any other key is an
    /// error naming the key's line.
    func entries(_ node: Node, path: String, line: Int, allowed: [String]?) throws -> [Entry] {
        if isNull(node) { return [] }
        guard case .mapping(let mapping) = node else {
            let what = path.isEmpty ? "the policy" : path
            throw fail(node.mark?.line ?? line, "\(what): expected a mapping, found \(describe(node))")
        }
        var result: [Entry] = []
        for (keyNode, value) in mapping {
            let keyLine = keyNode.mark?.line ?? line
            guard case .scalar(let scalar) = keyNode, !isNull(keyNode) else {
                let what = path.isEmpty ? "the policy" : path
                throw fail(keyLine, "\(what): a key must be a name, found \(describe(keyNode))")
            }
            let key = scalar.string
            if let allowed, !allowed.contains(key) {
                throw fail(keyLine, unknownKey(key, path: path, allowed: allowed))
            }
            result.append(Entry(key: key, keyNode: keyNode, value: value, path: path.isEmpty ? key : "\(path).\(key)"))
        }
        return result
    }

    func unknownKey(_ key: String, path: String, allowed: [String]) -> String {
        let what = path.isEmpty ? "unknown section '\(key)'" : "unknown key '\(key)' in \(path)"
        let best = allowed.map { ($0, editDistance($0, key)) }.min { $0.1 < $1.1 }
        if let best, best.1 <= max(2, key.count / 3) { return "\(what); did you mean '\(best.0)'?" }
        return "\(what) (expected one of: \(allowed.joined(separator: ", ")))"
    }

    /// A duration (see ``PolicyDuration``), positive.
    func duration(_ e: Entry) throws -> Int64 {
        let expected = "a duration (seconds, or like 300s, 5m, 8h, 1d)"
        guard case .scalar(let s) = e.value, !isNull(e.value) else {
            throw fail(e.valueLine, "\(e.path): expected \(expected), found \(describe(e.value))")
        }
        let text = s.string
        if text.hasPrefix("-"), PolicyDuration.parse(String(text.dropFirst())) != nil {
            throw fail(e.valueLine, "\(e.path): must be positive, found \(text)")
        }
        let seconds: Int64
        switch PolicyDuration.read(text) {
        case .seconds(let n): seconds = n
        case .tooLong:
            let limit = PolicyDuration.format(PolicyDuration.maximum)
            throw fail(e.valueLine, "\(e.path): '\(text)' is too long (at most \(limit))")
        case .malformed: throw fail(e.valueLine, "\(e.path): expected \(expected), found '\(text)'")
        }
        guard seconds > 0 else { throw fail(e.valueLine, "\(e.path): must be positive, found \(text)") }
        return seconds
    }

    /// An integer (plain, unquoted) of at least `minimum`.
    func integer(_ e: Entry, atLeast minimum: Int) throws -> Int {
        guard case .scalar(let s) = e.value, s.style == .plain || s.style == .any, let value = Int(s.string) else {
            throw fail(e.valueLine, "\(e.path): expected an integer, found \(describe(e.value))")
        }
        guard value >= minimum else {
            throw fail(e.valueLine, "\(e.path): must be at least \(minimum), found \(value)")
        }
        return value
    }

    /// `true` or `false` (plain, any case; YAML 1.1's yes/no/on/off are refused as ambiguous).
    func bool(_ e: Entry) throws -> Bool {
        if case .scalar(let s) = e.value, s.style == .plain || s.style == .any {
            switch s.string.lowercased() {
            case "true": return true
            case "false": return false
            default: break
            }
        }
        throw fail(e.valueLine, "\(e.path): expected true or false, found \(describe(e.value))")
    }

    /// Any non-null scalar, as written.
    func string(_ e: Entry) throws -> String {
        guard case .scalar(let s) = e.value, !isNull(e.value) else {
            throw fail(e.valueLine, "\(e.path): expected a string, found \(describe(e.value))")
        }
        return s.string
    }

    /// Names (roles, stages, audiences, pipelines, groups): non-empty, no whitespace, comma or control character.
    func checkName(_ name: String, _ what: String, path: String, line: Int) throws {
        let bad = name.unicodeScalars.contains {
            CharacterSet.whitespacesAndNewlines.contains($0) || CharacterSet.controlCharacters.contains($0) || $0 == ","
        }
        guard !name.isEmpty, !bad else {
            throw fail(line, "\(path): '\(name)' is not a valid \(what) name (no spaces, commas or control characters)")
        }
    }

    /// A list of names (an empty value is an empty list); each item keeps its line for later reference checks.
    func names(_ e: Entry, _ what: String) throws -> [Item] {
        if isNull(e.value) { return [] }
        guard case .sequence(let sequence) = e.value else {
            throw fail(e.valueLine, "\(e.path): expected a list of \(what) names, found \(describe(e.value))")
        }
        return try sequence.map { node in
            let line = node.mark?.line ?? e.valueLine
            guard case .scalar(let s) = node, !isNull(node) else {
                throw fail(line, "\(e.path): expected a \(what) name, found \(describe(node))")
            }
            try checkName(s.string, what, path: e.path, line: line)
            return Item(name: s.string, line: line)
        }
    }

    /// A non-empty list of distinct-or-not names, for keys that must name at least one.
    func requiredNames(_ e: Entry, _ what: String) throws -> [Item] {
        let items = try names(e, what)
        guard !items.isEmpty else { throw fail(e.valueLine, "\(e.path): must name at least one \(what)") }
        return items
    }

    /// A non-empty list of factor kinds (`totp`, `backup`, `webauthn`).
    func factors(_ e: Entry) throws -> Set<FactorKind> {
        let kinds = FactorKind.allCases.map(\.rawValue).joined(separator: ", ")
        let items = try names(e, "factor")
        guard !items.isEmpty else { throw fail(e.valueLine, "\(e.path): must name at least one factor (\(kinds))") }
        return try Set(
            items.map { item in
                guard let kind = FactorKind(rawValue: item.name) else {
                    throw fail(item.line, "\(e.path): unknown factor '\(item.name)' (expected one of: \(kinds))")
                }
                return kind
            })
    }

    /// `(name, body)` entries of a named-things section (`stages`, `roles`, …), names checked.
    func named(_ section: Entry, _ what: String) throws -> [Entry] {
        let list = try entries(section.value, path: section.key, line: section.line, allowed: nil)
        for e in list { try checkName(e.key, what, path: section.key, line: e.line) }
        return list
    }

    func joined(_ names: some Sequence<String>) -> String { names.sorted().joined(separator: ", ") }

    // MARK: Sections

    func policy(_ root: Node) throws -> AccessPolicy {
        guard case .mapping = root else {
            throw fail(
                root.mark?.line ?? 1,
                "the policy must be a mapping of sections (tokens, stages, roles, …), found \(describe(root))")
        }
        let top = try entries(root, path: "", line: 1, allowed: Self.sections)
        func section(_ name: String) -> Entry? { top.first { $0.key == name } }
        var policy = AccessPolicy()
        if let s = section("tokens") { policy.tokens = try tokens(s) }
        policy.auth = try auth(mfa: section("mfa"), sessions: section("sessions"), throttle: section("throttle"))
        if let s = section("audiences") { policy.audiences = try audiences(s) }
        if let s = section("stages") { policy.stages = try stages(s, tokens: policy.tokens, auth: policy.auth) }
        if let s = section("roles") { policy.roles = try roles(s, policy: policy) }
        if let s = section("pipelines") { policy.pipelines = try pipelines(s, policy: policy) }
        if let s = section("identities") { policy.identities = try identities(s) }
        return policy
    }

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
                throw fail(e.line, "identities: '\(e.key)' is listed twice (identities are compared case-insensitively)")
            }
            result[key] = user
        }
        return result
    }

    func tokens(_ section: Entry) throws -> TokenSettings {
        var t = TokenSettings()
        let list = try entries(section.value, path: "tokens", line: section.line, allowed: Self.tokenKeys)
        for e in list {
            switch e.key {
            case "max_ttl": t.maxTTL = try duration(e)
            case "status_list_ttl": t.statusListTTL = try duration(e)
            case "status_list_lifetime": t.statusListLifetime = try duration(e)
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
                    + "tokens.status_list_lifetime (\(PolicyDuration.format(t.statusListLifetime)))")
        }
        let cover = KeySchedule.standard.longestCoverableLifetime
        guard t.statusListLifetime <= cover else {
            throw fail(
                line("status_list_lifetime", or: "status_list_lifetime"),
                "tokens.status_list_lifetime (\(PolicyDuration.format(t.statusListLifetime))) exceeds what the "
                    + "key schedule covers (\(PolicyDuration.format(cover)): a key stays published for at most one "
                    + "rotation period after it stops signing); lower it")
        }
        guard t.pollInterval <= t.requestLifetime else {
            throw fail(
                line("poll_interval", or: "request_lifetime"),
                "tokens.poll_interval (\(PolicyDuration.format(t.pollInterval))) must not exceed "
                    + "tokens.request_lifetime (\(PolicyDuration.format(t.requestLifetime)))")
        }
        return t
    }

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
                        + "members of '\(g.key)' could never sign in")
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
                default: break
                }
            }
            guard p.throttle.maxDelay >= p.throttle.baseDelay else {
                let e = list.first { $0.key == "max_delay_seconds" } ?? list.first { $0.key == "base_delay_seconds" }
                throw fail(
                    e?.valueLine ?? throttle.line,
                    "throttle.max_delay_seconds (\(PolicyDuration.format(p.throttle.maxDelay))) must not be shorter "
                        + "than throttle.base_delay_seconds (\(PolicyDuration.format(p.throttle.baseDelay)))")
            }
        }
        return p
    }

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
                            + "(\(PolicyDuration.format(tokens.maxTTL))); raise tokens.max_ttl or lower this")
                }
            }
            // The key that signs a token stays published until the token expires: no stage may issue tokens that
            // live longer than the key schedule covers.
            let cover = KeySchedule.standard.longestCoverableLifetime
            if stage.maxTTL > cover {
                let what = entry("max_ttl").map { "\($0.path) (\(PolicyDuration.format(stage.maxTTL)))" }
                    ?? "\(s.path) takes tokens.max_ttl (\(PolicyDuration.format(stage.maxTTL))), which"
                throw fail(
                    entry("max_ttl")?.valueLine ?? s.line,
                    "\(what) exceeds what the key schedule covers (\(PolicyDuration.format(cover)): a key stays "
                        + "published for at most one rotation period after it stops signing); lower it")
            }
            if let e = entry("mfa_max_age") { stage.mfaMaxAge = try duration(e) }
            if let e = entry("factors") {
                stage.factors = try factors(e)
                guard !stage.factors.isDisjoint(with: auth.factors) else {
                    throw fail(
                        e.valueLine,
                        "\(e.path): none of these factors is enabled in mfa.factors "
                            + "(\(joined(auth.factors.map(\.rawValue)))); no one could reach stage '\(s.key)'")
                }
            }
            if let e = entry("approval_factors") {
                let kinds = try factors(e)
                guard !kinds.isDisjoint(with: auth.factors) else {
                    throw fail(
                        e.valueLine,
                        "\(e.path): none of these factors is enabled in mfa.factors "
                            + "(\(joined(auth.factors.map(\.rawValue)))); no one could approve stage '\(s.key)'")
                }
                stage.approvalFactors = kinds
            }
            if let e = entry("approvers") { stage.approvers = try integer(e, atLeast: 1) }
            if let e = entry("allow_self_approval") { stage.allowSelfApproval = try bool(e) }
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
                        "\(s.path): approval 'delegated' needs 'max_window' (the longest delegation, e.g. 8h)")
                }
                stage.approval = .delegated(maxWindow: try duration(window))
            case let other:
                throw fail(
                    modeEntry.valueLine,
                    "\(modeEntry.path): unknown approval mode '\(other)' "
                        + "(expected one of: per_run, delegated, session)")
            }
            if let window, stage.approval.name != "delegated" {
                throw fail(
                    window.line,
                    "\(window.path): only meaningful with approval: delegated (this stage is \(stage.approval.name))")
            }
            result[s.key] = stage
        }
        return result
    }

    /// Each item must name a defined thing.
    func checkDefined(_ items: [Item], in defined: some Collection<String>, _ what: String, path: String) throws {
        for item in items where !defined.contains(item.name) {
            let known = defined.isEmpty ? "none is defined" : "defined: \(joined(defined))"
            throw fail(item.line, "\(path): unknown \(what) '\(item.name)' (\(known))")
        }
    }

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
                name: r.key, groups: Set(groups.map(\.name)), stages: Set(stages.map(\.name)),
                audiences: Set(audiences.map(\.name)))
        }
        return result
    }

    func pipelines(_ section: Entry, policy: AccessPolicy) throws -> [String: PipelinePolicy] {
        var result: [String: PipelinePolicy] = [:]
        for p in try named(section, "pipeline") {
            var roles: [Item] = [], stages: [Item] = [], audiences: [Item] = []
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
                name: p.key, roles: Set(roles.map(\.name)), stages: Set(stages.map(\.name)),
                audiences: Set(audiences.map(\.name)))
        }
        return result
    }
}
