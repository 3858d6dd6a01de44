import StagepassJOSE
import StagepassVerify

// The C ABI of the verifier (include/stagepass_verify.h). Unsafe pointer handling stays in this file: every
// pointer from C is checked for NULL, read within the length given, and never retained past the call.
// No Swift error crosses the boundary: every outcome is an Int32 result code.

/// The object behind an opaque `stagepass_verifier *`: one verifier, its replaceable key set, and (inside the
/// verifier) its ``StatusListHolder``. Status checking is off until the first `stagepass_verifier_set_status_list`
/// call, then on for good (as the header documents).
final class VerifierHandle: Sendable {
    let keys: StaticKeySource
    let verifier: Verifier

    init(configuration: VerifierConfiguration, keys: KeySet) {
        self.keys = StaticKeySource(keys)
        self.verifier = Verifier(configuration: configuration, keys: self.keys)
    }
}

private enum Result: Int32 {
    case ok = 0
    case invalidArgument = 100
    case bufferTooSmall = 101
    case badJWKS = 102
    case badStatusList = 103
    case staleStatusList = 104
    case invalidConfiguration = 105
}

private func string(_ p: UnsafePointer<CChar>?) -> String? {
    guard let p else { return nil }
    return String(cString: p)
}

private func handle(_ p: OpaquePointer?) -> VerifierHandle? {
    guard let p else { return nil }
    return Unmanaged<VerifierHandle>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
}

/// Copies `text` plus a NUL into `out` if it fits; always reports the needed length.
private func copyOut(
    _ text: [UInt8],
    _ out: UnsafeMutablePointer<CChar>?,
    _ cap: Int,
    _ len: UnsafeMutablePointer<Int>?
) -> Bool {
    len?.pointee = text.count
    guard let out else { return true }
    guard cap > text.count else { return false }
    text.withUnsafeBytes { src in
        UnsafeMutableRawPointer(out).copyMemory(from: src.baseAddress ?? UnsafeRawPointer(out), byteCount: text.count)
    }
    out[text.count] = 0
    return true
}

@c(stagepass_result_name)
public func stagepass_result_name(_ result: Int32) -> UnsafePointer<CChar> {
    resultNames[result] ?? unknownName
}

// Immutable after initialisation and never freed: safe to read from any thread.
private nonisolated(unsafe) let unknownName: UnsafePointer<CChar> = makeCString("unknown")
private nonisolated(unsafe) let resultNames: [Int32: UnsafePointer<CChar>] = {
    var names: [Int32: UnsafePointer<CChar>] = [0: makeCString("ok")]
    for c in VerificationErrorCode.allCases { names[c.rawValue] = makeCString(c.name) }
    names[100] = makeCString("invalid_argument")
    names[101] = makeCString("buffer_too_small")
    names[102] = makeCString("bad_jwks")
    names[103] = makeCString("bad_status_list")
    names[104] = makeCString("stale_status_list")
    names[105] = makeCString("invalid_configuration")
    return names
}()

/// Process-lifetime C strings for the name table (allocated once, never freed).
private func makeCString(_ s: String) -> UnsafePointer<CChar> {
    let bytes = Array(s.utf8CString)
    let p = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
    p.initialize(from: bytes, count: bytes.count)
    return UnsafePointer(p)
}

@c(stagepass_verifier_new)
public func stagepass_verifier_new(
    _ issuer: UnsafePointer<CChar>?,
    _ audiences: UnsafePointer<CChar>?,
    _ jwksJSON: UnsafePointer<CChar>?,
    _ leeway: Int64,
    _ maxLifetime: Int64,
    _ result: UnsafeMutablePointer<Int32>?
) -> OpaquePointer? {
    stagepass_verifier_new_with_dpop(issuer, audiences, jwksJSON, leeway, maxLifetime, 0, 0, result)
}

