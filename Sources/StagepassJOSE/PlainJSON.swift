/// Read access to one value of a strictly parsed JSON document, shared by the jansson document (``JSONRef``) and
/// the plain-subset scanner (``PlainJSONRef``); ``StrictJSONRef`` wraps either, so the verifier reads claims with
/// one code path whichever parser read them.
package protocol JSONReading {
    /// The member `key` of an object, or nil (also nil when this is not an object).
    func member(_ key: StaticString) -> Self?
    /// The value of a string, or nil.
    var string: String? { get }
    /// Whether this is a string equal to `other`, byte for byte.
    func stringEquals(_ other: String) -> Bool
    /// The value of an integer (not a real), or nil.
    var integer: Int64? { get }
    var isArray: Bool { get }
    /// Elements of an array or members of an object; 0 otherwise.
    var count: Int { get }
    /// Element `index` of an array, or nil.
    subscript(index: Int) -> Self? { get }
}

extension JSONRef: JSONReading {}

/// A zero-allocation reader for the *plain* subset of JSON that access tokens are made of, in front of jansson.
///
/// The subset: an object at the top level; strings of printable ASCII (0x20–0x7E) without backslash escapes;
/// integers of at most 18 digits without fraction or exponent; `true`, `false`, `null`; space, tab, CR, LF between
/// tokens; at most 64 members per object, no two with the same name; nesting no deeper than `maxDepth` (and 64);
/// nothing after the top-level value. Every document inside the subset is one jansson accepts with `JSON_REJECT_DUPLICATES` and
/// reads to the same values (no escapes means a string's bytes are its value; no non-ASCII means valid UTF-8;
/// 18 digits always fit in `Int64`). For everything else, including every malformed document, ``scan`` declines and
/// the caller parses with ``StrictJSON``, which accepts it or reports the error: the scanner never rejects, so
/// every verdict and error message on unusual input is still jansson's.
///
/// Why: jansson costs about 18 ns per byte (a 369-byte claims object takes ~7 µs, more than the rest of a
/// verification) and ~70 allocations per parse, most of it its per-character lexer; the scanner reads the same
/// claims in well under a microsecond.
@usableFromInline
package enum PlainJSON {
    /// Tape entries on the stack (1 KiB, the size `withUnsafeTemporaryAllocation` always keeps on the stack); a
    /// document needing more goes to a heap tape sized for it.
    @usableFromInline static let stackTapeCapacity = 128

    /// Scans `bytes` and runs `body` with the root object, or with nil when the document is outside the subset
    /// (then parse it with ``StrictJSON``). Inlinable so that callers in other modules get it specialized (no
    /// generic metadata lookups per call).
    /// - warning: Do not escape the ``PlainJSONRef`` from the closure: it points into `bytes` and a scoped tape.
    @inlinable
    package static func withDocument<R, E: Error>(
        _ bytes: UnsafeRawBufferPointer,
        maxDepth: Int,
        _ body: (PlainJSONRef?) throws(E) -> R
    ) throws(E) -> R {
        guard let base = bytes.baseAddress, bytes.count > 0, bytes.count < PlainJSONRef.maxOffset else {
            return try body(nil)
        }
        let p = base.assumingMemoryBound(to: UInt8.self)
        let onStack: Result<R, E>? = withUnsafeTemporaryAllocation(of: UInt64.self, capacity: stackTapeCapacity) {
            tape in
            guard let t = tape.baseAddress else { return nil }
            switch scan(p, bytes.count, tape, maxDepth: maxDepth) {
            case .ok: return Result { () throws(E) in try body(PlainJSONRef(p, UnsafePointer(t), 0)) }
            case .decline: return Result { () throws(E) in try body(nil) }
            case .tapeFull: return nil
            }
        }
        if let onStack { return try onStack.get() }
        // A document holds at most one tape entry per byte; rare enough to allocate.
        let tape = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: bytes.count + 1)
        defer { tape.deallocate() }
        guard let t = tape.baseAddress, case .ok = scan(p, bytes.count, tape, maxDepth: maxDepth) else {
            return try body(nil)
        }
        return try body(PlainJSONRef(p, UnsafePointer(t), 0))
    }

    /// Scans a whole document onto `tape` (non-generic: the one compiled copy of the scanner).
    @usableFromInline
    static func scan(
        _ p: UnsafePointer<UInt8>,
        _ n: Int,
        _ tape: UnsafeMutableBufferPointer<UInt64>,
        maxDepth: Int
    ) -> Outcome {
        var s = Scanner(p, n, tape, maxDepth: maxDepth)
        return s.document()
    }

    // Tape entry: kind (4 bits) | start (20) | length (20) | next (20). `start`/`length` locate a string's content or
    // an integer's digits; `next` is, for an object or array, the index of the entry after its last descendant.
    enum Kind: UInt64 {
        case object = 1
        case array
        case string
        case integer
        case literal
    }

    @usableFromInline enum Outcome { case ok, decline, tapeFull }

    /// Deepest nesting the scanner reads itself whatever `maxDepth` says (it recurses once per level; deeper
    /// documents go to jansson).
    static let maxScanDepth = 64

    /// Recursive descent over the subset; depth is bounded by `maxDepth` (16 in the verifier) and ``maxScanDepth``.
    struct Scanner {
        let p: UnsafePointer<UInt8>
        let n: Int
        let tape: UnsafeMutableBufferPointer<UInt64>
        let maxDepth: Int
        var i = 0
        var used = 0
        var full = false

        init(_ p: UnsafePointer<UInt8>, _ n: Int, _ tape: UnsafeMutableBufferPointer<UInt64>, maxDepth: Int) {
            self.p = p
            self.n = n
            self.tape = tape
            self.maxDepth = min(maxDepth, PlainJSON.maxScanDepth)
        }

        mutating func document() -> Outcome {
            guard p[0] == UInt8(ascii: "{"), object(depth: 1) else { return full ? .tapeFull : .decline }
            skipSpace()
            return i == n ? .ok : .decline
        }

        @inline(__always) mutating func skipSpace() {
            while i < n {
                let c = p[i]
                guard c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 else { return }
                i += 1
            }
        }

        @inline(__always) mutating func push(_ kind: Kind, _ start: Int, _ length: Int) -> Int? {
            guard used < tape.count else {
                full = true
                return nil
            }
            tape[used] = kind.rawValue | UInt64(start) << 4 | UInt64(length) << 24
            used += 1
            return used - 1
        }

        mutating func value(depth: Int) -> Bool {
            guard i < n else { return false }
            switch p[i] {
            case UInt8(ascii: "{"): return object(depth: depth + 1)
            case UInt8(ascii: "["): return array(depth: depth + 1)
            case UInt8(ascii: "\""): return string()
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return integer()
            case UInt8(ascii: "t"): return literal(0x74_72_75_65, 4)  // "true"
            case UInt8(ascii: "f"): return literal(0x66_61_6C_73_65, 5)  // "false"
            case UInt8(ascii: "n"): return literal(0x6E_75_6C_6C, 4)  // "null"
            default: return false
            }
        }

        mutating func string() -> Bool {
            i += 1
            let start = i
            while i < n {
                let c = p[i]
                if c == UInt8(ascii: "\"") {
                    guard push(.string, start, i - start) != nil else { return false }
                    i += 1
                    return true
                }
                // Escapes, control characters and non-ASCII bytes are jansson's business.
                guard c >= 0x20, c <= 0x7E, c != UInt8(ascii: "\\") else { return false }
                i += 1
            }
            return false
        }

        mutating func integer() -> Bool {
            let start = i
            if p[i] == UInt8(ascii: "-") { i += 1 }
            let digits = i
            guard i < n, p[i] &- UInt8(ascii: "0") < 10 else { return false }
            if p[i] == UInt8(ascii: "0") {
                i += 1
            } else {
                while i < n, p[i] &- UInt8(ascii: "0") < 10 { i += 1 }
            }
            // A leading zero followed by a digit, a fraction or an exponent: leave it to jansson. At most 18 digits
            // so the value always fits in Int64 (jansson reads up to Int64's range, this reads a subset of it).
            if i < n, p[i] &- UInt8(ascii: "0") < 10 || p[i] == UInt8(ascii: ".") || p[i] | 0x20 == UInt8(ascii: "e") {
                return false
            }
            guard i - digits <= 18 else { return false }
            return push(.integer, start, i - start) != nil
        }

        /// Matches a literal given big-endian in `word`; the next byte is checked by the caller's grammar.
        mutating func literal(_ word: UInt64, _ length: Int) -> Bool {
            guard n - i >= length else { return false }
            for k in 0..<length where p[i + k] != UInt8(truncatingIfNeeded: word >> UInt64(8 * (length - 1 - k))) {
                return false
            }
            // jansson reads a whole run of letters as one word ("truex" is one invalid token): refuse a letter here.
            if i + length < n, p[i + length] | 0x20 &- UInt8(ascii: "a") < 26 { return false }
            i += length
            return push(.literal, i - length, length) != nil
        }

        mutating func array(depth: Int) -> Bool {
            guard depth <= maxDepth, let me = push(.array, i, 0) else { return false }
            i += 1
            skipSpace()
            if i < n, p[i] == UInt8(ascii: "]") {
                i += 1
            } else {
                while true {
                    guard value(depth: depth) else { return false }
                    skipSpace()
                    guard i < n else { return false }
                    if p[i] == UInt8(ascii: ",") {
                        i += 1
                        skipSpace()
                        continue
                    }
                    guard p[i] == UInt8(ascii: "]") else { return false }
                    i += 1
                    break
                }
            }
            tape[me] |= UInt64(used) << 44
            return true
        }

        mutating func object(depth: Int) -> Bool {
            guard depth <= maxDepth, let me = push(.object, i, 0) else { return false }
            i += 1
            skipSpace()
            var members = 0
            if i < n, p[i] == UInt8(ascii: "}") {
                i += 1
            } else {
                while true {
                    guard i < n, p[i] == UInt8(ascii: "\""), string() else { return false }
                    skipSpace()
                    guard i < n, p[i] == UInt8(ascii: ":") else { return false }
                    i += 1
                    skipSpace()
                    guard value(depth: depth) else { return false }
                    members += 1
                    skipSpace()
                    guard i < n else { return false }
                    if p[i] == UInt8(ascii: ",") {
                        i += 1
                        skipSpace()
                        continue
                    }
                    guard p[i] == UInt8(ascii: "}") else { return false }
                    i += 1
                    break
                }
            }
            tape[me] |= UInt64(used) << 44
            // RFC 7515 §4 / RFC 7519 §4: duplicate names are refused. Without escapes a name's bytes are the name,
            // so byte comparison is exact; the pairwise check is bounded by the member limit.
            guard members <= 64 else { return false }
            guard let t = tape.baseAddress else { return false }
            let root = PlainJSONRef(p, UnsafePointer(t), me)
            var a = me + 1
            while a < used {
                var b = root.after(a + 1)
                while b < used {
                    if root.sameString(a, b) { return false }
                    b = root.after(b + 1)
                }
                a = root.after(a + 1)
            }
            return true
        }
    }
}

