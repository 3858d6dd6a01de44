import Foundation
import Yams

// The generic readers: mappings, scalars and lists of names, each error naming the line.

extension PolicyReader {
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
            }
        )
    }

    /// `(name, body)` entries of a named-things section (`stages`, `roles`, …), names checked.
    func named(_ section: Entry, _ what: String) throws -> [Entry] {
        let list = try entries(section.value, path: section.key, line: section.line, allowed: nil)
        for e in list { try checkName(e.key, what, path: section.key, line: e.line) }
        return list
    }

    /// Each item must name a defined thing.
    func checkDefined(_ items: [Item], in defined: some Collection<String>, _ what: String, path: String) throws {
        for item in items where !defined.contains(item.name) {
            let known = defined.isEmpty ? "none is defined" : "defined: \(joined(defined))"
            throw fail(item.line, "\(path): unknown \(what) '\(item.name)' (\(known))")
        }
    }

    func joined(_ names: some Sequence<String>) -> String { names.sorted().joined(separator: ", ") }
}

/// Levenshtein distance, for "did you mean" on misspelt keys.
private func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a)
    let b = Array(b)
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
