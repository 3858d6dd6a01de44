import Hummingbird
import StagepassBroker
import StagepassJOSE

/// An RFC 9457 problem: the one shape every error takes on the wire (`application/problem+json`).
///
/// `type` is the stable identifier clients switch on: `urn:stagepass:problem:<code>` (RFC 9457 §3.1.1 allows a URI that
/// is not dereferenceable); `code` repeats the bare code as an extension member. `detail` never carries a secret or
/// says whether an account exists.
public struct Problem: Error, Sendable, HTTPResponseError {
    public var code: String
    public var status: HTTPResponse.Status
    public var title: String
    public var detail: String
    public var retryAfter: Int64?
    /// Extension members (RFC 9457 §3.2), e.g. `max_age` and `acr_values` of an RFC 9470 step-up demand.
    public var extra: [String: JSONValue] = [:]
    /// A `WWW-Authenticate` challenge to send (RFC 9470 §3).
    public var wwwAuthenticate: String?

    public init(code: String, status: HTTPResponse.Status, title: String, detail: String, retryAfter: Int64? = nil) {
        self.code = code
        self.status = status
        self.title = title
        self.detail = detail
        self.retryAfter = retryAfter
    }

    public static let typePrefix = "urn:stagepass:problem:"
    public var type: String { Self.typePrefix + code }

    public var json: JSONValue {
        var o: [String: JSONValue] = [
            "type": .string(type), "title": .string(title), "status": .int(Int64(status.code)),
            "detail": .string(detail), "code": .string(code),
        ]
        for (k, v) in extra where o[k] == nil { o[k] = v }
        return .object(o)
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response { response() }

    func response() -> Response {
        var headers: HTTPFields = [.contentType: "application/problem+json", .cacheControl: "no-store"]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        if let wwwAuthenticate { headers[.wwwAuthenticate] = wwwAuthenticate }
        return Response(
            status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: json.serialized())))
    }

    static func badRequest(_ detail: String) -> Problem {
        Problem(code: "invalid_request", status: .badRequest, title: "Invalid request", detail: detail)
    }

    /// Maps any error to a problem; unknown errors become a bare 500 without internals.
    static func from(_ error: any Error) -> Problem {
        switch error {
        case let p as Problem: return p
        case let e as BrokerError: return from(e)
        case let e as OAuthError: return from(e)
        case let e as HTTPError:
            switch e.status {
            case .notFound:
                return Problem(code: "not_found", status: .notFound, title: "Not found", detail: "no such resource")
            case .methodNotAllowed:
                return Problem(
                    code: "method_not_allowed", status: .methodNotAllowed, title: "Method not allowed",
                    detail: "this resource does not accept that method")
            case .contentTooLarge:
                return Problem(
                    code: "payload_too_large", status: .contentTooLarge, title: "Payload too large",
                    detail: "the request body is larger than allowed")
            default:
                if (400..<500).contains(e.status.code) {
                    return Problem(
                        code: "invalid_request", status: e.status, title: "Invalid request",
                        detail: e.status.reasonPhrase)
                }
                return internalError
            }
        default: return internalError
        }
    }

    /// The human-facing approval, delegation, revocation and admin calls report OAuthErrors as problems; an RFC 9470
    /// step-up demand is a 401 with `max_age` / `acr_values` members and the matching `WWW-Authenticate` challenge.
    static func from(_ e: OAuthError) -> Problem {
        let (status, title): (HTTPResponse.Status, String)
        switch e.error {
        case "not_found": (status, title) = (.notFound, "Not found")
        case "conflict": (status, title) = (.conflict, "Conflict")
        case "forbidden", "access_denied": (status, title) = (.forbidden, "Forbidden")
        case "expired_token": (status, title) = (.gone, "Expired")
        case "invalid_client": (status, title) = (.unauthorized, "Client authentication failed")
        case "insufficient_user_authentication": (status, title) = (.unauthorized, "Fresh second factor required")
        default: (status, title) = (.badRequest, "Request refused")
        }
        var p = Problem(code: e.error, status: status, title: title, detail: e.errorDescription)
        if let m = e.maxAge { p.extra["max_age"] = .int(m) }
        if let a = e.acrValues { p.extra["acr_values"] = .string(a.joined(separator: " ")) }
        if e.error == "insufficient_user_authentication" {
            // RFC 9470 §3.
            var challenge = "Bearer error=\"insufficient_user_authentication\""
            if let m = e.maxAge { challenge += ", max_age=\(m)" }
            if let a = e.acrValues { challenge += ", acr_values=\"\(a.joined(separator: " "))\"" }
            p.wwwAuthenticate = challenge
        }
        return p
    }

    static let internalError = Problem(
        code: "internal", status: .internalServerError, title: "Internal error",
        detail: "the broker could not complete the request")

    static func from(_ e: BrokerError) -> Problem {
        let (status, title): (HTTPResponse.Status, String)
        switch e.code {
        case "invalid_request": (status, title) = (.badRequest, "Invalid request")
        case "invalid_credentials": (status, title) = (.unauthorized, "Sign-in failed")
        case "invalid_factor": (status, title) = (.unauthorized, "Second factor rejected")
        case "factor_replay": (status, title) = (.unauthorized, "Code already used")
        case "factor_not_allowed": (status, title) = (.forbidden, "Factor not accepted by policy")
        case "no_factor": (status, title) = (.conflict, "No such factor")
        case "throttled": (status, title) = (.tooManyRequests, "Too many attempts")
        case "account_locked": (status, title) = (.forbidden, "Account locked")
        case "invalid_session": (status, title) = (.unauthorized, "Session invalid")
        case "mfa_required": (status, title) = (.forbidden, "Second factor required")
        case "step_up_required": (status, title) = (.forbidden, "Fresh factor required")
        case "not_found": (status, title) = (.notFound, "Not found")
        case "conflict": (status, title) = (.conflict, "Conflict")
        default: return internalError
        }
        return Problem(code: e.code, status: status, title: title, detail: e.detail, retryAfter: e.retryAfter)
    }
}
