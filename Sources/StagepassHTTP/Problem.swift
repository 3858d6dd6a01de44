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
        .object([
            "type": .string(type), "title": .string(title), "status": .int(Int64(status.code)),
            "detail": .string(detail), "code": .string(code),
        ])
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response { response() }

    func response() -> Response {
        var headers: HTTPFields = [.contentType: "application/problem+json", .cacheControl: "no-store"]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
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
        case "not_found": (status, title) = (.notFound, "Not found")
        case "conflict": (status, title) = (.conflict, "Conflict")
        default: return internalError
        }
        return Problem(code: e.code, status: status, title: title, detail: e.detail, retryAfter: e.retryAfter)
    }
}
