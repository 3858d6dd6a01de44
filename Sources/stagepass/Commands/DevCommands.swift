import ArgumentParser
import Foundation
import StagepassJOSE

/// `stagepass dev-sign`: sign arbitrary claims with a PEM key (interop tests and local experiments only; the
/// broker signs with its key store).
struct DevSignCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-sign",
        abstract: "Sign claims with a PEM private key (testing aid).",
        shouldDisplay: false
    )

    @Option(help: "PKCS#8 PEM private key file.") var key: String
    @Option(help: "ES256, EdDSA, RS256 or PS256.") var alg: String
    @Option(help: "Claims JSON object.") var claims: String
    @Option(name: .customLong("passphrase-env"), help: "Environment variable holding the key's passphrase.")
    var passphraseEnv: String?
    @Option(help: "typ header value.") var typ: String = "at+jwt"

    func run() throws {
        let algorithm = try JWSAlgorithm(name: alg)
        let pem = try String(contentsOfFile: key, encoding: .utf8)
        let pass = passphraseEnv.flatMap { ProcessInfo.processInfo.environment[$0] }
        let priv = try PrivateKey(pem: pem, passphrase: pass)
        let jwk = try JWK(publicKey: priv.publicKey(), alg: algorithm)
        let payload = try JSONValue.parse(claims)
        guard case .object = payload else { throw ValidationError("--claims must be a JSON object") }
        let token = try JWS.sign(
            claims: payload,
            header: ["typ": .string(typ), "kid": .string(jwk.kid ?? "")],
            key: priv,
            alg: algorithm
        )
        print(token)
    }
}

/// `stagepass dev-jwks`: print the public JWKS of a PEM key.
struct DevJWKSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-jwks",
        abstract: "Print the public JWKS of a PEM key (testing aid).",
        shouldDisplay: false
    )

    @Option(help: "PEM private or public key file.") var key: String
    @Option(help: "Algorithm to publish (default from the key type; RS256 for RSA).") var alg: String?
    @Option(name: .customLong("passphrase-env")) var passphraseEnv: String?

    func run() throws {
        let pem = try String(contentsOfFile: key, encoding: .utf8)
        let pub: PublicKey
        if pem.contains("PUBLIC KEY") {
            pub = try PublicKey(spkiPEM: pem)
        } else {
            pub = try PrivateKey(
                pem: pem,
                passphrase: passphraseEnv.flatMap { ProcessInfo.processInfo.environment[$0] }
            ).publicKey()
        }
        let algorithm: JWSAlgorithm
        if let alg {
            algorithm = try JWSAlgorithm(name: alg)
        } else {
            switch pub.type {
            case .ecP256: algorithm = .ES256
            case .ed25519: algorithm = .EdDSA
            case .rsa: algorithm = .RS256
            }
        }
        print(JWKS(keys: [try JWK(publicKey: pub, alg: algorithm)]).serialized())
    }
}
