import ArgumentParser
import Foundation
import StagepassJOSE

/// `stagepass status-list`: fetches a status list from the broker, checks its signature against the broker's JWKS,
/// and prints the revoked indices (one per line).
struct StatusListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status-list",
        abstract: "Print the revoked indices of the broker's current status list."
    )
    @Option(help: "Broker base URL.") var broker: String = "http://127.0.0.1:8080"
    @Option(help: "Which list (1 = the first).") var list: Int = 1

    func run() async throws {
        let api = BrokerClient(base: broker)
        let (s1, jwksText) = try await api.getText("/.well-known/jwks.json")
        let (s2, jwt) = try await api.getText("/v1/statuslists/\(list)")
        guard s1 == 200, s2 == 200 else {
            printError("error: cannot fetch the JWKS (\(s1)) or status list \(list) (\(s2)) from \(broker)")
            throw ExitCode(1)
        }
        let parts = jwt.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, let header = try? JSONValue.parse(Base64URL.decode(parts[0])),
            let payload = try? JSONValue.parse(Base64URL.decode(parts[1])),
            header["typ"]?.stringValue == "statuslist+jwt", let kid = header["kid"]?.stringValue,
            let jwks = try? JWKS(jsonString: jwksText), let jwk = jwks.keys.first(where: { $0.kid == kid }),
            let alg = jwk.algorithm, header["alg"]?.stringValue == alg.rawValue,
            let key = try? jwk.publicKey(), let sig = try? Base64URL.decode(parts[2]),
            key.verify(alg, signingInput: Array((parts[0] + "." + parts[1]).utf8), signature: sig)
        else {
            printError("error: the status list is malformed or its signature does not verify against the JWKS")
            throw ExitCode(1)
        }
        guard let bits = payload["status_list"]?["bits"]?.intValue, bits == 1,
            let lst = payload["status_list"]?["lst"]?.stringValue,
            let bytes = try? Zlib.decompress(Base64URL.decode(lst), limit: 1 << 21)
        else {
            printError("error: the status list has no 1-bit lst")
            throw ExitCode(1)
        }
        printError(
            "list \(payload["sub"]?.stringValue ?? "?") iat \(payload["iat"]?.intValue ?? 0) ttl \(payload["ttl"]?.intValue ?? 0)"
        )
        // draft-ietf-oauth-status-list §4.1: entry i is bit i % 8 of byte i / 8, least significant first.
        for (i, b) in bytes.enumerated() where b != 0 {
            for bit in 0..<8 where b & (1 << bit) != 0 { print(i * 8 + bit) }
        }
    }
}
