// libFuzzer target: the compact-token parser.
// 1. Differential: the plain-JSON scanner (PlainJSON.swift) against jansson (StrictJSON, JSON_REJECT_DUPLICATES)
//    on the input as a JSON document. The scanner may decline anything, but whatever it accepts jansson must accept
//    too, and every claim the verifier reads must read the same through both (same verdict, same claims).
// 2. The whole verifier on the input as a token (header, claims, signature) against a fixed key set: no crash, and
//    a verdict from the closed set.
import StagepassJOSE

@testable import StagepassVerify

/// Every member name the verifier or the status list parser reads.
private let names: [StaticString] = [
    "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "role", "stage", "amr", "auth_time", "sid",
    "act", "status", "status_list", "idx", "uri", "bits", "lst", "ttl", "alg", "kid", "typ", "crit", "jku", "jwk",
    "x5u", "x5c", "cnf", "run_id", "commit", "x", "a", "",
]

/// A canonical reading of `j` through the JSONReading interface, two levels deep.
private func describe<J: JSONReading>(_ j: J, depth: Int = 0, into out: inout [String]) {
    if let s = j.string { out.append("s:\(s)") }
    if let i = j.integer { out.append("i:\(i)") }
    out.append("a:\(j.isArray) n:\(j.count)")
    if j.isArray {
        for k in 0..<min(j.count, 8) {
            guard let e = j[k] else {
                out.append("missing element \(k)")
                continue
            }
            if depth < 3 { describe(e, depth: depth + 1, into: &out) }
        }
    }
    guard depth < 3 else { return }
    for name in names {
        guard let m = j.member(name) else { continue }
        out.append("m:\(name)")
        describe(m, depth: depth + 1, into: &out)
    }
}

private let keySet: KeySet = {
    // The conformance vectors' main JWKS (Specs/vectors/generate.py JWKS_MAIN): tokens the fuzzer builds reach the signature check.
    let jwks =
        #"{"keys":[{"kty":"EC","crv":"P-256","x":"0ODLOlP4YfFNwmFT-Os7ayjhP0opwzUm7ya55sLLUNI","y":"o2iJktJ-T12VTJFJ-mmm6QH0-MhSunv5RMFTT7WBgrg","kid":"dZ-kZ6UVdjpdyrwQa4s4Ass57FDjdXMhQVkR2rIVQPY","alg":"ES256","use":"sig"},{"kty":"OKP","crv":"Ed25519","x":"BsUNGpDYuX--sdq1Fw5AlniYhKXV6PUlc_5EawAWdyk","kid":"5pvvGsbqEYVAXsXW-v_iOqoQxCz3uTaAsvrmg_D-SO0","alg":"EdDSA","use":"sig"},{"kty":"RSA","n":"1dg-guOndJXnapIvSlaq3u1DyPKhn_YBb_AbgnvDqOMaSok6eCCK_P1QBvSv4Bc7paI8gs102vu0a0K5CgX7U0oJocBt-Vk2KsFxOVUkDg0xriE0T6j20rVpAhxJiwjdSk6KfPIB6HoNEwCybVfS30EygY2kx3AC0W7H9QQlorYZIeTNjDzQPqunVwPnV-iEpYfoizqbjuPy9tkk_Sm5B5XPod7zO73KfC9fZjUsQL1qJHhXHIqEW_pOP-xNK-V8vM3_AdVYTOp5OU3dL1gFVHxdUDYDocdUG5CMB9QCqkFXFnsCEGhzcEx8GpnuIK4eJ4r8el8KPEuU2qPzRDJiiQ","e":"AQAB","kid":"bfBNrwgS7jbG6DwbMyDVGLseT3T0WAqnhi_NPpAKnls","alg":"RS256","use":"sig"},{"kty":"RSA","n":"zzOGWmrECKETUQ7dwr-OHa9XjdhGPlAHCasrhw-6HE0w09gGxZxuiJ1_Bn0l7AVi4XA1irSisfLk-aOrPMk2cuWU8exyDbVEXM-vAhWO41qgnRed3St-LJk5A7gPFReIsnZgsTBHuYqo0p0sOHmowXBPmszkaK7h6Mke6VD5FmR8VF67PX5CnaudTJx7jQXqOguZ0_DbL99ZB6eR6mtjH9smoHMgVSgpJpR_vyVvOOI1iQZ_7kMS5OE7LOgFEJMiqLyOfceORsSbA19GdBKptMx5N7J9jVuy8FkwjQ8vEVBWpWRUxciJKqrYZNHp3_RzM8S35dwZtMVEpkLWsDytHQ","e":"AQAB","kid":"CE6KYNHnPDqCpM6gEOIzTK9CWKP3BHDE5YVYiE5E-O8","alg":"PS256","use":"sig"}]}"#
    return (try? KeySet(jwksJSON: Array(jwks.utf8))) ?? KeySet(jwks: JWKS(keys: []))
}()

private let verifier = Verifier(
    configuration: try! VerifierConfiguration(
        issuer: "https://stagepass.test",
        audiences: ["deploy-api"],
        cacheCapacity: 0
    ),
    keys: StaticKeySource(keySet),
    clock: { 1_900_000_000 }
)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzToken(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    for depth in [16, 4] {
        var plainView: [String]?
        PlainJSON.withDocument(input, maxDepth: depth) { (plain: PlainJSONRef?) in
            guard let plain else { return }
            var out = [String]()
            describe(plain, into: &out)
            plainView = out
        }
        let strict = try? StrictJSON(input, maxDepth: depth)
        if let plainView {
            guard let strict else {
                check(false, "the plain scanner accepted a document jansson refuses")
                return 0
            }
            var out = [String]()
            describe(strict.root, into: &out)
            check(out == plainView, "the plain scanner and jansson read different claims")
        }
        // The dispatching reader the verifier uses reaches the same verdict as jansson alone.
        let viaDispatch =
            (try? StrictJSON.withObject(input, maxDepth: depth, orThrow: { $0 }) {
                (r: StrictJSONRef) throws(JOSEError) -> [String] in
                var out = [String]()
                describe(r, into: &out)
                return out
            })
        check((viaDispatch != nil) == (strict != nil), "StrictJSON.withObject and jansson disagree on the verdict")
    }
    let text = String(decoding: input, as: UTF8.self)
    do {
        _ = try verifier.verify(text, at: 1_900_000_000)
    } catch {
        check(VerificationErrorCode.allCases.contains(error.code), "verdict outside the closed set")
    }
    return 0
}
