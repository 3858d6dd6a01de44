internal import CZlib

/// ZLIB (RFC 1950) compression for Token Status Lists (draft-ietf-oauth-status-list §4.1: `lst` is the
/// ZLIB-compressed bit array, base64url-encoded).
public enum Zlib {
    /// Compresses with the best compression level.
    public static func compress(_ data: [UInt8]) throws(JOSEError) -> [UInt8] {
        var destLen = compressBound(uLong(data.count))
        var out = [UInt8](repeating: 0, count: Int(destLen))
        let rc = compress2(&out, &destLen, data, uLong(data.count), Z_BEST_COMPRESSION)
        guard rc == Z_OK else { throw .cryptoFailure("zlib compress failed (\(rc))") }
        return Array(out.prefix(Int(destLen)))
    }

    /// What ``inflate(_:limit:)`` found.
    public enum Inflated: Sendable, Hashable {
        /// The whole stream, inflated (no trailing data).
        case bytes([UInt8])
        /// The stream inflates to more than the limit; inflating stopped there (a decompression bomb).
        case tooLarge
        /// Not a complete ZLIB stream, or trailing data after it.
        case invalid
    }

    /// Decompresses, refusing output larger than `limit` bytes (a decompression bomb is an error, not a crash).
    /// - Throws: ``JOSEError/invalidJSON`` (too large, or not ZLIB); ``JOSEError/cryptoFailure`` if zlib fails.
    public static func decompress(_ data: [UInt8], limit: Int) throws(JOSEError) -> [UInt8] {
        switch try inflate(data, limit: limit) {
        case .bytes(let b): return b
        case .tooLarge: throw .invalidJSON("decompressed status list exceeds \(limit) bytes")
        case .invalid: throw .invalidJSON("lst is not valid ZLIB data")
        }
    }

    /// Inflates a ZLIB stream, stopping as soon as the output passes `limit` bytes (at most one 16 KiB chunk more is
    /// ever held), so a small input that would inflate to gigabytes costs no more than `limit`.
    /// - Throws: ``JOSEError/cryptoFailure`` when zlib cannot start.
    public static func inflate(_ data: [UInt8], limit: Int) throws(JOSEError) -> Inflated {
        var stream = z_stream()
        guard inflateInit_(&stream, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw .cryptoFailure("inflateInit failed")
        }
        defer { inflateEnd(&stream) }
        var input = data
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 16384)
        let status: Int32 = input.withUnsafeMutableBufferPointer { inBuf in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = uInt(inBuf.count)
            while true {
                let rc: Int32 = chunk.withUnsafeMutableBufferPointer { c in
                    stream.next_out = c.baseAddress
                    stream.avail_out = uInt(c.count)
                    return CZlib.inflate(&stream, Z_NO_FLUSH)
                }
                let produced = chunk.count - Int(stream.avail_out)
                out.append(contentsOf: chunk.prefix(produced))
                if out.count > limit { return -100 }
                if rc == Z_STREAM_END { return Z_OK }
                if rc != Z_OK { return rc }
                if produced == 0 && stream.avail_in == 0 { return Z_DATA_ERROR }
            }
        }
        if status == -100 { return .tooLarge }
        guard status == Z_OK, stream.avail_in == 0 else { return .invalid }
        return .bytes(out)
    }
}