@c(stagepass_verifier_new_with_dpop)
public func stagepass_verifier_new_with_dpop(
    _ issuer: UnsafePointer<CChar>?,
    _ audiences: UnsafePointer<CChar>?,
    _ jwksJSON: UnsafePointer<CChar>?,
    _ leeway: Int64,
    _ maxLifetime: Int64,
    _ dpopProofMaxAge: Int64,
    _ dpopReplayCapacity: Int64,
    _ result: UnsafeMutablePointer<Int32>?
) -> OpaquePointer? {
    guard dpopReplayCapacity >= 0, dpopReplayCapacity <= Int64(Int32.max) else {
        result?.pointee = Result.invalidConfiguration.rawValue
        return nil
    }
    guard let iss = string(issuer), let aud = string(audiences), let jwks = string(jwksJSON) else {
        result?.pointee = Result.invalidArgument.rawValue
        return nil
    }
    let auds = aud.split(separator: ",").map { String($0).trimmingSpaces }.filter { !$0.isEmpty }
    guard !iss.isEmpty, !auds.isEmpty else {
        result?.pointee = Result.invalidArgument.rawValue
        return nil
    }
    guard let keys = try? KeySet(jwksJSON: Array(jwks.utf8)) else {
        result?.pointee = Result.badJWKS.rawValue
        return nil
    }
    // -1 and 0 are the documented "default" sentinels; any other value outside VerifierLimits is refused.
    guard
        let config = try? VerifierConfiguration(
            issuer: iss,
            audiences: auds,
            leeway: leeway == -1 ? 30 : leeway,
            maxLifetime: maxLifetime == 0 ? 3600 : maxLifetime,
            dpopProofMaxAge: dpopProofMaxAge == 0 ? 60 : dpopProofMaxAge,
            dpopReplayCapacity: dpopReplayCapacity == 0 ? 65536 : Int(dpopReplayCapacity)
        )
    else {
        result?.pointee = Result.invalidConfiguration.rawValue
        return nil
    }
    let h = VerifierHandle(configuration: config, keys: keys)
    result?.pointee = Result.ok.rawValue
    return OpaquePointer(Unmanaged.passRetained(h).toOpaque())
}

@c(stagepass_verifier_set_jwks)
public func stagepass_verifier_set_jwks(_ v: OpaquePointer?, _ jwksJSON: UnsafePointer<CChar>?) -> Int32 {
    guard let h = handle(v), let jwks = string(jwksJSON) else { return Result.invalidArgument.rawValue }
    guard let keys = try? KeySet(jwksJSON: Array(jwks.utf8)) else { return Result.badJWKS.rawValue }
    h.keys.replace(keys)
    return Result.ok.rawValue
}

@c(stagepass_verifier_set_status_list)
public func stagepass_verifier_set_status_list(
    _ v: OpaquePointer?,
    _ jwt: UnsafePointer<CChar>?,
    _ fetchedAt: Int64,
    _ maxAge: Int64
) -> Int32 {
    guard let h = handle(v) else { return Result.invalidArgument.rawValue }
    // 0 is the documented "no age limit" sentinel; a negative or absurd limit is refused: nothing is installed, and
    // (fail closed, as for a NULL document) status checking is on, so a caller ignoring the code gets
    // status_unavailable rather than unchecked tokens.
    if maxAge != 0, (try? VerifierLimits.check(leeway: 0, maxLifetime: 1, statusMaxAge: maxAge)) == nil {
        _ = try? h.verifier.installStatusList("", fetchedAt: fetchedAt == 0 ? cNow() : fetchedAt)
        return Result.invalidConfiguration.rawValue
    }
    guard let text = string(jwt) else {
        // Fail closed: a call without a document still turns status checking on (no list → status_unavailable).
        _ = try? h.verifier.installStatusList("", fetchedAt: fetchedAt == 0 ? cNow() : fetchedAt)
        return Result.invalidArgument.rawValue
    }
    // Surrounding whitespace (a trailing newline from an HTTP body or a file) is not part of the compact JWS.
    let bytes = Array(text.utf8)
    let start = bytes.firstIndex { !isSpace($0) } ?? bytes.count
    let end = (bytes.lastIndex { !isSpace($0) } ?? -1) + 1
    let trimmed = start < end ? String(decoding: bytes[start..<end], as: UTF8.self) : ""
    do {
        // The list is judged as of fetched_at (expiry, iat in the future); verification re-checks exp and age.
        try h.verifier.installStatusList(
            trimmed,
            fetchedAt: fetchedAt == 0 ? cNow() : fetchedAt,
            maxAge: maxAge == 0 ? nil : maxAge
        )
        return Result.ok.rawValue
    } catch {
        return error.code == .superseded ? Result.staleStatusList.rawValue : Result.badStatusList.rawValue
    }
}

private func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }

