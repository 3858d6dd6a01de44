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
