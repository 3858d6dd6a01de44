internal import CJansson

/// A JSON value as a Swift tree: used for JWKs, claims handed to callers and documents the broker writes.
/// Parsing goes through jansson (``StrictJSON``); serialization is deterministic (object keys sorted).
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Parses strict JSON (see ``StrictJSON/parse(_:)``) into a tree.
    /// - Throws: ``JOSEError/invalidJSON``.
    public static func parse(_ bytes: [UInt8], maxDepth: Int = 64) throws(JOSEError) -> JSONValue {
        let doc = try withBytes(bytes) { buf throws(JOSEError) in
            try StrictJSON(buf, maxDepth: maxDepth, requireObject: false)
        }
        return doc.root.value
    }

    /// Parses a string as strict JSON.
    public static func parse(_ string: String) throws(JOSEError) -> JSONValue { try parse(Array(string.utf8)) }

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }
    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var intValue: Int64? { if case .int(let i) = self { return i } else { return nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var objectValue: [String: JSONValue]? { if case .object(let o) = self { return o } else { return nil } }

    /// Compact, deterministic serialization (sorted keys, minimal escaping per RFC 8259 §7).
    public func serialized() -> String {
        var out = ""
        write(into: &out)
        return out
    }

    private func write(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += d.isFinite ? "\(d)" : "null"
        case .string(let s): JSONValue.writeString(s, into: &out)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                v.write(into: &out)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, k) in o.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                JSONValue.writeString(k, into: &out)
                out += ":"
                o[k]?.write(into: &out)
            }
            out += "}"
        }
    }

    /// Writes a JSON string literal with the escapes RFC 8259 §7 requires.
    public static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

/// A strictly parsed JSON document held in jansson, read in place without building a Swift tree.
///
/// Strict means (RFC 7515 §4 / RFC 7519 §4, RFC 8725 §3.11): valid UTF-8 (jansson checks it), no duplicate
/// member names (`JSON_REJECT_DUPLICATES`), no NUL in strings, numbers that are finite and fit (jansson refuses
/// overflow), nesting no deeper than `maxDepth`, and no trailing data.
/// Not `Sendable`: one document belongs to one call.
public final class StrictJSON {
    fileprivate let handle: UnsafeMutablePointer<json_t>

    /// Parses `bytes`.
    /// - Parameters:
    ///   - maxDepth: the deepest nesting of arrays/objects accepted (the root object is depth 1).
    ///   - requireObject: refuse anything but an object at the top level.
    /// - Throws: ``JOSEError/invalidJSON`` naming the first problem.
    public init(_ bytes: UnsafeRawBufferPointer, maxDepth: Int, requireObject: Bool = true) throws(JOSEError) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { throw .invalidJSON("empty") }
        if requireObject, bytes[0] != UInt8(ascii: "{") { throw .invalidJSON("not a JSON object") }
        try StrictJSON.checkDepth(bytes, maxDepth: maxDepth)
        var error = json_error_t()
        let flags = Int(JSON_REJECT_DUPLICATES | (requireObject ? 0 : JSON_DECODE_ANY))
        guard let root = json_loadb(base.assumingMemoryBound(to: CChar.self), bytes.count, flags, &error) else {
            let text = withUnsafeBytes(of: &error.text) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            throw .invalidJSON(text)
        }
        self.handle = root
        if requireObject, CJansson_typeof(root) != Int32(JSON_OBJECT.rawValue) {
            throw .invalidJSON("not a JSON object")
        }
    }

    deinit { CJansson_decref(handle) }

    /// The top-level value.
    public var root: JSONRef { JSONRef(handle) }

    /// Refuses documents nested deeper than `maxDepth` before jansson sees them (its own bound is 2048).
    private static func checkDepth(_ bytes: UnsafeRawBufferPointer, maxDepth: Int) throws(JOSEError) {
        var depth = 0
        var inString = false
        var escaped = false
        for b in bytes {
            if inString {
                if escaped {
                    escaped = false
                } else if b == UInt8(ascii: "\\") {
                    escaped = true
                } else if b == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch b {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                if depth > maxDepth { throw .invalidJSON("nesting deeper than \(maxDepth)") }
            case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
            default: break
            }
        }
    }
}

/// A borrowed view of one jansson value inside a ``StrictJSON`` document; valid while the document lives.
public struct JSONRef {
    fileprivate let ptr: UnsafeMutablePointer<json_t>
    fileprivate init(_ p: UnsafeMutablePointer<json_t>) { ptr = p }

