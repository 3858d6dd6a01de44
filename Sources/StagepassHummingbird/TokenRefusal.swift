import Hummingbird
import StagepassJOSE

/// A refused request: an RFC 9457 problem (`application/problem+json`) with the status and the `WWW-Authenticate`
/// challenge RFC 6750 §3 and RFC 9449 §7.1 call for.
///
/// | kind | status | OAuth error | when |
/// |---|---|---|---|
/// | `missing_token` | 401 | (none) | no `Authorization`, or a scheme other than Bearer/DPoP |
/// | `invalid_request` | 400 | `invalid_request` | two `Authorization` fields, a token that is not a b64token |
/// | `invalid_token` | 401 | `invalid_token` | the verifier refused the token (`reason` = its code) |
/// | `invalid_dpop_proof` | 401 | `invalid_dpop_proof` | the DPoP proof is missing, invalid, replayed or of another key |
/// | `insufficient_scope` | 403 | `insufficient_scope` | role, stage or pipeline requirement not met |
/// | `status_unavailable` | 503 | (none; `Retry-After`) | revocation cannot be checked: fail closed |
/// | `temporarily_unavailable` | 503 | (none; `Retry-After`) | the DPoP replay cache is full: fail closed |
///
/// `detail` never contains the token.
public struct TokenRefusal: Error, Sendable, HTTPResponseError {
    public enum Kind: String, Sendable {
        case missingToken = "missing_token"
        case invalidRequest = "invalid_request"
        case invalidToken = "invalid_token"
        case invalidDPoPProof = "invalid_dpop_proof"
        case insufficientScope = "insufficient_scope"
        case statusUnavailable = "status_unavailable"
        case temporarilyUnavailable = "temporarily_unavailable"

        /// RFC 6750 §3.1 / RFC 9449 §7.1 error code of the challenge; nil: no challenge at all (503).
        var oauthError: String? {
            switch self {
            case .missingToken: return ""
            case .invalidRequest, .invalidToken, .invalidDPoPProof, .insufficientScope: return rawValue
            case .statusUnavailable, .temporarilyUnavailable: return nil
            }
        }

        var status: HTTPResponse.Status {
            switch self {
            case .missingToken, .invalidToken, .invalidDPoPProof: return .unauthorized
            case .invalidRequest: return .badRequest
            case .insufficientScope: return .forbidden
            case .statusUnavailable, .temporarilyUnavailable: return .serviceUnavailable
            }
        }

        var title: String {
            switch self {
            case .missingToken: return "Access token required"
            case .invalidRequest: return "Malformed credentials"
            case .invalidToken: return "Invalid access token"
            case .invalidDPoPProof: return "Invalid DPoP proof"
            case .insufficientScope: return "Token does not grant this endpoint"
            case .statusUnavailable: return "Revocation status unavailable"
            case .temporarilyUnavailable: return "Try again later"
            }
        }
    }

    public let kind: Kind
    /// A short reason for humans; never the token.
    public let detail: String
    /// The verifier's error code (`expired`, `stage_mismatch`, `dpop_replayed`, …) when the verifier refused.
    public let reason: String?
    /// The challenge to send, nil for a 503.
    public let wwwAuthenticate: String?
    /// Seconds for `Retry-After` (503 only).
    public let retryAfter: Int64?

    public var status: HTTPResponse.Status { kind.status }
    /// The problem `code` (the ``Kind`` raw value).
    public var code: String { kind.rawValue }

    /// The RFC 9457 problem object: `type` `urn:stagepass:problem:<code>`, `title`, `status`, `detail`, `code`, and
    /// `reason` when the verifier named one.
    public var problem: JSONValue {
        var o: [String: JSONValue] = [
            "type": .string("urn:stagepass:problem:" + code), "title": .string(kind.title),
            "status": .int(Int64(status.code)), "detail": .string(detail), "code": .string(code),
        ]
        if let reason { o["reason"] = .string(reason) }
        return .object(o)
    }

    /// The response headers: `Content-Type`, `Cache-Control: no-store` (RFC 6750 §5.3 spirit: nothing about a
    /// credential is cached), `WWW-Authenticate`, `Retry-After`.
    public var headers: HTTPFields {
        var h: HTTPFields = [.contentType: "application/problem+json", .cacheControl: "no-store"]
        if let wwwAuthenticate { h[.wwwAuthenticate] = wwwAuthenticate }
        if let retryAfter { h[.retryAfter] = String(retryAfter) }
        return h
    }

    /// The complete response.
    public func response() -> Response {
        Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: problem.serialized())))
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response { response() }
}
