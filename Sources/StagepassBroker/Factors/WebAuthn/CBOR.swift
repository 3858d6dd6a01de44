/// A decoded CBOR data item (RFC 8949), restricted to what WebAuthn uses: integers, byte and text strings, arrays,
/// maps and the simple values `false`, `true` and `null`.
///
/// WebAuthn Level 2 §6.5.4 encodes the attestation object, and §6.5.1 the credential public key (a COSE_Key,
/// RFC 8152 §7), in CTAP2 canonical CBOR; nothing else (tags, floats, indefinite lengths) ever appears there, so
/// ``CBORDecoder`` refuses it rather than carrying code nobody exercises.
public enum CBOR: Sendable, Hashable {
    /// Major type 0 (RFC 8949 §3.1): an unsigned integer.
    case unsigned(UInt64)
    /// Major type 1 (RFC 8949 §3.1): the negative integer `-1 - n`, kept as `n` so that every value fits.
    case negative(UInt64)
    /// Major type 2: a byte string.
    case bytes([UInt8])
    /// Major type 3: a UTF-8 text string.
    case text(String)
    /// Major type 4: an array.
    case array([CBOR])
    /// Major type 5: a map, in the order the entries were encoded (keys are unique; see ``CBORDecoder``).
    case map([CBORMapEntry])
    /// Major type 7, simple values 20 and 21 (RFC 8949 §3.3).
    case bool(Bool)
    /// Major type 7, simple value 22.
    case null

    /// The value as a signed integer, when it is an integer that fits in `Int64`.
    public var int: Int64? {
        switch self {
        case .unsigned(let n): return n <= UInt64(Int64.max) ? Int64(n) : nil
        case .negative(let n): return n <= UInt64(Int64.max) ? -1 - Int64(n) : nil
        default: return nil
        }
    }
    public var bytesValue: [UInt8]? { if case .bytes(let b) = self { return b } else { return nil } }
    public var textValue: String? { if case .text(let s) = self { return s } else { return nil } }
    public var mapValue: [CBORMapEntry]? { if case .map(let m) = self { return m } else { return nil } }

    /// The value stored under `key` when this is a map.
    public subscript(key: CBOR) -> CBOR? {
        guard case .map(let entries) = self else { return nil }
        return entries.first { $0.key == key }?.value
    }

    /// The value under a text key (attestation objects, RFC 8949 §3.1 major type 3 keys).
    public subscript(text key: String) -> CBOR? { self[.text(key)] }

    /// The value under an integer key (COSE_Key labels, RFC 8152 §7.1).
    public subscript(label key: Int64) -> CBOR? {
        self[key >= 0 ? .unsigned(UInt64(key)) : .negative(UInt64(-(key + 1)))]
    }

    /// The integer `value` as a CBOR item.
    public static func integer(_ value: Int64) -> CBOR {
        value >= 0 ? .unsigned(UInt64(value)) : .negative(UInt64(-(value + 1)))
    }
}

/// One key/value pair of a CBOR map.
public struct CBORMapEntry: Sendable, Hashable {
    public var key: CBOR
    public var value: CBOR
    public init(key: CBOR, value: CBOR) {
        self.key = key
        self.value = value
    }
}

