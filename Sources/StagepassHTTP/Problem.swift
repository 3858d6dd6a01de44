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
            status: status,
            headers: headers,
            body: .init(byteBuffer: ByteBuffer(string: json.serialized()))
        )
    }

    static func badRequest(_ detail: String) -> Problem {
        Problem(code: "invalid_request", status: .badRequest, title: "Invalid request", detail: detail)
    }

    /// Maps any error to a problem; unknown errors become a bare 500 without internals.
    static func from(_ error: any Error) -> Problem {
        switch error {
        case let p as Problem: return p
        case let e as BrokerError: return from(e)
        case let f as StorageFault: return from(BrokerError.storageUnavailable(f))
        case let e as OAuthError: return from(e)
        case let e as HTTPError:
            switch e.status {
            case .notFound:
                return Problem(code: "not_found", status: .notFound, title: "Not found", detail: "no such resource")
            case .methodNotAllowed:
                return Problem(
                    code: "method_not_allowed",
                    status: .methodNotAllowed,
                    title: "Method not allowed",
                    detail: "this resource does not accept that method"
                )
            case .contentTooLarge:
                return Problem(
                    code: "payload_too_large",
                    status: .contentTooLarge,
                    title: "Payload too large",
                    detail: "the request body is larger than allowed"
                )
            default:
                if (400..<500).contains(e.status.code) {
                    return Problem(
                        code: "invalid_request",
                        status: e.status,
                        title: "Invalid request",
                        detail: e.status.reasonPhrase
                    )
                }
                return internalError
            }
        default: return internalError
        }
    }

    /// The human-facing approval, delegation, revocation and admin calls report OAuthErrors as problems; an RFC 9470
    /// step-up demand is a 401 with `max_age` / `acr_values` members and the matching `WWW-Authenticate` challenge.
    static func from(_ e: OAuthError) -> Problem {
        let (status, title) = statusAndTitle(e.kind)
        var p = Problem(
            code: e.error,
            status: status,
            title: title,
            detail: e.errorDescription,
            retryAfter: e.retryAfter
        )
        if let m = e.maxAge { p.extra["max_age"] = .int(m) }
        if let a = e.acrValues { p.extra["acr_values"] = .string(a.joined(separator: " ")) }
        if e.kind == .insufficientUserAuthentication {
            // RFC 9470 §3.
            var challenge = "Bearer error=\"insufficient_user_authentication\""
            if let m = e.maxAge { challenge += ", max_age=\(m)" }
            if let a = e.acrValues { challenge += ", acr_values=\"\(a.joined(separator: " "))\"" }
            p.wwwAuthenticate = challenge
        }
        return p
    }

    /// The status and title of an OAuth error reported as a problem. Exhaustive: a new kind does not compile until
    /// it has a status here.
    static func statusAndTitle(_ kind: OAuthError.Kind) -> (HTTPResponse.Status, String) {
        switch kind {
        case .notFound: (.notFound, "Not found")
        case .conflict: (.conflict, "Conflict")
        case .forbidden, .accessDenied: (.forbidden, "Forbidden")
        case .expiredToken: (.gone, "Expired")
        case .invalidClient: (.unauthorized, "Client authentication failed")
        case .insufficientUserAuthentication: (.unauthorized, "Fresh second factor required")
        case .temporarilyUnavailable: (.serviceUnavailable, "Busy")
        case .invalidRequest, .invalidGrant, .unauthorizedClient, .unsupportedGrantType, .invalidScope,
            .invalidTarget, .authorizationPending, .slowDown, .invalidDPoPProof:
            (.badRequest, "Request refused")
        }
    }

    static let internalError = Problem(
        code: "internal",
        status: .internalServerError,
        title: "Internal error",
        detail: "the broker could not complete the request"
    )

    static func from(_ e: BrokerError) -> Problem {
        guard let (status, title) = statusAndTitle(e.kind) else { return internalError }
        return Problem(code: e.code, status: status, title: title, detail: e.detail, retryAfter: e.retryAfter)
    }

    /// The status and title of a broker error; nil for the kinds that are the broker's own failure (a bare 500
    /// without internals). Exhaustive: a new kind does not compile until it is placed here.
    static func statusAndTitle(_ kind: BrokerError.Kind) -> (HTTPResponse.Status, String)? {
        switch kind {
        case .invalidRequest: (.badRequest, "Invalid request")
        case .invalidCredentials: (.unauthorized, "Sign-in failed")
        case .invalidFactor: (.unauthorized, "Second factor rejected")
        case .factorReplay: (.unauthorized, "Code already used")
        case .factorNotAllowed: (.forbidden, "Factor not accepted by policy")
        case .noFactor: (.conflict, "No such factor")
        case .throttled: (.tooManyRequests, "Too many attempts")
        case .overloaded: (.serviceUnavailable, "Busy")
        case .accountLocked: (.forbidden, "Account locked")
        case .invalidSession: (.unauthorized, "Session invalid")
        case .mfaRequired: (.forbidden, "Second factor required")
        case .stepUpRequired: (.forbidden, "Fresh factor required")
        case .notFound: (.notFound, "Not found")
        case .conflict: (.conflict, "Conflict")
        case .storageUnavailable: (.serviceUnavailable, "Storage unavailable")
        case .masterKey, .internalError: nil
        }
    }
}

