public import StagepassJOSE

/// RFC 4648 §6 base32 (the alphabet authenticator apps use for TOTP secrets), unpadded on output.
public enum Base32 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    /// Encodes without `=` padding (Key Uri Format omits it).
    public static func encode(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        var buffer: UInt32 = 0
        var bits = 0
        for b in bytes {
            buffer = (buffer << 8) | UInt32(b)
            bits += 8
            while bits >= 5 {
                out.append(alphabet[Int((buffer >> UInt32(bits - 5)) & 31)])
                bits -= 5
            }
        }
        if bits > 0 { out.append(alphabet[Int((buffer << UInt32(5 - bits)) & 31)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes case-insensitively, ignoring `=` padding, spaces and dashes; nil on any other character.
    public static func decode(_ s: String) -> [UInt8]? {
        var out = [UInt8]()
        var buffer: UInt32 = 0
        var bits = 0
        for c in s.utf8 {
            let v: UInt32
            switch c {
            case 65...90: v = UInt32(c - 65)
            case 97...122: v = UInt32(c - 97)
            case 50...55: v = UInt32(c - 50 + 26)
            case 61, 32, 45: continue
            default: return nil
            }
            buffer = (buffer << 5) | v
            bits += 5
            if bits >= 8 {
                out.append(UInt8((buffer >> UInt32(bits - 8)) & 0xFF))
                bits -= 8
            }
        }
        return out
    }
}

/// HOTP (RFC 4226) and TOTP (RFC 6238) code generation.
public enum OTP {
    /// HOTP value: HMAC over the 8-byte big-endian counter (RFC 4226 §5.2), dynamic truncation (§5.3: offset = low
    /// nibble of the last MAC byte, 31-bit big-endian value), then `mod 10^digits`, zero-padded.
    public static func hotp(
        secret: [UInt8],
        counter: UInt64,
        digits: Int = 6,
        digest: Crypto.Digest = .sha1
    ) throws -> String {
        var msg = [UInt8](repeating: 0, count: 8)
        for i in 0..<8 { msg[i] = UInt8(truncatingIfNeeded: counter >> UInt64(56 - 8 * i)) }
        let mac = try Crypto.hmac(digest, key: secret, data: msg)
        // Fail closed: a MAC too short to truncate is an error, never an empty (matchable) code.
        guard let last = mac.last, Int(last & 0x0F) + 3 < mac.count else {
            throw JOSEError.cryptoFailure("HMAC too short for HOTP")
        }
        let offset = Int(last & 0x0F)
        let binary =
            (UInt32(mac[offset] & 0x7F) << 24) | (UInt32(mac[offset + 1]) << 16)
            | (UInt32(mac[offset + 2]) << 8) | UInt32(mac[offset + 3])
        var modulus: UInt32 = 1
        for _ in 0..<digits { modulus = modulus &* 10 }
        let value = digits >= 10 ? binary : binary % modulus
        let s = String(value)
        return String(repeating: "0", count: max(0, digits - s.count)) + s
    }

    /// The TOTP time step `T = floor((unixTime − T0) / X)` with T0 = 0 (RFC 6238 §4.2).
    public static func timeStep(_ unixTime: Int64, period: Int64 = 30) -> Int64 {
        unixTime >= 0 ? unixTime / period : (unixTime - period + 1) / period
    }

    /// TOTP value for `unixTime` (RFC 6238 §4): HOTP with the time step as counter.
    public static func totp(
        secret: [UInt8],
        unixTime: Int64,
        period: Int64 = 30,
        digits: Int = 6,
        digest: Crypto.Digest = .sha1
    ) throws -> String {
        try hotp(
            secret: secret,
            counter: UInt64(max(0, timeStep(unixTime, period: period))),
            digits: digits,
            digest: digest
        )
    }

    /// Finds which step in `step−window … step+window` (RFC 6238 §5.2: allow one step of clock drift) produced `code`,
    /// comparing every candidate in constant time and without an early exit.
    public static func matchingStep(
        secret: [UInt8],
        code: String,
        unixTime: Int64,
        window: Int64 = 1,
        period: Int64 = 30,
        digits: Int = 6
    ) -> Int64? {
        let now = timeStep(unixTime, period: period)
        let given = Array(code.utf8)
        var found: Int64?
        for step in (now - window)...(now + window) where step >= 0 {
            // Fail closed: a step whose code cannot be computed matches nothing.
            guard let code = try? hotp(secret: secret, counter: UInt64(step), digits: digits) else { continue }
            let expected = Array(code.utf8)
            if Crypto.constantTimeEqual(expected, given), found == nil { found = step }
        }
        return found
    }

    /// The Key Uri Format URI understood by authenticator apps:
    /// `otpauth://totp/Stagepass:NAME?secret=…&issuer=Stagepass&algorithm=SHA1&digits=6&period=30`.
    public static func otpauthURI(secret: [UInt8], account: String, issuer: String = "Stagepass") -> String {
        let label = percentEncode(issuer) + ":" + percentEncode(account)
        return "otpauth://totp/\(label)?secret=\(Base32.encode(secret))&issuer=\(percentEncode(issuer))"
            + "&algorithm=SHA1&digits=6&period=30"
    }

    static func percentEncode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case 65...90, 97...122, 48...57, 45, 46, 95, 126: out.append(Character(Unicode.Scalar(b)))
            default:
                let hex = Array("0123456789ABCDEF")
                out += "%" + String(hex[Int(b >> 4)]) + String(hex[Int(b & 15)])
            }
        }
        return out
    }
}
