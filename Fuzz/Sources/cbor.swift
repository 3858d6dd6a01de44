// libFuzzer target: the CBOR decoder (RFC 8949 subset of WebAuthn Level 2 §6.5) and COSE_Key import (RFC 8152 §7)
// of the broker's WebAuthn factor. Whatever decodes as a whole must also decode as a prefix ending at the input's
// end; a COSE key that imports has a usable public key of the algorithm it names.
import StagepassJOSE

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCBOR(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeRawBufferPointer(start: data, count: size))
    let whole = try? CBORDecoder.decode(bytes)
    if let whole {
        let prefix = try? CBORDecoder.decodePrefix(bytes, from: 0)
        check(prefix?.value == whole && prefix?.end == bytes.count, "decode and decodePrefix disagree")
    }
    if let key = try? COSEKey(bytes: bytes) {
        check(key.publicKey.type == key.algorithm.jws.keyType, "COSE key type does not fit its algorithm")
        _ = key.verify(signature: [UInt8](repeating: 1, count: 64), over: bytes)
    }
    if size > 0, let (_, end) = try? CBORDecoder.decodePrefix(bytes, from: Int(bytes[0]) % size) {
        check(end <= bytes.count, "decodePrefix ended past the input")
    }
    return 0
}
