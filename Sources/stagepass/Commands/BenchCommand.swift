import ArgumentParser
import Foundation
import StagepassJOSE
import StagepassVerify

/// `stagepass bench`: throughput measurements as ratios against a baseline measured in the same run.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks (ratios against raw OpenSSL in the same run).",
        subcommands: [BenchVerify.self]
    )
}

struct BenchVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract:
            "Single-thread full verifications/s vs raw OpenSSL EVP verifications/s of the same signatures, and the cached path."
    )

    @Flag(help: "Print JSON.") var json = false
    @Option(help: "Seconds to run each measurement.") var seconds: Double = 1.0
    @Option(help: "Algorithms to measure.") var alg: [String] = ["ES256", "EdDSA", "RS256"]
    @Flag(
        name: .customLong("no-dpop"),
        help: "Leave out the DPoP-bound measurement (token + proof vs two raw OpenSSL verifications)."
    )
    var noDPoP = false

    func run() throws {
        var rows = [JSONValue]()
        var dpopRows = [JSONValue]()
        for name in alg {
            let a = try JWSAlgorithm(name: name)
            let key = try PrivateKey.generate(for: a, rsaBits: 2048)
            let pub = try key.publicKey()
            let jwk = try JWK(publicKey: pub, alg: a)
            let now: Int64 = 1_900_000_000
            let claims: JSONValue = .object([
                "iss": .string("https://stagepass.example"), "sub": .string("alice"), "aud": .string("deploy-api"),
                "exp": .int(now + 300), "iat": .int(now), "nbf": .int(now),
                "jti": .string("01JD3Y6Z8Q4W9T2N5K7M3V1XCB"),
                "client_id": .string("acme/web-deploy"), "role": .string("deployer"), "stage": .string("production"),
                "amr": .array([.string("pwd"), .string("hwk")]), "auth_time": .int(now - 60),
                "sid": .string("s_4b7e2c"),
                "status": .object([
                    "status_list": .object([
                        "idx": .int(4711), "uri": .string("https://stagepass.example/statuslists/1"),
                    ])
                ]),
            ])
            let token = try JWS.sign(
                claims: claims,
                header: ["typ": .string("at+jwt"), "kid": .string(jwk.kid ?? "")],
                key: key,
                alg: a
            )
            let parts = token.split(separator: ".")
            let input = Array((parts[0] + "." + parts[1]).utf8)
            let sig = try Base64URL.decode(String(parts[2]))
            // Baseline: OpenSSL EVP verify of the same signature (DER for ECDSA, as OpenSSL takes it).
            let der: [UInt8]? = a == .ES256 ? ecdsaSignatureDER(fromRaw: sig) : nil
            let rawBody = {
                if let der {
                    _ = pub.verifyECDSADER(signingInput: input, der: der)
                } else {
                    _ = pub.verify(a, signingInput: input, signature: sig)
                }
            }
            let keys = StaticKeySource(KeySet(jwks: JWKS(keys: [jwk])))
            let cfg = try VerifierConfiguration(
                issuer: "https://stagepass.example",
                audiences: ["deploy-api"],
                cacheCapacity: 0
            )
            let full = Verifier(configuration: cfg, keys: keys)
            var cachedCfg = cfg
            cachedCfg.cacheCapacity = 1024
            let cached = Verifier(configuration: cachedCfg, keys: keys)
            let req = Requirements(roles: ["deployer"], stage: "production", pipeline: "acme/*")
            guard (try? full.verify(token, requirements: req, at: now + 10)) != nil else {
                throw ValidationError("bench token did not verify")
            }
            // Raw and full run interleaved in short slices, so background load (other builds on a shared machine)
            // falls on both alike instead of on whichever ran while it lasted.
            let (raw, fullRate) = measureInterleaved(seconds, rawBody) {
                _ = try? full.verify(token, requirements: req, at: now + 10)
            }
            let cachedRate = measure(seconds) { _ = try? cached.verify(token, requirements: req, at: now + 10) }
            rows.append(
                .object([
                    "alg": .string(name), "raw_openssl_per_s": .int(Int64(raw)),
                    "full_verify_per_s": .int(Int64(fullRate)),
                    "ratio": .double((fullRate / raw * 1000).rounded() / 1000), "cached_per_s": .int(Int64(cachedRate)),
                    "token_bytes": .int(Int64(token.utf8.count)),
                ])
            )
            if !noDPoP {
                dpopRows.append(try benchDPoP(alg: a, key: key, jwk: jwk, claims: claims, now: now))
            }
        }
        if json {
            print(
                JSONValue.object([
                    "bench": .string("verify"), "results": .array(rows), "dpop": .array(dpopRows),
                ]).serialized()
            )
        } else {
            print("alg     raw OpenSSL/s   full verify/s   ratio   cached/s")
            for r in rows {
                let cols = [
                    r["alg"]?.stringValue ?? "", "\(r["raw_openssl_per_s"]?.intValue ?? 0)",
                    "\(r["full_verify_per_s"]?.intValue ?? 0)",
                    "\(r["ratio"].map { if case .double(let d) = $0 { return d } else { return 0 } } ?? 0)",
                    "\(r["cached_per_s"]?.intValue ?? 0)",
                ]
                print(
                    cols[0].padding(toLength: 8, withPad: " ", startingAt: 0)
                        + cols[1].padding(toLength: 16, withPad: " ", startingAt: 0)
                        + cols[2].padding(toLength: 16, withPad: " ", startingAt: 0)
                        + cols[3].padding(toLength: 8, withPad: " ", startingAt: 0) + cols[4]
                )
            }
            if !dpopRows.isEmpty {
                print("")
                print("DPoP    proof   2× raw OpenSSL/s   token+proof/s   ratio   cached token+proof/s   ratio")
                for r in dpopRows {
                    func d(_ k: String) -> String {
                        r[k].map { if case .double(let x) = $0 { return "\(x)" } else { return "" } } ?? ""
                    }
                    print(
                        (r["alg"]?.stringValue ?? "").padding(toLength: 8, withPad: " ", startingAt: 0)
                            + (r["proof_alg"]?.stringValue ?? "").padding(toLength: 8, withPad: " ", startingAt: 0)
                            + "\(r["raw_pair_per_s"]?.intValue ?? 0)".padding(toLength: 19, withPad: " ", startingAt: 0)
                            + "\(r["dpop_verify_per_s"]?.intValue ?? 0)".padding(
                                toLength: 16,
                                withPad: " ",
                                startingAt: 0
                            )
                            + d("ratio").padding(toLength: 8, withPad: " ", startingAt: 0)
                            + "\(r["dpop_cached_per_s"]?.intValue ?? 0)".padding(
                                toLength: 23,
                                withPad: " ",
                                startingAt: 0
                            )
                            + d("cached_ratio")
                    )
                }
            }
        }
    }

    /// A DPoP-bound verification (token signature, claims, proof signature, proof checks, replay record) against
    /// two raw OpenSSL verifications of the same two signatures, interleaved in the same run. Every verification gets
    /// a proof of its own (a new jti; signed before timing starts), as a deploy endpoint sees. The proof key is
    /// ES256 unless the token is EdDSA (then EdDSA): the algorithms proofs may use.
    func benchDPoP(
        alg a: JWSAlgorithm,
        key: PrivateKey,
        jwk: JWK,
        claims: JSONValue,
        now: Int64
    ) throws -> JSONValue {
        let proofAlg: JWSAlgorithm = a == .EdDSA ? .EdDSA : .ES256
        let proofKey = try PrivateKey.generate(for: proofAlg)
        let proofPub = try proofKey.publicKey()
        let jkt = try JWK(publicKey: proofPub, alg: nil).thumbprint()
        var c = claims.objectValue ?? [:]
        c["cnf"] = .object(["jkt": .string(jkt)])
        let token = try JWS.sign(
            claims: .object(c),
            header: ["typ": .string("at+jwt"), "kid": .string(jwk.kid ?? "")],
            key: key,
            alg: a
        )
        let url = "https://deploy.example/api/deploy"
        // Enough proofs for the run at well over the expected rate; each is used once.
        let count = max(512, Int(seconds * 6000))
        var proofs = [String]()
        proofs.reserveCapacity(count)
        for i in 0..<count {
            proofs.append(
                try DPoPProof.make(
                    key: proofKey,
                    method: "POST",
                    url: url,
                    accessToken: token,
                    issuedAt: now,
                    jti: "bench-\(i)"
                )
            )
        }
        func split(_ jws: String) throws -> ([UInt8], [UInt8]) {
            let p = jws.split(separator: ".")
            return (Array((p[0] + "." + p[1]).utf8), try Base64URL.decode(String(p[2])))
        }
        let (tokenInput, tokenSig) = try split(token)
        let (proofInput, proofSig) = try split(proofs[0])
        let pub = try key.publicKey()
        let tokenDER = a == .ES256 ? ecdsaSignatureDER(fromRaw: tokenSig) : nil
        let proofDER = proofAlg == .ES256 ? ecdsaSignatureDER(fromRaw: proofSig) : nil
        let rawPair = {
            if let tokenDER {
                _ = pub.verifyECDSADER(signingInput: tokenInput, der: tokenDER)
            } else {
                _ = pub.verify(a, signingInput: tokenInput, signature: tokenSig)
            }
            if let proofDER {
                _ = proofPub.verifyECDSADER(signingInput: proofInput, der: proofDER)
            } else {
                _ = proofPub.verify(proofAlg, signingInput: proofInput, signature: proofSig)
            }
        }
        let keys = StaticKeySource(KeySet(jwks: JWKS(keys: [jwk])))
        func verifier(cache: Int) throws -> Verifier {
            Verifier(
                configuration: try VerifierConfiguration(
                    issuer: "https://stagepass.example",
                    audiences: ["deploy-api"],
                    cacheCapacity: cache,
                    dpopReplayCapacity: count + 1
                ),
                keys: keys
            )
        }
        let req = Requirements(roles: ["deployer"], stage: "production", pipeline: "acme/*")
        let check = try verifier(cache: 0)
        guard
            (try? check.verify(
                token,
                requirements: req,
                dpop: .init(proof: proofs[0], method: "POST", url: url),
                at: now
            ))
                != nil
        else { throw ValidationError("bench DPoP token did not verify") }
        func run(_ v: Verifier) -> (Double, Double) {
            var next = 0
            var failed = 0
            let rates = measureCounted(count, rawPair) {
                do {
                    _ = try v.verify(
                        token,
                        requirements: req,
                        dpop: .init(proof: proofs[next], method: "POST", url: url),
                        at: now
                    )
                } catch {
                    failed += 1
                }
                next += 1
            }
            return failed == 0 ? rates : (rates.0, 0)
        }
        let (raw, full) = run(try verifier(cache: 0))
        let (rawCached, cached) = run(try verifier(cache: 1024))
        func ratio(_ x: Double, _ y: Double) -> JSONValue { .double((x / y * 1000).rounded() / 1000) }
        return .object([
            "alg": .string(a.rawValue), "proof_alg": .string(proofAlg.rawValue),
            "raw_pair_per_s": .int(Int64(raw)), "dpop_verify_per_s": .int(Int64(full)), "ratio": ratio(full, raw),
            "dpop_cached_per_s": .int(Int64(cached)), "cached_ratio": ratio(cached, rawCached),
            "proof_bytes": .int(Int64(proofs[0].utf8.count)),
        ])
    }
}