/// Why a CBOR input was refused. A struct over a private enum (stable `code`, `detail` for humans and not part of
/// `==`), like ``BrokerError``.
public struct CBORError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Code: String, Sendable, CaseIterable {
        case truncated
        case trailingBytes = "trailing_bytes"
        case indefiniteLength = "indefinite_length"
        case nonShortestEncoding = "non_shortest_encoding"
        case reservedAdditionalInfo = "reserved_additional_info"
        case unsupportedTag = "unsupported_tag"
        case unsupportedSimpleValue = "unsupported_simple_value"
        case unsupportedFloat = "unsupported_float"
        case tooDeep = "too_deep"
        case lengthPastEnd = "length_past_end"
        case duplicateMapKey = "duplicate_map_key"
        case invalidUTF8 = "invalid_utf8"
    }

    private let _code: Code
    /// Where and what, for logs and error messages.
    public let detail: String

    private init(_ code: Code, _ detail: String) {
        _code = code
        self.detail = detail
    }

    /// The stable reason code (`truncated`, `duplicate_map_key`, …).
    public var code: String { _code.rawValue }
    public var description: String { "\(code): \(detail)" }
    public static func == (l: CBORError, r: CBORError) -> Bool { l._code == r._code }
    public func hash(into h: inout Hasher) { h.combine(_code) }

    /// Every stable code, for documentation and tests.
    public static var allCodes: [String] { Code.allCases.map(\.rawValue) }

    /// The input ends inside a data item (RFC 8949 §3: not well-formed).
    public static func truncated(at offset: Int) -> CBORError { .init(.truncated, "input ends at byte \(offset)") }
    /// Bytes follow the single top-level item (RFC 8949 §5.3.1 leaves this to the application; WebAuthn has none).
    public static func trailingBytes(at offset: Int) -> CBORError {
        .init(.trailingBytes, "unexpected data after the item at byte \(offset)")
    }
    /// Additional information 31 (RFC 8949 §3.2), or a lone `break`: CTAP2 canonical CBOR uses definite lengths only.
    public static func indefiniteLength(at offset: Int) -> CBORError {
        .init(.indefiniteLength, "indefinite length at byte \(offset)")
    }
    /// An argument not in its shortest form (RFC 8949 §4.2.1, preferred serialization; CTAP2 canonical CBOR).
    public static func nonShortestEncoding(at offset: Int) -> CBORError {
        .init(.nonShortestEncoding, "argument not in its shortest form at byte \(offset)")
    }
    /// Additional information 28–30 (RFC 8949 §3: reserved, not well-formed).
    public static func reservedAdditionalInfo(at offset: Int) -> CBORError {
        .init(.reservedAdditionalInfo, "reserved additional information at byte \(offset)")
    }
    /// Major type 6 (RFC 8949 §3.4): tags never appear in WebAuthn structures.
    public static func unsupportedTag(at offset: Int) -> CBORError { .init(.unsupportedTag, "tag at byte \(offset)") }
    /// A simple value other than false, true, null (RFC 8949 §3.3).
    public static func unsupportedSimpleValue(at offset: Int) -> CBORError {
        .init(.unsupportedSimpleValue, "simple value other than false/true/null at byte \(offset)")
    }
    /// A floating-point number (RFC 8949 §3.3).
    public static func unsupportedFloat(at offset: Int) -> CBORError {
        .init(.unsupportedFloat, "floating-point value at byte \(offset)")
    }
    /// Arrays and maps nested deeper than ``CBORDecoder/maximumDepth``.
    public static func tooDeep(at offset: Int) -> CBORError {
        .init(.tooDeep, "nesting deeper than \(CBORDecoder.maximumDepth) at byte \(offset)")
    }
    /// A string, array or map length that runs past the end of the input.
    public static func lengthPastEnd(at offset: Int) -> CBORError {
        .init(.lengthPastEnd, "declared length runs past the end of the input at byte \(offset)")
    }
    /// The same key twice in one map (RFC 8949 §5.6: such a map is not valid).
    public static func duplicateMapKey(at offset: Int) -> CBORError {
        .init(.duplicateMapKey, "duplicate map key at byte \(offset)")
    }
    /// A text string that is not valid UTF-8 (RFC 8949 §5.3.1).
    public static func invalidUTF8(at offset: Int) -> CBORError {
        .init(.invalidUTF8, "text string is not valid UTF-8 at byte \(offset)")
    }

    public static let truncated = CBORError(.truncated, "")
    public static let trailingBytes = CBORError(.trailingBytes, "")
    public static let indefiniteLength = CBORError(.indefiniteLength, "")
    public static let nonShortestEncoding = CBORError(.nonShortestEncoding, "")
    public static let reservedAdditionalInfo = CBORError(.reservedAdditionalInfo, "")
    public static let unsupportedTag = CBORError(.unsupportedTag, "")
    public static let unsupportedSimpleValue = CBORError(.unsupportedSimpleValue, "")
    public static let unsupportedFloat = CBORError(.unsupportedFloat, "")
    public static let tooDeep = CBORError(.tooDeep, "")
    public static let lengthPastEnd = CBORError(.lengthPastEnd, "")
    public static let duplicateMapKey = CBORError(.duplicateMapKey, "")
    public static let invalidUTF8 = CBORError(.invalidUTF8, "")
}

/// A strict decoder for the CBOR subset of WebAuthn (RFC 8949).
///
/// Accepted: major types 0–5 with definite lengths, and simple values false/true/null (major type 7, values 20–22).
/// Refused, each with its own ``CBORError``: truncated input, trailing bytes, indefinite lengths (§3.2), arguments
/// not in their shortest form (§4.2.1), reserved additional information 28–30 (§3), tags (§3.4), floats and other
/// simple values (§3.3), nesting deeper than ``maximumDepth``, lengths past the end of the input, duplicate map keys
/// (§5.6) and text that is not UTF-8 (§5.3.1). Map key order is not checked (CTAP2 asks for sorted keys, but
/// nothing depends on the order here).
///
/// ```swift
/// let object = try CBORDecoder.decode(attestationObjectBytes)
/// let fmt = object[text: "fmt"]?.textValue
/// ```
public enum CBORDecoder {
    /// The deepest nesting accepted: the top-level item is at depth 1 and an array or map deeper than this is
    /// refused. A COSE key inside an attestation object's authData is decoded on its own (depth 1), attStmt maps sit
    /// at depth 2, so 16 leaves room without letting hostile input recurse far.
    public static let maximumDepth = 16

    /// Decodes exactly one data item that fills all of `bytes`.
    /// - Throws: ``CBORError``, including ``CBORError/trailingBytes`` when anything follows the item.
    public static func decode(_ bytes: [UInt8]) throws(CBORError) -> CBOR {
        let (value, end) = try decodePrefix(bytes, from: 0)
        guard end == bytes.count else { throw .trailingBytes(at: end) }
        return value
    }