/// A borrowed view of one value on a ``PlainJSON`` tape; valid only inside ``PlainJSON/withDocument(_:maxDepth:_:)``.
@usableFromInline
package struct PlainJSONRef: JSONReading {
    @usableFromInline static let maxOffset = 1 << 20
    private let p: UnsafePointer<UInt8>
    private let tape: UnsafePointer<UInt64>
    private let index: Int

    @usableFromInline init(_ p: UnsafePointer<UInt8>, _ tape: UnsafePointer<UInt64>, _ index: Int) {
        self.p = p
        self.tape = tape
        self.index = index
    }

    @inline(__always) private func entry(_ k: Int) -> UInt64 { tape[k] }
    @inline(__always) private func kind(_ k: Int) -> UInt64 { entry(k) & 0xF }
    @inline(__always) private func start(_ k: Int) -> Int { Int(truncatingIfNeeded: (entry(k) >> 4) & 0xFFFFF) }
    @inline(__always) private func length(_ k: Int) -> Int { Int(truncatingIfNeeded: (entry(k) >> 24) & 0xFFFFF) }

    /// The index of the entry after `k` and its descendants.
    @inline(__always) fileprivate func after(_ k: Int) -> Int {
        let e = entry(k)
        let kd = e & 0xF
        if kd == PlainJSON.Kind.object.rawValue || kd == PlainJSON.Kind.array.rawValue {
            return Int(truncatingIfNeeded: e >> 44)
        }
        return k + 1
    }

    fileprivate func sameString(_ a: Int, _ b: Int) -> Bool {
        let n = length(a)
        return n == length(b) && bytesEqual(p + start(a), p + start(b), n)
    }

    private var isObject: Bool { kind(index) == PlainJSON.Kind.object.rawValue }
    package var isArray: Bool { kind(index) == PlainJSON.Kind.array.rawValue }

    package func member(_ key: StaticString) -> PlainJSONRef? {
        guard isObject else { return nil }
        return key.withUTF8Buffer { kb -> PlainJSONRef? in
            guard let kp = kb.baseAddress else { return nil }
            let kn = kb.count
            let end = after(index)
            var k = index + 1
            while k < end {
                if length(k) == kn && bytesEqual(p + start(k), kp, kn) { return PlainJSONRef(p, tape, k + 1) }
                k = after(k + 1)
            }
            return nil
        }
    }

    package var string: String? {
        guard kind(index) == PlainJSON.Kind.string.rawValue else { return nil }
        return String(decoding: UnsafeBufferPointer(start: p + start(index), count: length(index)), as: UTF8.self)
    }

    package func stringEquals(_ other: String) -> Bool {
        guard kind(index) == PlainJSON.Kind.string.rawValue else { return false }
        let n = length(index)
        let s = p + start(index)
        var o = other
        return o.withUTF8 { ob in ob.count == n && (n == 0 || ob.baseAddress.map { bytesEqual(s, $0, n) } == true) }
    }

    package var integer: Int64? {
        guard kind(index) == PlainJSON.Kind.integer.rawValue else { return nil }
        var k = start(index)
        let end = k + length(index)
        let negative = p[k] == UInt8(ascii: "-")
        if negative { k += 1 }
        var v: Int64 = 0
        // At most 18 digits (checked by the scanner): no overflow.
        while k < end {
            v = v &* 10 &+ Int64(p[k] &- UInt8(ascii: "0"))
            k += 1
        }
        return negative ? 0 &- v : v
    }

    package var count: Int {
        guard isObject || isArray else { return 0 }
        let end = after(index)
        var k = index + 1
        var c = 0
        while k < end {
            k = isObject ? after(k + 1) : after(k)
            c += 1
        }
        return c
    }

    package subscript(position: Int) -> PlainJSONRef? {
        guard isArray, position >= 0 else { return nil }
        let end = after(index)
        var k = index + 1
        var c = 0
        while k < end {
            if c == position { return PlainJSONRef(p, tape, k) }
            k = after(k)
            c += 1
        }
        return nil
    }
}

