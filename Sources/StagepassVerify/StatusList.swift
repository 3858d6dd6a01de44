import StagepassJOSE
import Synchronization

/// A verified Token Status List (draft-ietf-oauth-status-list-20 §5): a `statuslist+jwt` whose `sub` is the
/// `uri` tokens reference, whose `status_list.lst` is the ZLIB-compressed (RFC 1950) array of `bits`-bit entries.
///
/// Memory: the inflated byte array is kept as it is, and with `bits: 1` it already is a bitset: a list of 2^20
/// entries is 128 KiB (2^20 / 8 bytes), one of 2^24 entries 2 MiB, the most accepted. ``value(at:)`` reads one byte
/// in place (O(1), no copy: the array is immutable and shared by every copy of this value).
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
    /// Largest status list token accepted, in bytes (a 2 MiB list of random bits compresses to about 2.7 MiB of
    /// base64url; Stagepass lists are sparse and far smaller).
    static let maxTokenBytes = 4 << 20

    /// Verifies the list's header and signature against `keySet` (same rules as tokens: known kid, key-fixed alg,
    /// no crit/jku/jwk/x5u/x5c, ES256 low-S) and decodes its claims.
    /// - Throws: ``StatusListError`` naming the first failed check.
    init(jwt: String, keySet: KeySet) throws(StatusListError) {
        guard jwt.utf8.count <= ParsedStatusList.maxTokenBytes else {
            throw StatusListError(.tooLarge, "status list token longer than \(ParsedStatusList.maxTokenBytes) bytes")
        }
        // RFC 7515 §7.1: three base64url segments.
        let parts = jwt.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw StatusListError(.malformed, "a status list token has three segments") }
        let headerBytes: [UInt8]
        let payloadBytes: [UInt8]
        let sig: [UInt8]
        do {
            headerBytes = try Base64URL.decode(String(parts[0]))
            payloadBytes = try Base64URL.decode(String(parts[1]))
            sig = try Base64URL.decode(String(parts[2]))
        } catch {
            throw StatusListError(.malformed, "a segment is not strict base64url")
        }
        let header: StrictJSON
        do {
            header = try withBytes(headerBytes) { b throws(JOSEError) in try StrictJSON(b, maxDepth: 4) }
        } catch {
            throw StatusListError(.malformed, "header: \(error.detail)")
        }
        let h = header.root
        // draft-ietf-oauth-status-list-20 §5.1: typ MUST be statuslist+jwt.
        guard h.member("typ")?.stringEquals("statuslist+jwt") == true else {
            throw StatusListError(.wrongType, "typ is not statuslist+jwt")
        }
        // RFC 7515 §4.1.11 (crit) and RFC 8725 §3.10 (keys are never taken from the document).
        guard h.member("crit") == nil, h.member("jku") == nil, h.member("jwk") == nil, h.member("x5u") == nil,
            h.member("x5c") == nil
        else { throw StatusListError(.forbiddenHeader, "crit, jku, jwk, x5u and x5c are refused") }
        // RFC 7515 §4.1.4: kid selects the key; RFC 8725 §3.1: the key fixes the algorithm.
        guard let kid = h.member("kid")?.string, let entry = keySet[kid] else {
            throw StatusListError(.unknownKey, "kid is not in the key set")
        }
        guard h.member("alg")?.stringEquals(entry.alg.rawValue) == true else {
            throw StatusListError(.unknownKey, "alg is not the key's")
        }
        // RFC 7515 §5.2 step 8: signature over ASCII(header64 '.' payload64).
        let input = Array((parts[0] + "." + parts[1]).utf8)
        guard entry.key.verify(entry.alg, signingInput: input, signature: sig) else {
            throw StatusListError(.badSignature, "status list signature does not verify")
        }
        try self.init(verifiedPayload: payloadBytes, kid: kid)
    }

    /// Decodes the claims of a list whose signature was verified (the parser the fuzzer drives directly).
    /// - Throws: ``StatusListError/Code-swift.enum/malformed``.
    init(verifiedPayload payloadBytes: [UInt8], kid: String) throws(StatusListError) {
        let payload: StrictJSON
        do {
            payload = try withBytes(payloadBytes) { b throws(JOSEError) in try StrictJSON(b, maxDepth: 8) }
        } catch {
            throw StatusListError(.malformed, "claims: \(error.detail)")
        }
        let c = payload.root
        // draft §5.1: sub MUST equal the uri of the referenced tokens' status claim.
        guard let sub = c.member("sub")?.string else {
            throw StatusListError(.malformed, "status list has no string sub")
        }
        // draft §5.1: iat is REQUIRED (RFC 7519 §2 NumericDate; Stagepass requires integer seconds).
        guard let iat = c.member("iat")?.integer else {
            throw StatusListError(.malformed, "status list has no integer iat")
        }
        // draft §5.1: exp is OPTIONAL, but when present it must be a NumericDate: a malformed exp must not read as
        // "no expiry".
        var exp: Int64?
        if let e = c.member("exp") {
            guard let v = e.integer else { throw StatusListError(.malformed, "exp must be an integer NumericDate") }
            exp = v
        }
        // draft §5.1: ttl is OPTIONAL, a positive number of seconds.
        var ttl: Int64?
        if let t = c.member("ttl") {
            guard let v = t.integer, v > 0 else { throw StatusListError(.malformed, "ttl must be a positive integer") }
            ttl = v
        }
        // draft §4.2: status_list = {bits: 1|2|4|8, lst: base64url(ZLIB(bytes))}.
        guard let sl = c.member("status_list"), let bits = sl.member("bits")?.integer, [1, 2, 4, 8].contains(bits),
            let lst = sl.member("lst")?.string
        else { throw StatusListError(.malformed, "status_list needs bits (1, 2, 4 or 8) and lst") }
        let inflated: Zlib.Inflated
        do {
            inflated = try Zlib.inflate(try Base64URL.decode(lst), limit: ParsedStatusList.maxBytes)
        } catch {
            throw StatusListError(.malformed, "lst: \(error.detail)")
        }
        switch inflated {
        case .bytes(let b): self.bytes = b
        case .tooLarge:
            // draft §4.2 leaves the bound to the consumer; a larger list is refused, not truncated.
            throw StatusListError(.tooLarge, "lst inflates to more than \(ParsedStatusList.maxBytes) bytes")
        case .invalid: throw StatusListError(.malformed, "lst is not a complete ZLIB stream")
        }
        self.uri = sub
        self.kid = kid
        self.bits = Int(bits)
        self.iat = iat
        self.exp = exp
        self.ttl = ttl
    }

    /// The status value of entry `index`, or nil when the index is past the end of the list.
    /// draft §4.1: entry idx occupies `bits` bits starting at bit idx*bits, least significant bit first.
    func value(at index: Int) -> UInt8? {
        guard index >= 0 else { return nil }
        let (bitOffset, overflow) = index.multipliedReportingOverflow(by: bits)
        guard !overflow else { return nil }
        let byte = bitOffset / 8
        guard byte < bytes.count else { return nil }
        let shift = bitOffset % 8
        let mask = UInt8((1 << bits) - 1)
        return (bytes[byte] >> UInt8(shift)) & mask
    }
}

