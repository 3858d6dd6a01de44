/// Strict base64url (RFC 4648 §5) without padding, as JWS requires (RFC 7515 §2, "Base64url Encoding").
///
/// Decoding refuses padding, whitespace, characters of the standard alphabet (`+`, `/`), a length of
/// 1 mod 4, and non-canonical trailing bits (so every byte string has exactly one encoding).
public enum Base64URL {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let table: [UInt8] = {
        var t = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { t[Int(c)] = UInt8(i) }
        return t
    }()

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
        try withBytes(Array(string.utf8)) { buf throws(JOSEError) in try decode(buf) }
    }

    /// Decodes strict unpadded base64url from raw bytes (the verifier's zero-copy path).
    public static func decode(_ input: UnsafeRawBufferPointer) throws(JOSEError) -> [UInt8] {
        let n = input.count
        if n % 4 == 1 { throw .invalidBase64URL("impossible length") }
        var out = [UInt8]()
        out.reserveCapacity(n * 3 / 4)
        let r = table.withUnsafeBufferPointer { t in Result<Void, JOSEError> { () throws(JOSEError) in
            var i = 0
            while i + 4 <= n {
                let a = t[Int(input[i])], b = t[Int(input[i + 1])], c = t[Int(input[i + 2])], d = t[Int(input[i + 3])]
                if (a | b | c | d) & 0xC0 != 0 { throw .invalidBase64URL("character outside the base64url alphabet") }
                out.append((a << 2) | (b >> 4))
                out.append((b << 4) | (c >> 2))
                out.append((c << 6) | d)
                i += 4
            }
            let rest = n - i
            if rest >= 2 {
                let a = t[Int(input[i])], b = t[Int(input[i + 1])]
                if (a | b) & 0xC0 != 0 { throw .invalidBase64URL("character outside the base64url alphabet") }
                out.append((a << 2) | (b >> 4))
                if rest == 3 {
                    let c = t[Int(input[i + 2])]
                    if c & 0xC0 != 0 { throw .invalidBase64URL("character outside the base64url alphabet") }
                    out.append((b << 4) | (c >> 2))
                    if c & 0x03 != 0 { throw .invalidBase64URL("non-canonical trailing bits") }
                } else if b & 0x0F != 0 {
                    throw .invalidBase64URL("non-canonical trailing bits")
                }
            }
        } }
        try r.get()
        return out
    }
}
