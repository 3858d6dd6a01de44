import ArgumentParser
import Foundation
import StagepassBroker
import StagepassJOSE

/// `--dpop`, `--dpop-key-file`, `--dpop-alg` of `stagepass request` and `stagepass token`: bind the token to a key
/// (DPoP, RFC 9449). The key is generated for this run and held in memory; it is written to disk only when
/// `--dpop-key-file` names a file (PKCS#8 PEM, mode 0600), which `stagepass dpop-proof` then signs proofs with.
struct DPoPOptions: ParsableArguments {
    @Flag(
        name: .customLong("dpop"),
        help: "Bind the token to a fresh per-run key held in memory (DPoP); see --dpop-key-file to keep the key."
    )
    var enabled = false
    @Option(
        name: .customLong("dpop-key-file"),
        help: "Bind the token (implies --dpop) and write the per-run key here (mode 0600) for `stagepass dpop-proof`."
    )
    var keyFile: String?
    @Option(name: .customLong("dpop-alg"), help: "The per-run key's algorithm: ES256 or EdDSA.")
    var alg: String = "ES256"

    func validate() throws {
        guard let a = JWSAlgorithm(rawValue: alg), DPoPProof.algorithms.contains(a) else {
            throw ValidationError("--dpop-alg must be ES256 or EdDSA")
        }
    }

    /// The per-run key, or nil when the token is not to be bound. Written to `--dpop-key-file` when given.
    func makeKey() throws -> PrivateKey? {
        guard enabled || keyFile != nil else { return nil }
        let key = try PrivateKey.generate(for: JWSAlgorithm(name: alg))
        if let keyFile {
            do {
                try SecretFile.write(Array(try key.pkcs8PEM(passphrase: nil).utf8), to: keyFile, replace: true)
            } catch {
                throw ValidationError("cannot write --dpop-key-file \(keyFile): \(error)")
            }
        } else {
            printError("note: the DPoP key is held in memory only; without --dpop-key-file no later proof can be made")
        }
        return key
    }
}

/// The `DPoP` header for a token request to `base` (RFC 9449 §4.2: htm POST, htu the token endpoint).
func tokenRequestProof(_ key: PrivateKey?, base: String) throws -> [(String, String)] {
    guard let key else { return [] }
    let root = base.hasSuffix("/") ? String(base.dropLast()) : base
    let proof = try DPoPProof.make(
        key: key,
        method: "POST",
        url: root + "/v1/token",
        issuedAt: Int64(Date().timeIntervalSince1970)
    )
    return [("DPoP", proof)]
}
