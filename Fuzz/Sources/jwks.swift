// libFuzzer target: the JWKS parser (RFC 7517 §5) and key import (JWK → OpenSSL key, RFC 7518 §6), plus RFC 7638
// thumbprints of whatever imports.
import StagepassJOSE
import StagepassVerify

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJWKS(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeRawBufferPointer(start: data, count: size))
    guard let jwks = try? JWKS(json: bytes) else { return 0 }
    let set = KeySet(jwks: jwks)
    for (kid, entry) in set.entries {
        check(entry.kid == kid, "an entry is filed under another kid")
        check(entry.alg.keyType == entry.key.type, "an entry's alg does not fit its key")
    }
    for jwk in jwks.keys {
        _ = try? jwk.thumbprint()
        _ = try? jwk.publicKey()
    }
    // Re-serialising a parsed set and parsing it again keeps the same usable kids.
    if let again = try? KeySet(jwksJSON: Array(jwks.serialized().utf8)) {
        check(Set(again.entries.keys) == Set(set.entries.keys), "serialise/parse changed the usable keys")
    }
    return 0
}
