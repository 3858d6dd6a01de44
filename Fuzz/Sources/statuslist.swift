// libFuzzer target: the Token Status List parser (draft-ietf-oauth-status-list-20 §4, §5).
// The input drives, in turn: the claims decoder of a list whose signature was verified (sub, iat, exp, ttl,
// status_list.bits/lst, ZLIB with a size bound), the bounded ZLIB inflater itself, and the whole install path
// (compact JWS, header rules, signature) of StatusListHolder. Every status value read is within 0..<2^bits.
import StagepassJOSE

@testable import StagepassVerify

private let keySet: KeySet = {
    let jwks =
        #"{"keys":[{"kty":"EC","crv":"P-256","x":"0ODLOlP4YfFNwmFT-Os7ayjhP0opwzUm7ya55sLLUNI","y":"o2iJktJ-T12VTJFJ-mmm6QH0-MhSunv5RMFTT7WBgrg","kid":"dZ-kZ6UVdjpdyrwQa4s4Ass57FDjdXMhQVkR2rIVQPY","alg":"ES256","use":"sig"}]}"#
    return (try? KeySet(jwksJSON: Array(jwks.utf8))) ?? KeySet(jwks: JWKS(keys: []))
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzStatusList(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeRawBufferPointer(start: data, count: size))
    if let list = try? ParsedStatusList(verifiedPayload: bytes, kid: "k") {
        check([1, 2, 4, 8].contains(list.bits), "bits outside 1, 2, 4, 8")
        check(list.bytes.count <= ParsedStatusList.maxBytes, "inflated list over the bound")
        check(list.ttl.map { $0 > 0 } ?? true, "non-positive ttl accepted")
        let entries = list.bytes.count * 8 / list.bits
        for idx in [0, 1, 7, 8, entries - 1, entries, entries + 1, Int.max / 2, Int.max, -1] {
            let v = list.value(at: idx)
            if idx >= 0 && idx < entries {
                guard let v else {
                    check(false, "an index inside the list has no value")
                    return 0
                }
                check(Int(v) < 1 << list.bits, "status value wider than bits")
            } else {
                check(v == nil, "an index outside the list has a value")
            }
        }
    }
    if let out = try? Zlib.decompress(bytes, limit: 4096) { check(out.count <= 4096, "inflate exceeded its limit") }
    let holder = StatusListHolder()
    let text = String(decoding: bytes, as: UTF8.self)
    if let info = try? holder.install(text, fetchedAt: 1_900_000_000, keys: keySet, now: 1_900_000_000) {
        check(holder.info(for: info.uri) == info, "an installed list is not what the holder reports")
    }
    return 0
}