/// What an installed status list is, as the holder reports it.
public struct StatusListInfo: Sendable, Hashable {
    /// The list's `sub`: the `uri` tokens reference.
    public let uri: String
    /// The list's `iat` (draft §5.1).
    public let issuedAt: Int64
    /// The list's `exp`, if any.
    public let expiresAt: Int64?
    /// The list's `ttl` (seconds a consumer may cache it), if any.
    public let ttl: Int64?
    /// When the caller obtained this copy.
    public let fetchedAt: Int64
    /// The fail-closed age limit given with this copy, if any.
    public let maxAge: Int64?
}

/// The one place a verifier keeps its Token Status Lists: at most one list per `sub`, each verified before it is
/// installed. The Swift ``Verifier``, the C ABI and `stagepass verify` all install through it.
///
/// Rules (Specs/token-profile.md §6.4):
/// - a document is installed only if it verifies against the key set given (``ParsedStatusList``), is not expired
///   (`now < exp + leeway`) and was not issued in the future (`iat ≤ now + leeway`); anything else is refused with
///   a ``StatusListError`` and changes nothing;
/// - a usable list replaces the installed list with the same `sub` only if it is not older: a larger `iat` replaces;
///   an equal `iat` replaces too (the issuer re-signed within one second, and the later copy carries the later
///   revocation); a smaller `iat` is refused as ``StatusListError/Code-swift.enum/superseded`` and the newer list
///   stays (a replayed or cached old list can never un-revoke a token).
///
/// Thread-safe; lookups are one lock and one dictionary read.
public final class StatusListHolder: Sendable {
    struct Installed: Sendable {
        let list: ParsedStatusList
        let jwt: String
        let fetchedAt: Int64
        let maxAge: Int64?

        var info: StatusListInfo {
            StatusListInfo(
                uri: list.uri,
                issuedAt: list.iat,
                expiresAt: list.exp,
                ttl: list.ttl,
                fetchedAt: fetchedAt,
                maxAge: maxAge
            )
        }
    }

