import Foundation
import StagepassJOSE
import Testing
import Yams

/// Checks real responses against Specs/openapi.yaml: the path + method + status must be documented, the content
/// type must match, and every required field of the (resolved) schema must be present with the documented type.
// Immutable after init: the parsed YAML tree is only read.
struct OpenAPIDocument: @unchecked Sendable {
    let root: [String: Any]

    static let shared: OpenAPIDocument = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Specs/openapi.yaml")
        let text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
        let root = ((try? Yams.load(yaml: text)) as? [String: Any]) ?? [:]
        return OpenAPIDocument(root: root)
    }()

    var paths: [String: Any] { root["paths"] as? [String: Any] ?? [:] }

    func resolve(_ node: Any?) -> [String: Any]? {
        guard let dict = node as? [String: Any] else { return nil }
        if let ref = dict["$ref"] as? String {
            var cur: Any? = root
            for part in ref.dropFirst(2).split(separator: "/") { cur = (cur as? [String: Any])?[String(part)] }
            return resolve(cur)
        }
        return dict
    }

    /// Every (path, method, status) the document declares.
    var operations: [(path: String, method: String, status: String)] {
        paths.flatMap { path, item -> [(String, String, String)] in
            ((item as? [String: Any]) ?? [:]).flatMap { method, op -> [(String, String, String)] in
                let responses = ((op as? [String: Any])?["responses"] as? [String: Any]) ?? [:]
                return responses.keys.map { (path, method, $0) }
            }
        }
    }

    /// Returns a list of mismatches (empty when the response conforms).
    func check(path: String, method: String, status: Int, contentType: String?, body: String) -> [String] {
        guard let op = (paths[path] as? [String: Any])?[method.lowercased()] as? [String: Any] else {
            return ["\(method) \(path) is not documented"]
        }
        guard let resp = resolve((op["responses"] as? [String: Any])?[String(status)]) else {
            return ["\(method) \(path) does not document status \(status)"]
        }
        guard let content = resp["content"] as? [String: Any] else {
            return body.isEmpty ? [] : ["\(method) \(path) \(status) documents no body but got one"]
        }
        let mediaType = (contentType ?? "").split(separator: ";").first.map(String.init) ?? ""
        guard let media = content[mediaType] as? [String: Any] else {
            return [
                "\(method) \(path) \(status): content type \(mediaType) is not documented (\(content.keys.sorted()))"
            ]
        }
        guard let schema = resolve(media["schema"]) else { return [] }
        guard let value = try? JSONValue.parse(body) else { return ["\(method) \(path) \(status): body is not JSON"] }
        return validate(value, schema, at: "\(method) \(path) \(status)")
    }

    func validate(_ value: JSONValue, _ schema: [String: Any], at where_: String) -> [String] {
        var problems: [String] = []
        var required = Set(schema["required"] as? [String] ?? [])
        var properties = schema["properties"] as? [String: Any] ?? [:]
        for sub in schema["allOf"] as? [Any] ?? [] {
            if let s = resolve(sub) {
                required.formUnion(s["required"] as? [String] ?? [])
                properties.merge(s["properties"] as? [String: Any] ?? [:]) { a, _ in a }
            }
        }
        if let type = schema["type"] as? String, !matches(value, type) {
            return ["\(where_): expected \(type)"]
        }
        if let obj = value.objectValue {
            for r in required.sorted() where obj[r] == nil { problems.append("\(where_): missing required '\(r)'") }
            for (k, v) in obj {
                if let ps = resolve(properties[k]) { problems += validate(v, ps, at: "\(where_).\(k)") }
            }
        }
        if let arr = value.arrayValue, let items = resolve(schema["items"]) {
            for (i, v) in arr.enumerated() { problems += validate(v, items, at: "\(where_)[\(i)]") }
        }
        if let en = schema["enum"] as? [String], let s = value.stringValue, !en.contains(s) {
            problems.append("\(where_): '\(s)' not in \(en)")
        }
        return problems
    }

    func matches(_ v: JSONValue, _ type: String) -> Bool {
        switch type {
        case "string": return v.stringValue != nil
        case "integer": return v.intValue != nil
        case "boolean": return v.boolValue != nil
        case "array": return v.arrayValue != nil
        case "object": return v.objectValue != nil
        default: return true
        }
    }
}