extension PlainJSONRef {
    /// Converts to a Swift tree (what ``JSONRef/value`` gives for the same document; the differential tests
    /// compare the two).
    package var value: JSONValue {
        switch kind(index) {
        case PlainJSON.Kind.object.rawValue:
            var o = [String: JSONValue]()
            let end = after(index)
            var k = index + 1
            while k < end {
                let key = String(decoding: UnsafeBufferPointer(start: p + start(k), count: length(k)), as: UTF8.self)
                o[key] = PlainJSONRef(p, tape, k + 1).value
                k = after(k + 1)
            }
            return .object(o)
        case PlainJSON.Kind.array.rawValue:
            var a = [JSONValue]()
            let end = after(index)
            var k = index + 1
            while k < end {
                a.append(PlainJSONRef(p, tape, k).value)
                k = after(k)
            }
            return .array(a)
        case PlainJSON.Kind.string.rawValue: return .string(string ?? "")
        case PlainJSON.Kind.integer.rawValue: return .int(integer ?? 0)
        default:
            switch p[start(index)] {
            case UInt8(ascii: "t"): return .bool(true)
            case UInt8(ascii: "f"): return .bool(false)
            default: return .null
            }
        }
    }
}

@inline(__always)
private func bytesEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    var k = 0
    while k < n {
        if a[k] != b[k] { return false }
        k += 1
    }
    return true
}