    public var isObject: Bool { CJansson_typeof(ptr) == Int32(JSON_OBJECT.rawValue) }
    public var isString: Bool { CJansson_typeof(ptr) == Int32(JSON_STRING.rawValue) }
    public var isArray: Bool { CJansson_typeof(ptr) == Int32(JSON_ARRAY.rawValue) }
    public var isInteger: Bool { CJansson_typeof(ptr) == Int32(JSON_INTEGER.rawValue) }

    /// The member `key` of an object, or nil.
    public subscript(key: String) -> JSONRef? {
        guard isObject, let p = json_object_get(ptr, key) else { return nil }
        return JSONRef(p)
    }

    /// The member `key`, with the key given as a static C string (no Swift String bridging on the hot path).
    public func member(_ key: StaticString) -> JSONRef? {
        guard
            let p = key.withUTF8Buffer({ b in
                b.baseAddress.flatMap { json_object_get(ptr, UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
            })
        else { return nil }
        return JSONRef(p)
    }

    public var string: String? {
        guard isString, let c = json_string_value(ptr) else { return nil }
        let n = json_string_length(ptr)
        return String(decoding: UnsafeRawBufferPointer(start: c, count: n), as: UTF8.self)
    }

    /// Compares a string value with `other` without allocating.
    public func stringEquals(_ other: String) -> Bool {
        guard isString, let c = json_string_value(ptr) else { return false }
        let n = json_string_length(ptr)
        var o = other
        return o.withUTF8 { ob in
            ob.count == n && (n == 0 || memcmpBytes(UnsafeRawPointer(c), UnsafeRawPointer(ob.baseAddress), n))
        }
    }

    public var integer: Int64? { isInteger ? Int64(json_integer_value(ptr)) : nil }

    public var count: Int { isArray ? json_array_size(ptr) : (isObject ? json_object_size(ptr) : 0) }
    public subscript(index: Int) -> JSONRef? {
        guard isArray, let p = json_array_get(ptr, index) else { return nil }
        return JSONRef(p)
    }

    /// The names of an object's members.
    public var keys: [String] {
        var out = [String]()
        var it = json_object_iter(ptr)
        while let i = it {
            if let k = CJansson_iter_key(i) {
                out.append(
                    String(decoding: UnsafeRawBufferPointer(start: k, count: CJansson_iter_key_len(i)), as: UTF8.self)
                )
            }
            it = json_object_iter_next(ptr, i)
        }
        return out
    }

    /// Converts to a Swift tree.
    public var value: JSONValue {
        switch CJansson_typeof(ptr) {
        case Int32(JSON_OBJECT.rawValue):
            var o = [String: JSONValue]()
            var it = json_object_iter(ptr)
            while let i = it {
                if let k = CJansson_iter_key(i), let v = json_object_iter_value(i) {
                    let key = String(
                        decoding: UnsafeRawBufferPointer(start: k, count: CJansson_iter_key_len(i)),
                        as: UTF8.self
                    )
                    o[key] = JSONRef(v).value
                }
                it = json_object_iter_next(ptr, i)
            }
            return .object(o)
        case Int32(JSON_ARRAY.rawValue):
            return .array((0..<json_array_size(ptr)).compactMap { json_array_get(ptr, $0).map { JSONRef($0).value } })
        case Int32(JSON_STRING.rawValue): return .string(string ?? "")
        case Int32(JSON_INTEGER.rawValue): return .int(Int64(json_integer_value(ptr)))
        case Int32(JSON_REAL.rawValue): return .double(json_real_value(ptr))
        case Int32(JSON_TRUE.rawValue): return .bool(true)
        case Int32(JSON_FALSE.rawValue): return .bool(false)
        default: return .null
        }
    }
}

@inline(__always)
func memcmpBytes(_ a: UnsafeRawPointer?, _ b: UnsafeRawPointer?, _ n: Int) -> Bool {
    guard let a, let b else { return n == 0 }
    for i in 0..<n where a.load(fromByteOffset: i, as: UInt8.self) != b.load(fromByteOffset: i, as: UInt8.self) {
        return false
    }
    return true
}

/// `Array.withUnsafeBytes` with a typed-throwing body (the stdlib's is `rethrows`, which erases to `any Error`).
/// Inlinable so callers in other modules get it specialized (a generic call across modules instantiates
/// `Result<R, JOSEError>` metadata at run time).
@inlinable
public func withBytes<R>(
    _ bytes: [UInt8],
    _ body: (UnsafeRawBufferPointer) throws(JOSEError) -> R
) throws(JOSEError) -> R {
    let result = bytes.withUnsafeBytes { b in Result<R, JOSEError> { () throws(JOSEError) in try body(b) } }
    return try result.get()
}
