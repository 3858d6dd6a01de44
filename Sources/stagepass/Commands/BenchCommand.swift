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

    func run() throws {
        var rows = [JSONValue]()
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
        }
        if json {
            print(JSONValue.object(["bench": .string("verify"), "results": .array(rows)]).serialized())
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
        }
    }
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