/// A value of a strictly parsed JSON document, whichever parser read it (see ``StrictJSON/withObject(_:maxDepth:orThrow:_:)``).
/// Trivially copyable: two pointers and an index, or one pointer.
@usableFromInline
package enum StrictJSONRef: JSONReading {
    case plain(PlainJSONRef)
    case jansson(JSONRef)

    package func member(_ key: StaticString) -> StrictJSONRef? {
        switch self {
        case .plain(let r): return r.member(key).map { .plain($0) }
        case .jansson(let r): return r.member(key).map { .jansson($0) }
        }
    }

    package var string: String? {
        switch self {
        case .plain(let r): return r.string
        case .jansson(let r): return r.string
        }
    }

    package func stringEquals(_ other: String) -> Bool {
        switch self {
        case .plain(let r): return r.stringEquals(other)
        case .jansson(let r): return r.stringEquals(other)
        }
    }

    package var integer: Int64? {
        switch self {
        case .plain(let r): return r.integer
        case .jansson(let r): return r.integer
        }
    }

    package var isArray: Bool {
        switch self {
        case .plain(let r): return r.isArray
        case .jansson(let r): return r.isArray
        }
    }

    package var count: Int {
        switch self {
        case .plain(let r): return r.count
        case .jansson(let r): return r.count
        }
    }

    package subscript(index: Int) -> StrictJSONRef? {
        switch self {
        case .plain(let r): return r[index].map { .plain($0) }
        case .jansson(let r): return r[index].map { .jansson($0) }
        }
    }
}

