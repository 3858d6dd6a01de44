import StagepassJOSE

/// A verified Token Status List (draft-ietf-oauth-status-list-20 §5): a `statuslist+jwt` whose `sub` is the
/// `uri` tokens reference, whose `status_list.lst` is the ZLIB-compressed (RFC 1950) array of `bits`-bit entries.
struct ParsedStatusList: Sendable {
    let uri: String
    let kid: String
    let bits: Int
    let bytes: [UInt8]
    let iat: Int64
    let exp: Int64?
    let ttl: Int64?

    /// Largest decompressed list accepted (2^24 one-bit entries = 2 MiB).
    static let maxBytes = 1 << 21

    /// Verifies the list's signature against `keySet` (same rules as tokens: known kid, key-fixed alg, no
    /// jku/jwk/x5u/x5c) and decodes it.
    init(jwt: String, keySet: KeySet) throws(JOSEError) {
        let parts = jwt.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw .invalidJSON("a status list token has three segments") }
        let headerBytes = try Base64URL.decode(String(parts[0]))
        let payloadBytes = try Base64URL.decode(String(parts[1]))
        let sig = try Base64URL.decode(String(parts[2]))
        let header = try withBytes(headerBytes) { b throws(JOSEError) in try StrictJSON(b, maxDepth: 4) }
        let h = header.root
        // §5.1: typ MUST be statuslist+jwt.
        guard h.member("typ")?.stringEquals("statuslist+jwt") == true else { throw .invalidJSON("typ is not statuslist+jwt") }
        guard h.member("crit") == nil, h.member("jku") == nil, h.member("jwk") == nil, h.member("x5u") == nil, h.member("x5c") == nil
        else { throw .invalidJSON("forbidden header") }
        guard let kid = h.member("kid")?.string, let entry = keySet[kid] else { throw .invalidKey("unknown kid") }
        guard h.member("alg")?.stringEquals(entry.alg.rawValue) == true else { throw .unsupportedAlgorithm("alg mismatch") }
        let input = Array((parts[0] + "." + parts[1]).utf8)
        guard entry.key.verify(entry.alg, signingInput: input, signature: sig) else { throw .invalidSignature("status list signature") }

        let payload = try withBytes(payloadBytes) { b throws(JOSEError) in try StrictJSON(b, maxDepth: 8) }
        let c = payload.root
        // §5.1: sub MUST equal the uri of the referenced tokens' status claim.
        guard let sub = c.member("sub")?.string else { throw .invalidJSON("status list has no sub") }
        guard let sl = c.member("status_list"), let bits = sl.member("bits")?.integer, [1, 2, 4, 8].contains(bits),
              let lst = sl.member("lst")?.string
        else { throw .invalidJSON("status_list needs bits (1, 2, 4 or 8) and lst") }
        let compressed = try Base64URL.decode(lst)
        self.bytes = try Zlib.decompress(compressed, limit: ParsedStatusList.maxBytes)
        self.uri = sub
        self.kid = kid
        self.bits = Int(bits)
        // §5.1: iat is REQUIRED.
        guard let iat = c.member("iat")?.integer else { throw .invalidJSON("status list has no iat") }
        self.iat = iat
        self.exp = c.member("exp")?.integer
        self.ttl = c.member("ttl")?.integer
    }

    /// The status value of entry `index`, or nil when the index is past the end of the list.
    /// §4.1: with 1-bit entries, entry idx is bit (idx % 8) of byte idx / 8, least significant bit first.
    func value(at index: Int) -> UInt8? {
        let bitOffset = index * bits
        let byte = bitOffset / 8
        guard index >= 0, byte < bytes.count else { return nil }
        let shift = bitOffset % 8
        let mask = UInt8((1 << bits) - 1)
        return (bytes[byte] >> UInt8(shift)) & mask
    }
}
