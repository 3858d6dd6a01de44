import ArgumentParser
import Foundation
import StagepassBroker
import StagepassJOSE

/// `stagepass dpop-proof`: prints a fresh DPoP proof (RFC 9449 §4.2) for one call to a deploy endpoint with a
/// DPoP-bound token, signed by the key `stagepass request --dpop-key-file` or `stagepass token --dpop-key-file`
/// wrote:
///
/// ```sh
/// curl -H "Authorization: DPoP $T" -H "DPoP: $(stagepass dpop-proof --method POST --url $URL \
///      --token-file t.jwt --dpop-key-file dpop.pem)" -X POST "$URL"
/// ```
struct DPoPProofCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dpop-proof",
        abstract: "Print a fresh DPoP proof for one request with a DPoP-bound token.",
        discussion: """
            Each proof is good for one request (a new jti each time) to that method and URL, for about a minute. \
            The key file must be readable by its owner only (mode 0600), as --dpop-key-file writes it. \
            Exit status: 0 proof printed; 2 usage or configuration error.
            """
    )
    @Option(help: "The request's HTTP method (htm), e.g. POST.") var method: String
    @Option(help: "The request's URL (htu; query and fragment are left out).") var url: String
    @Option(name: .customLong("token-file"), help: "File holding the access token (for ath).") var tokenFile: String
    @Option(
        name: .customLong("dpop-key-file"),
        help: "The per-run key (default: $STAGEPASS_DPOP_KEY_FILE)."
    )
    var keyFile: String?

    func validate() throws {
        guard !method.isEmpty, method.allSatisfy({ $0.isLetter && $0.isASCII }) else {
            throw ValidationError("--method must be an HTTP method such as GET or POST")
        }
        guard url.hasPrefix("https://") || url.hasPrefix("http://") else {
            throw ValidationError("--url must be an absolute http(s) URL")
        }
    }

    func run() throws {
        guard let path = keyFile ?? ProcessInfo.processInfo.environment["STAGEPASS_DPOP_KEY_FILE"], !path.isEmpty
        else {
            throw ValidationError("no key: pass --dpop-key-file (written by stagepass request/token --dpop-key-file)")
        }
        let key: PrivateKey
        do {
            guard let pem = try SecretFile.read(path) else { throw ValidationError("\(path) does not exist") }
            key = try PrivateKey(pem: String(decoding: pem, as: UTF8.self))
        } catch let e as ValidationError {
            throw e
        } catch {
            throw ValidationError("cannot use the key \(path): \(error)")
        }
        guard let tokenBytes = FileManager.default.contents(atPath: tokenFile) else {
            throw ValidationError("cannot read --token-file \(tokenFile)")
        }
        let token = String(decoding: tokenBytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw ValidationError("--token-file \(tokenFile) is empty") }
        do {
            print(
                try DPoPProof.make(
                    key: key,
                    method: method,
                    url: url,
                    accessToken: token,
                    issuedAt: Int64(Date().timeIntervalSince1970)
                )
            )
        } catch {
            throw ValidationError("cannot sign a proof with \(path): \(error)")
        }
    }
}