extension StrictJSON {
    /// Parses a JSON object strictly (the rules of ``init(_:maxDepth:requireObject:)``) and runs `body` with its
    /// root: read in place by ``PlainJSON`` when the document lies in the plain subset, by jansson otherwise.
    /// Jansson decides every document outside the subset and produces every error.
    /// - Parameters:
    ///   - orThrow: maps jansson's ``JOSEError/invalidJSON`` to the caller's error type.
    /// - warning: Do not escape the ``StrictJSONRef`` from the closure.
    @inlinable
    package static func withObject<R, E: Error>(
        _ bytes: UnsafeRawBufferPointer,
        maxDepth: Int,
        orThrow wrap: (JOSEError) -> E,
        _ body: (StrictJSONRef) throws(E) -> R
    ) throws(E) -> R {
        try PlainJSON.withDocument(bytes, maxDepth: maxDepth) { (plain) throws(E) -> R in
            if let plain { return try body(.plain(plain)) }
            let doc: StrictJSON
            do throws(JOSEError) {
                doc = try StrictJSON(bytes, maxDepth: maxDepth)
            } catch {
                throw wrap(error)
            }
            // The root points into `doc`: keep it alive until `body` is done.
            return try withExtendedLifetime(doc) { () throws(E) -> R in try body(.jansson(doc.root)) }
        }
    }
}
