/// Strict base64url (RFC 4648 §5) without padding, as JWS requires (RFC 7515 §2, "Base64url Encoding").
///
/// Decoding refuses padding, whitespace, characters of the standard alphabet (`+`, `/`), a length of
/// 1 mod 4, and non-canonical trailing bits (so every byte string has exactly one encoding).
public enum Base64URL {
    private static let alphabet: [UInt8] = Array(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8
    )

    /// Encodes bytes as unpadded base64url.
    public static func encode<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var it = bytes.makeIterator()
        while let b0 = it.next() {
            let b1 = it.next()
            let b2 = it.next()
            out.append(alphabet[Int(b0 >> 2)])
            out.append(alphabet[Int(((b0 & 0x03) << 4) | ((b1 ?? 0) >> 4))])
            if let b1 {
                out.append(alphabet[Int(((b1 & 0x0F) << 2) | ((b2 ?? 0) >> 6))])
                if let b2 { out.append(alphabet[Int(b2 & 0x3F)]) }
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes strict unpadded base64url.
    /// - Throws: ``JOSEError/invalidBase64URL`` on any character outside the URL-safe alphabet, padding,
    ///   an impossible length or non-zero trailing bits.
    public static func decode(_ string: String) throws(JOSEError) -> [UInt8] {
        var s = string
        let r = s.withUTF8 { buf in
            Result<[UInt8], JOSEError> { () throws(JOSEError) in try decode(UnsafeRawBufferPointer(buf)) }
        }
        return try r.get()
    }

    /// Decodes strict unpadded base64url from raw bytes (the verifier's zero-copy path).
    public static func decode(_ input: UnsafeRawBufferPointer) throws(JOSEError) -> [UInt8] {
        if input.count % 4 == 1 { throw .invalidBase64URL("impossible length") }
        return try [UInt8](unsafeUninitializedCapacity: decodedCount(input.count)) { (out, n) throws(JOSEError) in
            n = try decode(input, into: UnsafeMutableRawBufferPointer(out))
        }
    }

    /// The number of bytes `count` base64url characters decode to (for a valid length).
    public static func decodedCount(_ count: Int) -> Int { count / 4 * 3 + max(0, count % 4 - 1) }

    /// Decodes strict unpadded base64url into `out`, which must hold ``decodedCount(_:)`` bytes, and returns the
    /// number of bytes written. The one decoding loop: no intermediate arrays, no per-byte append.
    /// - Throws: ``JOSEError/invalidBase64URL`` as ``decode(_:)-(String)``; `out` is then partly written.
    public static func decode(
        _ input: UnsafeRawBufferPointer,
        into out: UnsafeMutableRawBufferPointer
    ) throws(JOSEError) -> Int {
        let n = input.count
        if n % 4 == 1 { throw .invalidBase64URL("impossible length") }
        guard n > 0 else { return 0 }
        guard out.count >= decodedCount(n) else { throw .invalidBase64URL("output buffer too small") }
        // 256 entries indexed by a byte: never out of range.
        return try table.withUnsafeBufferPointer { (t) throws(JOSEError) -> Int in
            var o = 0
            var i = 0
            while i + 4 <= n {
                let a = t[Int(input[i])]
                let b = t[Int(input[i + 1])]
                let c = t[Int(input[i + 2])]
                let d = t[Int(input[i + 3])]
                if (a | b | c | d) & 0xC0 != 0 { throw .invalidBase64URL("character outside the base64url alphabet") }
                out[o] = (a << 2) | (b >> 4)
                out[o + 1] = (b << 4) | (c >> 2)
                out[o + 2] = (c << 6) | d
                o += 3
                i += 4
            }
            let rest = n - i
            if rest >= 2 {
                let a = t[Int(input[i])]
                let b = t[Int(input[i + 1])]
                if (a | b) & 0xC0 != 0 { throw .invalidBase64URL("character outside the base64url alphabet") }
                out[o] = (a << 2) | (b >> 4)
                o += 1
                if rest == 3 {
                    let c = t[Int(input[i + 2])]
                    if c & 0xC0 != 0 { throw .invalidBase64URL("character outside the base64url alphabet") }
                    out[o] = (b << 4) | (c >> 2)
                    o += 1
                    if c & 0x03 != 0 { throw .invalidBase64URL("non-canonical trailing bits") }
                } else if b & 0x0F != 0 {
                    throw .invalidBase64URL("non-canonical trailing bits")
                }
            }
            return o
        }
    }

    /// 6-bit values of the base64url alphabet, 0xFF for every other byte (RFC 4648 §5, Table 2).
    private static let table: [UInt8] = {
        var t = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { t[Int(c)] = UInt8(i) }
        return t
    }()
}
