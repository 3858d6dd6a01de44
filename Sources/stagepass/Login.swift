import ArgumentParser
import Foundation
import StagepassBroker
import StagepassJOSE

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The CLI's saved session: `{"broker":…,"token":…}` in a 0600 file.
struct SessionFile {
    static func defaultPath() -> String {
        let env = ProcessInfo.processInfo.environment
        let base =
            env["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? ((env["HOME"] ?? NSHomeDirectory()) as NSString).appendingPathComponent(".config")
        return ((base as NSString).appendingPathComponent("stagepass") as NSString).appendingPathComponent(
            "session.json")
    }

    /// The absolute path of a session file: a relative path (a bare file name included) is resolved against the
    /// current directory.
    static func resolve(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        return (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(path)
    }

    /// Checks, before signing in, that the session file can be written: its directory exists (a missing one is
    /// created mode 0700) and this user can create files in it, and the path is not a directory.
    static func checkWritable(path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) {
            do { try SecretFile.ensurePrivateDirectory(dir) } catch {
                throw ValidationError("cannot create the session file's directory \(dir): \(error)")
            }
        } else if !isDir.boolValue {
            throw ValidationError("cannot save the session in \(path): \(dir) is not a directory")
        }
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            throw ValidationError("cannot save the session in \(path): it is a directory")
        }
        guard access(dir, W_OK | X_OK) == 0 else {
            throw ValidationError("cannot save the session in \(path): \(dir) is not writable")
        }
    }

    /// Writes the file with mode 0600 from its first byte (``SecretFile``), replacing any earlier one.
    static func write(path: String, broker: String, token: String) throws {
        let body = JSONValue.object(["broker": .string(broker), "token": .string(token)]).serialized() + "\n"
        do { try SecretFile.write(Array(body.utf8), to: path) } catch {
            throw ValidationError("cannot write \(path): \(error)")
        }
    }

    /// Reads a saved session; a file that group or others can read is refused (``SecretFile/read(_:)``).
    static func read(path: String) throws -> (broker: String, token: String) {
        let bytes: [UInt8]?
        do { bytes = try SecretFile.read(path) } catch { throw ValidationError("refusing the session file: \(error)") }
        guard let bytes, let v = try? JSONValue.parse(bytes), let b = v["broker"]?.stringValue,
            let t = v["token"]?.stringValue
        else { throw ValidationError("no session in \(path); run stagepass login") }
        return (b, t)
    }
}

/// A small JSON-over-HTTP client for the broker API.
struct BrokerClient {
    let base: String

    func post(_ path: String, token: String? = nil, body: JSONValue?) async throws -> (Int, JSONValue?) {
        try await send("POST", path, token: token, body: body)
    }

    func send(_ method: String, _ path: String, token: String?, body: JSONValue?) async throws -> (Int, JSONValue?) {
        var req = URLRequest(url: try url(path))
        req.httpMethod = method
        if let token { req.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            req.setValue("application/json", forHTTPHeaderField: "Content-Type")
            req.httpBody = Data(body.serialized().utf8)
        }
        let (status, data) = try await perform(req)
        return (status, data.isEmpty ? nil : try? JSONValue.parse(Array(data)))
    }

    func url(_ path: String) throws -> URL {
        guard let url = URL(string: base.hasSuffix("/") ? String(base.dropLast()) + path : base + path) else {
            throw ValidationError("bad broker URL \(base)")
        }
        return url
    }

    /// Sends a request and returns the status and body.
    func perform(_ req: URLRequest) async throws -> (Int, Data) {
        let (data, response): (Data, URLResponse) = try await withCheckedThrowingContinuation { cont in
            URLSession.shared.dataTask(with: req) { d, r, e in
                if let e {
                    cont.resume(throwing: e)
                } else if let r {
                    cont.resume(returning: (d ?? Data(), r))
                } else {
                    cont.resume(throwing: ValidationError("no response from \(base)"))
                }
            }.resume()
        }
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
    }

    /// An `application/x-www-form-urlencoded` POST (the OAuth endpoints), optionally with HTTP Basic client
    /// authentication (RFC 6749 §2.3.1: id and secret form-encoded first).
    func postForm(_ path: String, _ fields: [(String, String)], basic: (String, String)? = nil) async throws
        -> (Int, JSONValue?)
    {
        var req = URLRequest(url: try url(path))
        req.httpMethod = "POST"
        req.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
        if let (id, secret) = basic {
            let cred = Data((formEncode(id) + ":" + formEncode(secret)).utf8).base64EncodedString()
            req.setValue("Basic \(cred)", forHTTPHeaderField: "Authorization")
        }
        req.httpBody = Data(fields.map { formEncode($0.0) + "=" + formEncode($0.1) }.joined(separator: "&").utf8)
        let (status, data) = try await perform(req)
        return (status, data.isEmpty ? nil : try? JSONValue.parse(Array(data)))
    }

    /// A GET returning the raw body.
    func getText(_ path: String, token: String? = nil) async throws -> (Int, String) {
        var req = URLRequest(url: try url(path))
        if let token { req.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let (status, data) = try await perform(req)
        return (status, String(decoding: data, as: UTF8.self))
    }
}

/// RFC 6749 Appendix B form encoding: unreserved characters stay, everything else is percent-encoded.
func formEncode(_ s: String) -> String {
    var out = ""
    for b in s.utf8 {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            out.unicodeScalars.append(Unicode.Scalar(b))
        default: out += String(format: "%%%02X", b)
        }
    }
    return out
}

/// Prints a refusal (``reportRefusal(_:_:)``) and gives the exit code of a broker error.
func failProblem(_ status: Int, _ json: JSONValue?) -> ExitCode {
    reportRefusal(status, json)
    return ExitCode(2)
}

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
            body: .object(["user": .string(user), "password": .string(password)]))
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
                ended ? "the new session was signed out" : "the new session could NOT be signed out (it expires by itself)"
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
            "/v1/auth/logout", token: saved.token,
            body: nil)
        try? FileManager.default.removeItem(atPath: path)
        guard status == 204 || status == 401 else { throw failProblem(status, json) }
        print(status == 204 ? "signed out" : "the session had already ended")
    }
}