extension OAuthError {
    /// The token endpoints' form of a broker refusal that is not the client's fault: a busy broker is
    /// `temporarily_unavailable` (RFC 6749 §4.1.2.1) with the same `Retry-After`; nil for any other error.
    static func tokenEndpoint(_ e: BrokerError) -> OAuthError? {
        e.kind == .overloaded ? .temporarilyUnavailable(retryAfter: e.retryAfter ?? 1) : nil
    }

    /// The HTTP status of this error on the OAuth endpoints (RFC 6749 §5.2): 401 for `invalid_client` (with a
    /// `WWW-Authenticate` challenge), 503 for `temporarily_unavailable` (with `Retry-After`), else 400. Exhaustive,
    /// like the problem mapping.
    var tokenEndpointStatus: HTTPResponse.Status {
        switch kind {
        case .invalidClient: .unauthorized
        case .temporarilyUnavailable: .serviceUnavailable
        case .invalidRequest, .invalidGrant, .unauthorizedClient, .unsupportedGrantType, .invalidScope,
            .invalidTarget, .authorizationPending, .slowDown, .accessDenied, .expiredToken,
            .insufficientUserAuthentication, .notFound, .conflict, .forbidden, .invalidDPoPProof:
            .badRequest
        }
    }

    /// RFC 6749 §5.2 / RFC 8693 §2.2.2 / RFC 8628 §3.5 error response (RFC 9470 members when they apply).
    var tokenEndpointResponse: Response {
        var body: [String: JSONValue] = ["error": .string(error), "error_description": .string(errorDescription)]
        if let m = maxAge { body["max_age"] = .int(m) }
        if let a = acrValues { body["acr_values"] = .string(a.joined(separator: " ")) }
        var headers: HTTPFields = [.contentType: "application/json", .cacheControl: "no-store"]
        let status = tokenEndpointStatus
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        if status == .unauthorized {
            // RFC 6749 §5.2: 401 with a challenge when the client authenticated with the Authorization header.
            headers[.wwwAuthenticate] = "Basic realm=\"stagepass\""
        }
        return Response(
            status: status,
            headers: headers,
            body: .init(byteBuffer: ByteBuffer(string: JSONValue.object(body).serialized()))
        )
    }
}

extension StorageFault {
    /// The OAuth endpoints' answer when the store cannot commit: 503 with `Retry-After` and the body
    /// `{"error":"temporarily_unavailable","error_description":"storage unavailable: disk full; …"}`.
    ///
    /// RFC 6749 §5.2 lists no code for a server that cannot handle the request now; `temporarily_unavailable` is the
    /// code RFC 6749 §4.1.2.1 gives the authorization endpoint for exactly that, and the HTTP status (503, RFC 9110
    /// §15.6.4) with `Retry-After` says the same to a client that ignores the body. Nothing was issued.
    var tokenEndpointResponse: Response {
        let e = BrokerError.storageUnavailable(self)
        let body: [String: JSONValue] = [
            "error": .string("temporarily_unavailable"), "error_description": .string(e.detail),
        ]
        return Response(
            status: .serviceUnavailable,
            headers: [.contentType: "application/json", .cacheControl: "no-store", .retryAfter: String(retryAfter)],
            body: .init(byteBuffer: ByteBuffer(string: JSONValue.object(body).serialized()))
        )
    }
}