    private struct State {
        var lists: [String: Installed] = [:]
        /// Documents already offered (installed or refused), so that a polled source costs a lookup, not a
        /// signature check, per verification.
        var seen: Set<String> = []
    }

    /// Most distinct `sub`s held (a verifier needs a handful; a bound keeps memory finite).
    public static let maxLists = 64

    private let state = Mutex(State())

    public init() {}

    /// Verifies `jwt` and installs it.
    /// - Parameters:
    ///   - jwt: the compact `statuslist+jwt` (surrounding whitespace is the caller's to strip).
    ///   - fetchedAt: when the caller obtained it (unix seconds).
    ///   - maxAge: a fail-closed age limit for this copy (the stricter of this and the verifier's applies).
    ///   - keys: the verifier's current key set; nil refuses every document (`unknown_key`).
    ///   - now: the current time, unix seconds.
    ///   - leeway: clock skew tolerated on the list's `exp` and `iat`.
    /// - Returns: what is now installed for the list's `sub`.
    /// - Throws: ``StatusListError`` when the document is unusable or older than the installed one.
    @discardableResult
    public func install(
        _ jwt: String,
        fetchedAt: Int64,
        maxAge: Int64? = nil,
        keys: KeySet?,
        now: Int64,
        leeway: Int64 = 30
    ) throws(StatusListError) -> StatusListInfo {
        do {
            let info = try verifyAndInstall(
                jwt,
                fetchedAt: fetchedAt,
                maxAge: maxAge,
                keys: keys,
                now: now,
                leeway: leeway
            )
            remember(jwt)
            return info
        } catch {
            // A list signed by a key the verifier does not hold yet is offered again once the keys change; every
            // other refusal is final for that exact document.
            if error.code != .unknownKey { remember(jwt) }
            throw error
        }
    }

    private func remember(_ jwt: String) {
        state.withLock { s in
            if s.seen.count >= 256 { s.seen.removeAll() }
            s.seen.insert(jwt)
        }
    }

    private func verifyAndInstall(
        _ jwt: String,
        fetchedAt: Int64,
        maxAge: Int64?,
        keys: KeySet?,
        now: Int64,
        leeway: Int64
    ) throws(StatusListError) -> StatusListInfo {
        guard let keys else { throw StatusListError(.unknownKey, "no key set to verify the status list with") }
        let list = try ParsedStatusList(jwt: jwt, keySet: keys)
        // RFC 7519 §4.1.4 (applied to the list, draft §5.1): refuse on or after exp + leeway.
        if let exp = list.exp, now >= sat(exp, leeway) {
            throw StatusListError(.expired, "status list expired at \(exp)")
        }
        // RFC 7519 §4.1.6: an iat in the future means a bad clock or a forged list.
        if sat(now, leeway) < list.iat {
            throw StatusListError(.issuedInFuture, "status list issued at \(list.iat), in the future")
        }
        let new = Installed(list: list, jwt: jwt, fetchedAt: fetchedAt, maxAge: maxAge)
        let result = state.withLock { s -> Result<StatusListInfo, StatusListError> in
            if let old = s.lists[list.uri] {
                if list.iat < old.list.iat {
                    return .failure(
                        StatusListError(
                            .superseded,
                            "status list issued at \(list.iat) is older than the installed one (\(old.list.iat))"
                        )
                    )
                }
                // The same document again: keep the earlier fetch time (the age rule counts from the older one).
                if old.jwt == jwt {
                    let kept = Installed(
                        list: old.list,
                        jwt: jwt,
                        fetchedAt: min(old.fetchedAt, fetchedAt),
                        maxAge: maxAge
                    )
                    s.lists[list.uri] = kept
                    return .success(kept.info)
                }
            } else if s.lists.count >= StatusListHolder.maxLists {
                return .failure(StatusListError(.malformed, "more than \(StatusListHolder.maxLists) status lists"))
            }
            s.lists[list.uri] = new
            return .success(new.info)
        }
        return try result.get()
    }

    /// Whether `jwt` was offered before (installed or refused) since the last time the memo was cleared.
    func hasSeen(_ jwt: String) -> Bool { state.withLock { $0.seen.contains(jwt) } }

    /// The installed list for `uri`, if any.
    func installed(for uri: String) -> Installed? { state.withLock { $0.lists[uri] } }

    /// The installed list for `uri`, if any.
    public func info(for uri: String) -> StatusListInfo? { installed(for: uri)?.info }

    /// Every installed list.
    public var all: [StatusListInfo] { state.withLock { Array($0.lists.values.map(\.info)) } }
}
