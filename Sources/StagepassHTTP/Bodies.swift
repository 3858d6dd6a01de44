import Foundation
import Hummingbird
import StagepassBroker
import StagepassJOSE

/// A JSON response that is never cached.
func json(_ status: HTTPResponse.Status, _ object: [String: JSONValue]) -> Response {
    Response(
        status: status,
        headers: [.contentType: "application/json", .cacheControl: "no-store"],
        body: .init(byteBuffer: ByteBuffer(string: JSONValue.object(object).serialized()))
    )
}

/// A request body parsed as one strict JSON object, with typed field accessors that fail as 400 problems.
struct JSONBody: Sendable {
    let fields: [String: JSONValue]

    init(_ request: Request, _ options: HTTPOptions, allowEmpty: Bool = false) async throws {
        var request = request
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: options.maxBodyBytes) } catch {
            throw Problem(
                code: "payload_too_large",
                status: .contentTooLarge,
                title: "Payload too large",
                detail: "the request body is larger than \(options.maxBodyBytes) bytes"
            )
        }
        if buffer.readableBytes == 0 && allowEmpty {
            fields = [:]
            return
        }
        if let ct = request.headers[.contentType], !ct.lowercased().hasPrefix("application/json") {
            throw Problem(
                code: "unsupported_media_type",
                status: .unsupportedMediaType,
                title: "Unsupported media type",
                detail: "send application/json"
            )
        }
        let bytes = Array(buffer.readableBytesView)
        guard let value = try? JSONValue.parse(bytes, maxDepth: 8), let obj = value.objectValue else {
            throw Problem.badRequest("the body must be one JSON object")
        }
        fields = obj
    }

    func string(_ key: String, max: Int) throws -> String {
        guard let v = fields[key] else { throw Problem.badRequest("missing field '\(key)'") }
        guard let s = v.stringValue else { throw Problem.badRequest("field '\(key)' must be a string") }
        guard !s.isEmpty, s.utf8.count <= max else { throw Problem.badRequest("field '\(key)' is empty or too long") }
        return s
    }

    /// `{"method":"totp"|"backup","code":"…"}`.
    func proof() throws -> FactorProof {
        let method = try string("method", max: 16)
        let code = try string("code", max: 32)
        switch method {
        case "totp": return .totp(code)
        case "backup": return .backupCode(code)
        default: throw Problem.badRequest("method must be 'totp' or 'backup'")
        }
    }
}

/// An `application/x-www-form-urlencoded` body (RFC 6749 §3.2, Appendix B). Parameters sent more than once are
/// refused (RFC 6749 §3.1, §3.2: "MUST NOT be included more than once").
struct FormBody {
    let fields: [String: String]

    init(_ request: Request, _ options: HTTPOptions) async throws {
        var request = request
        guard let ct = request.headers[.contentType],
            ct.lowercased().hasPrefix("application/x-www-form-urlencoded")
        else { throw OAuthError.invalidRequest("send application/x-www-form-urlencoded") }
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: options.maxBodyBytes) } catch {
            throw OAuthError.invalidRequest("the request body is larger than \(options.maxBodyBytes) bytes")
        }
        var out: [String: String] = [:]
        let text = String(decoding: buffer.readableBytesView, as: UTF8.self)
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let k = Self.decode(String(parts[0])), let v = Self.decode(parts.count > 1 ? String(parts[1]) : "")
            else { throw OAuthError.invalidRequest("malformed form encoding") }
            guard out[k] == nil else { throw OAuthError.invalidRequest("parameter \(k.prefix(40)) is repeated") }
            out[k] = v
        }
        fields = out
    }

    /// Form decoding: `+` is a space, then percent-decoding (UTF-8).
    static func decode(_ s: String) -> String? {
        s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    func required(_ key: String) throws -> String {
        guard let v = fields[key], !v.isEmpty else { throw OAuthError.invalidRequest("missing parameter \(key)") }
        guard v.utf8.count <= 4096 else { throw OAuthError.invalidRequest("parameter \(key) is too long") }
        return v
    }
}
