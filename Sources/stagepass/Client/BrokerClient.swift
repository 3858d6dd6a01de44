import ArgumentParser
import Foundation
import StagepassBroker
import StagepassJOSE

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

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
    func postForm(
        _ path: String,
        _ fields: [(String, String)],
        basic: (String, String)? = nil,
        headers: [(String, String)] = []
    ) async throws
        -> (Int, JSONValue?)
    {
        var req = URLRequest(url: try url(path))
        req.httpMethod = "POST"
        req.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
        for (name, value) in headers { req.setValue(value, forHTTPHeaderField: name) }
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

/// `{"method":"totp"|"backup","code":…}` for a typed code (the broker's own rule tells the two apart).
func proofJSON(_ code: String) -> JSONValue {
    .object(["method": .string(FactorProof.code(code).kind.rawValue), "code": .string(code)])
}
