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
                file: source,
                line: 1,
                message: "the policy is empty (expected sections such as stages, roles)"
            )
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
}

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
                file: source,
                line: context.mark.line,
                message: "duplicate key \(keys) (first written on this line; a key may appear only once in a mapping)"
            )
        default:
            self.init(file: source, line: 1, message: "malformed YAML: \(error)")
        }
    }
}