@c(stagepass_verify)
public func stagepass_verify(
    _ v: OpaquePointer?,
    _ token: UnsafePointer<CChar>?,
    _ tokenLen: Int,
    _ role: UnsafePointer<CChar>?,
    _ stage: UnsafePointer<CChar>?,
    _ pipeline: UnsafePointer<CChar>?,
    _ now: Int64,
    _ claimsOut: UnsafeMutablePointer<CChar>?,
    _ claimsCap: Int,
    _ claimsLen: UnsafeMutablePointer<Int>?,
    _ detailOut: UnsafeMutablePointer<CChar>?,
    _ detailCap: Int
) -> Int32 {
    guard let h = handle(v), let token, tokenLen >= 0 else { return Result.invalidArgument.rawValue }
    let text = String(decoding: UnsafeRawBufferPointer(start: token, count: tokenLen), as: UTF8.self)
    // Invalid UTF-8 would be repaired by String(decoding:); refuse it instead so the bytes verified are the bytes sent.
    guard text.utf8.count == tokenLen else {
        _ = copyOut(Array("token is not UTF-8".utf8), detailOut, detailCap, nil)
        return VerificationErrorCode.malformed.rawValue
    }
    let roles = string(role).map { $0.split(separator: ",").map(String.init) } ?? []
    let req = Requirements(roles: roles, stage: string(stage), pipeline: string(pipeline))
    return verify(h, text, req, nil, now, claimsOut, claimsCap, claimsLen, detailOut, detailCap)
}

/// The one call into the verifier behind both exports: the verdict as a result code, claims or detail copied out.
private func verify(
    _ h: VerifierHandle,
    _ text: String,
    _ req: Requirements,
    _ dpop: DPoPPresentation?,
    _ now: Int64,
    _ claimsOut: UnsafeMutablePointer<CChar>?,
    _ claimsCap: Int,
    _ claimsLen: UnsafeMutablePointer<Int>?,
    _ detailOut: UnsafeMutablePointer<CChar>?,
    _ detailCap: Int
) -> Int32 {
    do {
        let t = try h.verifier.verify(text, requirements: req, dpop: dpop, at: now == 0 ? nil : now)
        return copyOut(t.payload, claimsOut, claimsCap, claimsLen) ? Result.ok.rawValue : Result.bufferTooSmall.rawValue
    } catch {
        _ = copyOut(Array(error.detail.utf8.prefix(max(0, detailCap - 1))), detailOut, detailCap, nil)
        return error.code.rawValue
    }
}

/// `stagepass_verify` for a token presented with the DPoP scheme (RFC 9449 §7.1): `dpop_proof` is the request's
/// `DPoP` header, `method` and `url` the request's. A NULL `dpop_proof` is a bearer presentation (then `method`
/// and `url` are ignored), exactly `stagepass_verify`.
@c(stagepass_verify_dpop)
public func stagepass_verify_dpop(
    _ v: OpaquePointer?,
    _ token: UnsafePointer<CChar>?,
    _ tokenLen: Int,
    _ role: UnsafePointer<CChar>?,
    _ stage: UnsafePointer<CChar>?,
    _ pipeline: UnsafePointer<CChar>?,
    _ dpopProof: UnsafePointer<CChar>?,
    _ method: UnsafePointer<CChar>?,
    _ url: UnsafePointer<CChar>?,
    _ now: Int64,
    _ claimsOut: UnsafeMutablePointer<CChar>?,
    _ claimsCap: Int,
    _ claimsLen: UnsafeMutablePointer<Int>?,
    _ detailOut: UnsafeMutablePointer<CChar>?,
    _ detailCap: Int
) -> Int32 {
    guard let h = handle(v), let token, tokenLen >= 0 else { return Result.invalidArgument.rawValue }
    var presentation: DPoPPresentation?
    if let proof = string(dpopProof) {
        guard let m = string(method), let u = string(url) else { return Result.invalidArgument.rawValue }
        presentation = DPoPPresentation(proof: proof, method: m, url: u)
    }
    let text = String(decoding: UnsafeRawBufferPointer(start: token, count: tokenLen), as: UTF8.self)
    guard text.utf8.count == tokenLen else {
        _ = copyOut(Array("token is not UTF-8".utf8), detailOut, detailCap, nil)
        return VerificationErrorCode.malformed.rawValue
    }
    let roles = string(role).map { $0.split(separator: ",").map(String.init) } ?? []
    let req = Requirements(roles: roles, stage: string(stage), pipeline: string(pipeline))
    return verify(h, text, req, presentation, now, claimsOut, claimsCap, claimsLen, detailOut, detailCap)
}

@c(stagepass_verifier_free)
public func stagepass_verifier_free(_ v: OpaquePointer?) {
    guard let v else { return }
    Unmanaged<VerifierHandle>.fromOpaque(UnsafeRawPointer(v)).release()
}

private func cNow() -> Int64 { Int64(time(nil)) }

extension String {
    fileprivate var trimmingSpaces: String {
        String(self.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}

#if canImport(Glibc)
import Glibc
#endif