    /// Decodes one data item starting at `start` and returns it with the offset just past it (for CBOR embedded in
    /// a byte layout, like the credential public key inside authenticator data, WebAuthn Level 2 §6.5.1).
    /// - Throws: ``CBORError``.
    public static func decodePrefix(_ bytes: [UInt8], from start: Int) throws(CBORError) -> (value: CBOR, end: Int) {
        var reader = Reader(bytes: bytes, position: start)
        let value = try reader.item(depth: 1)
        return (value, reader.position)
    }

    private struct Reader {
        let bytes: [UInt8]
        var position: Int

        var remaining: Int { bytes.count - position }

        mutating func byte() throws(CBORError) -> UInt8 {
            guard position < bytes.count else { throw .truncated(at: position) }
            defer { position += 1 }
            return bytes[position]
        }

        /// Reads a big-endian unsigned integer of `count` bytes (RFC 8949 §3: arguments are in network byte order).
        mutating func bigEndian(_ count: Int) throws(CBORError) -> UInt64 {
            guard remaining >= count else { throw .truncated(at: bytes.count) }
            var v: UInt64 = 0
            for i in 0..<count { v = (v << 8) | UInt64(bytes[position + i]) }
            position += count
            return v
        }

        /// The argument of a head whose initial byte had additional information `info` (RFC 8949 §3), refusing
        /// indefinite lengths, reserved values and arguments longer than needed (§4.2.1).
        mutating func argument(_ info: UInt8, at offset: Int) throws(CBORError) -> UInt64 {
            switch info {
            case 0...23: return UInt64(info)
            case 24:
                let v = try bigEndian(1)
                guard v >= 24 else { throw .nonShortestEncoding(at: offset) }
                return v
            case 25:
                let v = try bigEndian(2)
                guard v > 0xFF else { throw .nonShortestEncoding(at: offset) }
                return v
            case 26:
                let v = try bigEndian(4)
                guard v > 0xFFFF else { throw .nonShortestEncoding(at: offset) }
                return v
            case 27:
                let v = try bigEndian(8)
                guard v > 0xFFFF_FFFF else { throw .nonShortestEncoding(at: offset) }
                return v
            case 31: throw .indefiniteLength(at: offset)
            default: throw .reservedAdditionalInfo(at: offset)
            }
        }

        /// A length or count that must fit in what is left of the input, with each element taking at least
        /// `minimumSize` bytes (so a hostile count never makes us reserve memory).
        func fitting(_ n: UInt64, minimumSize: Int, at offset: Int) throws(CBORError) -> Int {
            guard n <= UInt64(remaining / max(minimumSize, 1)) else { throw .lengthPastEnd(at: offset) }
            return Int(n)
        }

        mutating func item(depth: Int) throws(CBORError) -> CBOR {
            let offset = position
            let initial = try byte()
            let major = initial >> 5
            let info = initial & 0x1F
            switch major {
            case 0:
                return .unsigned(try argument(info, at: offset))
            case 1:
                return .negative(try argument(info, at: offset))
            case 2, 3:
                // The argument is read first: `fitting` must see what remains *after* the head (written inline,
                // `self` was captured before `argument` consumed the head's bytes, and a length 1–8 bytes too long
                // passed and trapped on the slice).
                let length = try argument(info, at: offset)
                let n = try fitting(length, minimumSize: 1, at: offset)
                let slice = Array(bytes[position..<(position + n)])
                position += n
                if major == 2 { return .bytes(slice) }
                guard let s = String(validating: slice, as: UTF8.self) else { throw .invalidUTF8(at: offset) }
                return .text(s)
            case 4:
                guard depth <= CBORDecoder.maximumDepth else { throw .tooDeep(at: offset) }
                let count = try argument(info, at: offset)
                let n = try fitting(count, minimumSize: 1, at: offset)
                var items: [CBOR] = []
                items.reserveCapacity(n)
                for _ in 0..<n { items.append(try item(depth: depth + 1)) }
                return .array(items)
            case 5:
                guard depth <= CBORDecoder.maximumDepth else { throw .tooDeep(at: offset) }
                let count = try argument(info, at: offset)
                let n = try fitting(count, minimumSize: 2, at: offset)
                var entries: [CBORMapEntry] = []
                entries.reserveCapacity(n)
                var seen = Set<CBOR>()
                for _ in 0..<n {
                    let keyOffset = position
                    let key = try item(depth: depth + 1)
                    guard seen.insert(key).inserted else { throw .duplicateMapKey(at: keyOffset) }
                    entries.append(CBORMapEntry(key: key, value: try item(depth: depth + 1)))
                }
                return .map(entries)
            case 6:
                throw .unsupportedTag(at: offset)
            default:  // 7: simple values and floats (RFC 8949 §3.3)
                switch info {
                case 20: return .bool(false)
                case 21: return .bool(true)
                case 22: return .null
                case 25, 26, 27: throw .unsupportedFloat(at: offset)
                case 31: throw .indefiniteLength(at: offset)  // a "break" outside an indefinite-length item (§3.2.1)
                case 28, 29, 30: throw .reservedAdditionalInfo(at: offset)
                default: throw .unsupportedSimpleValue(at: offset)
                }
            }
        }
    }
}
