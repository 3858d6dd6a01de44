import ArgumentParser
import Foundation
import StagepassJOSE

/// `stagepass login`: password, then a TOTP or backup code; saves the MFA session token in a 0600 file.
struct Login: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Sign in to a broker and save the session token.")
    @Option(help: "Broker base URL.") var broker: String = "http://127.0.0.1:8080"
    @Option(help: "User name.") var user: String
    @Flag(help: "Read the password from the first line of standard input.") var passwordStdin = false
    @Option(help: "A TOTP code (6 digits) or a backup code (xxxxx-xxxxx); prompted when absent.") var code: String?
    @Option(help: "Where to save the session token.") var sessionFile: String?

    func run() async throws {
        // Where the session goes is settled before signing in, so a failure to save leaves no live session behind.
        let path = SessionFile.resolve(sessionFile ?? SessionFile.defaultPath())
        try SessionFile.checkWritable(path: path)
        let password = passwordStdin ? try readStdinLine() : try promptSecret("Password for \(user): ")
        let client = BrokerClient(base: broker)
        let (s1, j1) = try await client.post(
            "/v1/auth/password",
            body: .object(["user": .string(user), "password": .string(password)])
        )
        guard s1 == 200, var token = j1?["session_token"]?.stringValue else { throw failProblem(s1, j1) }
        if j1?["needs_factor"]?.boolValue == true {
            var code = self.code
            if code == nil {
                print("Code (TOTP or backup): ", terminator: "")
                code = readLine(strippingNewline: true)
            }
            guard let code, !code.isEmpty else { throw ValidationError("a second-factor code is needed") }
            let (s2, j2) = try await client.post("/v1/auth/factor", token: token, body: proofJSON(code))
            guard s2 == 200, let t = j2?["session_token"]?.stringValue else { throw failProblem(s2, j2) }
            token = t
            let amr = j2?["amr"]?.arrayValue?.compactMap(\.stringValue).joined(separator: ",") ?? ""
            print("signed in as \(user) (amr \(amr))")
        } else {
            print("signed in as \(user) (no second factor required by policy)")
        }
        do {
            try SessionFile.write(path: path, broker: broker, token: token)
        } catch {
            // Nobody would hold this session: end it at the broker.
            let (status, _) = (try? await client.post("/v1/auth/logout", token: token, body: nil)) ?? (0, nil)
            let ended = status == 204 || status == 401
            let outcome =
                ended
                ? "the new session was signed out" : "the new session could NOT be signed out (it expires by itself)"
            throw ValidationError("\(error); \(outcome)")
        }
        print("session saved to \(path)")
    }
}

/// `stagepass logout`: ends the saved session at the broker and deletes the file.
struct Logout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "End the saved session.")
    @Option(help: "The session file.") var sessionFile: String?

    func run() async throws {
        let path = sessionFile ?? SessionFile.defaultPath()
        let saved = try SessionFile.read(path: path)
        let (status, json) = try await BrokerClient(base: saved.broker).post(
            "/v1/auth/logout",
            token: saved.token,
            body: nil
        )
        try? FileManager.default.removeItem(atPath: path)
        guard status == 204 || status == 401 else { throw failProblem(status, json) }
        print(status == 204 ? "signed out" : "the session had already ended")
    }
}
