// libFuzzer target: strict base64url (RFC 7515 §2, RFC 4648 §5 without padding).
// Properties: the three decoders agree; whatever decodes re-encodes to the same text (one spelling per byte
// string: no padding, no non-canonical trailing bits); encoding any bytes decodes back to them.
import StagepassJOSE

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBase64URL(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    let text = String(decoding: input, as: UTF8.self)
    let viaString = try? Base64URL.decode(text)
    let viaBytes = try? Base64URL.decode(input)
    var viaInto: [UInt8]?
    var out = [UInt8](repeating: 0, count: Base64URL.decodedCount(size) + 1)
    if let n = try? out.withUnsafeMutableBytes({ (o) throws(JOSEError) -> Int in try Base64URL.decode(input, into: o) })
    {
        viaInto = Array(out.prefix(n))
    }
    check(viaBytes == viaInto, "decode(bytes) and decode(into:) disagree")
    if Array(text.utf8).elementsEqual(input) {
        check(viaString == viaBytes, "decode(String) and decode(bytes) disagree")
    }
    if let decoded = viaBytes {
        check(Base64URL.encode(decoded).utf8.elementsEqual(input), "decoded input does not re-encode to itself")
    }
    let raw = Array(input)
    check((try? Base64URL.decode(Base64URL.encode(raw))) == raw, "encode/decode round trip failed")
    return 0
}
