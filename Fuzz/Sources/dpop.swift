// libFuzzer target: the DPoP proof checker (RFC 9449 §4.3), which the broker's token endpoint and every deploy
// endpoint run on an attacker's header before anything else is known.
// 1. The input as a proof, for a fixed request and token: no crash, and the only verdict is bad_dpop_proof (a proof
//    the fuzzer cannot sign never passes).
// 2. The input as a URL: htu normalisation is idempotent, and never yields a query or fragment.
import StagepassJOSE

@testable import StagepassVerify

private let checker = DPoPProofChecker(maxAge: 60, leeway: 30, keyCache: 16)
private let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDPoP(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeRawBufferPointer(start: data, count: size), as: UTF8.self)
    do {
        _ = try checker.check(
            text,
            method: "POST",
            url: "https://deploy.test/api/deploy",
            accessToken: token,
            now: 1_900_000_000
        )
        check(false, "an unsigned fuzzer input passed as a DPoP proof")
    } catch {
        check(error.code == .badDPoPProof, "a proof check failed with another code than bad_dpop_proof")
    }
    if let once = DPoPProofChecker.normalizedTargetURI(text) {
        check(DPoPProofChecker.normalizedTargetURI(once) == once, "htu normalisation is not idempotent")
        check(!once.contains("?") && !once.contains("#"), "a normalised htu keeps a query or fragment")
    }
    return 0
}