/// Runs `a` and `b` alternately, 16 calls at a time, `count` calls of each (`b` may use each call's index once), and
/// returns the calls per second of each over its own accumulated time.
func measureCounted(_ count: Int, _ a: () -> Void, _ b: () -> Void) -> (Double, Double) {
    for _ in 0..<64 { a() }  // warm-up of the baseline; `b`'s calls are all measured (each is single-use)
    var ta: UInt64 = 0
    var tb: UInt64 = 0
    var done = 0
    while done < count {
        let n = min(16, count - done)
        let t0 = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<n { a() }
        let t1 = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<n { b() }
        let t2 = DispatchTime.now().uptimeNanoseconds
        ta += t1 - t0
        tb += t2 - t1
        done += n
    }
    return (Double(count) / (Double(ta) / 1e9), Double(count) / (Double(tb) / 1e9))
}

/// Runs `a` and `b` alternately, `slice` calls at a time, until each has had about `seconds`, and returns the calls
/// per second of each (each rate over its own accumulated time).
func measureInterleaved(_ seconds: Double, slice: Int = 16, _ a: () -> Void, _ b: () -> Void) -> (Double, Double) {
    for _ in 0..<200 {
        a()
        b()
    }  // warm-up
    var n = 0
    var ta: UInt64 = 0
    var tb: UInt64 = 0
    let budget = UInt64(seconds * 1e9)
    while ta < budget || tb < budget {
        let t0 = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<slice { a() }
        let t1 = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<slice { b() }
        let t2 = DispatchTime.now().uptimeNanoseconds
        ta += t1 - t0
        tb += t2 - t1
        n += slice
    }
    return (Double(n) / (Double(ta) / 1e9), Double(n) / (Double(tb) / 1e9))
}

/// Runs `body` repeatedly for about `seconds` and returns calls per second.
func measure(_ seconds: Double, _ body: () -> Void) -> Double {
    for _ in 0..<200 { body() }  // warm-up
    var n = 0
    let start = DispatchTime.now().uptimeNanoseconds
    let end = start + UInt64(seconds * 1e9)
    var t = start
    while t < end {
        for _ in 0..<64 { body() }
        n += 64
        t = DispatchTime.now().uptimeNanoseconds
    }
    return Double(n) / (Double(t - start) / 1e9)
}
