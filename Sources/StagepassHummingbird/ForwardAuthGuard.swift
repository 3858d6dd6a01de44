import Hummingbird
import StagepassJOSE
import StagepassVerify

/// Which proxy headers name the original request (the one the client sent to the proxy). The guard trusts exactly
/// one set, chosen by its operator; the others are ignored.
public enum ForwardedHeaderSet: String, Sendable, CaseIterable {
    /// nginx `auth_request`: `X-Original-Method` and `X-Original-URI` (path and query), with `X-Forwarded-Proto` and
    /// `X-Forwarded-Host` for the origin (set by `proxy_set_header` in the auth location).
    case nginx
    /// Traefik `forwardAuth` and Caddy `forward_auth`: `X-Forwarded-Method`, `X-Forwarded-Proto`,
    /// `X-Forwarded-Host` and `X-Forwarded-Uri`.
    case forwarded
}

/// The original request as the proxy describes it.
public struct OriginalRequest: Sendable, Equatable {
    public let method: String
    /// `scheme://host[:port]/path?query`.
    public let url: String
}

/// `stagepass guard`: answers nginx `auth_request` and Traefik/Caddy forward-auth subrequests with the verdict of a
/// ``TokenGate`` (Specs/guard.md, "HTTP contract").
///
/// - `/auth` (any method): 200 with `X-Stagepass-Subject`, `-Role`, `-Stage`, `-Run`, `-Client`, `-Actor`,
///   `-Commit`, `-Token-Id`, `-Expires` when the token passes; the ``TokenRefusal`` otherwise (401/403 with
///   `WWW-Authenticate`, 400 for malformed credentials or missing proxy headers, 503 when revocation cannot be
///   checked).
/// - `/healthz`: 200 while the process runs. `/readyz`: 200 once the JWKS (and the status list, when configured) is
///   held, 503 before.
/// - Anything else: 404.
public struct ForwardAuthGuard: HTTPResponder, Sendable {
    public typealias Context = BasicRequestContext

    public let gate: TokenGate
    /// The proxy headers that name the original request.
    public let trusted: ForwardedHeaderSet
    /// `scheme://host[:port]` clients use; when set it replaces the forwarded proto and host in the DPoP `htu`.
    public let publicOrigin: String?
    private let ready: @Sendable () -> Bool

    public init(
        gate: TokenGate,
        trusted: ForwardedHeaderSet,
        publicOrigin: String? = nil,
        ready: @escaping @Sendable () -> Bool = { true }
    ) {
        self.gate = gate
        self.trusted = trusted
        self.publicOrigin = publicOrigin.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        self.ready = ready
    }

    public func respond(to request: Request, context: BasicRequestContext) async throws -> Response {
        switch request.uri.path {
        case "/auth": return answer(request)
        case "/healthz": return Response(status: .ok, headers: [.cacheControl: "no-store"])
        case "/readyz":
            return Response(status: ready() ? .ok : .serviceUnavailable, headers: [.cacheControl: "no-store"])
        default: return Response(status: .notFound, headers: [.cacheControl: "no-store"])
        }
    }

    /// The verdict for one subrequest.
    public func answer(_ request: Request, at: Int64? = nil) -> Response {
        let original: OriginalRequest
        switch originalRequest(request.headers) {
        case .success(let o): original = o
        case .failure(let refusal): return refusal.response()
        }
        let result = gate.check(
            authorization: request.headers[values: .authorization],
            dpop: request.headers[values: .dpop],
            method: original.method,
            url: original.url,
            at: at
        )
        switch result {
        case .success(let token): return Response(status: .ok, headers: Self.identityHeaders(token))
        case .failure(let refusal): return refusal.response()
        }
    }

    /// The original method and URL from the trusted header set. Each header must appear exactly once: a missing or
    /// repeated one is a proxy misconfiguration (or a client trying to smuggle one through), answered 400.
    public func originalRequest(_ headers: HTTPFields) -> Result<OriginalRequest, TokenRefusal> {
        let names: (method: String, uri: String, proto: String, host: String)
        switch trusted {
        case .nginx: names = ("X-Original-Method", "X-Original-URI", "X-Forwarded-Proto", "X-Forwarded-Host")
        case .forwarded: names = ("X-Forwarded-Method", "X-Forwarded-Uri", "X-Forwarded-Proto", "X-Forwarded-Host")
        }
        func one(_ name: String) -> Result<String, TokenRefusal> {
            guard let field = FieldName(name) else { return .failure(bad("\(name) is not a field name")) }
            let values = headers[values: field]
            guard values.count == 1, let v = values.first, !v.isEmpty else {
                return .failure(
                    bad(values.isEmpty ? "the proxy sent no \(name) header" : "the proxy sent \(name) more than once")
                )
            }
            return .success(v)
        }
        do throws(TokenRefusal) {
            let method = try one(names.method).get()
            // RFC 9110 §9.1: a method is a token.
            guard method.utf8.allSatisfy(isTokenChar) else { throw bad("\(names.method) is not an HTTP method") }
            let uri = try one(names.uri).get()
            guard uri.hasPrefix("/"), uri.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw bad("\(names.uri) is not an origin-form request target")
            }
            let origin: String
            if let publicOrigin {
                origin = publicOrigin
            } else {
                let proto = try one(names.proto).get().lowercased()
                guard proto == "http" || proto == "https" else { throw bad("\(names.proto) is not http or https") }
                let host = try one(names.host).get()
                // RFC 9110 §7.2: uri-host [ ":" port ]; no path, user info or spaces.
                guard
                    host.utf8.allSatisfy({
                        isTokenChar($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "]")
                    }),
                    !host.contains("@")
                else { throw bad("\(names.host) is not a host") }
                origin = "\(proto)://\(host)"
            }
            return .success(OriginalRequest(method: method, url: origin + uri))
        } catch {
            return .failure(error)
        }
    }

    private func bad(_ detail: String) -> TokenRefusal {
        TokenRefusal(
            kind: .invalidRequest,
            detail: detail,
            reason: "bad_forwarded_headers",
            wwwAuthenticate: nil,
            retryAfter: nil
        )
    }

    /// The identity headers of an accepted request, all of them, empty where the token has no such claim. A value
    /// outside visible ASCII and space is percent-encoded as UTF-8 (RFC 3986 §2.1 style, `%` itself included), so
    /// no claim can inject a header line.
    public static func identityHeaders(_ token: VerifiedToken) -> HTTPFields {
        var h: HTTPFields = [.cacheControl: "no-store"]
        let claims = token.claims
        let act = claims["act"]
        let values: [(String, String?)] = [
            ("X-Stagepass-Subject", token.subject),
            ("X-Stagepass-Role", token.role),
            ("X-Stagepass-Stage", token.stage),
            ("X-Stagepass-Run", claims["run_id"]?.stringValue ?? act?["run_id"]?.stringValue),
            ("X-Stagepass-Client", token.clientID),
            ("X-Stagepass-Actor", act?["sub"]?.stringValue),
            ("X-Stagepass-Commit", claims["commit"]?.stringValue),
            ("X-Stagepass-Token-Id", token.jti),
            ("X-Stagepass-Expires", String(token.expiresAt)),
        ]
        // Every header is sent, empty when the token lacks the claim: a proxy that copies them onto the upstream
        // request (Traefik authResponseHeaders, Caddy copy_headers) then replaces a client's own X-Stagepass-* value
        // instead of letting it through.
        for (name, value) in values {
            guard let field = FieldName(name) else { continue }
            h[field] = value.map(headerSafe) ?? ""
        }
        return h
    }
}

/// RFC 9110 §5.6.2 tchar.
func isTokenChar(_ b: UInt8) -> Bool {
    switch b {
    case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
        UInt8(ascii: "0")...UInt8(ascii: "9"):
        return true
    default:
        return "!#$%&'*+-.^_`|~".utf8.contains(b)
    }
}

/// Visible ASCII and space pass; `%` and every other byte of the UTF-8 form become `%XX`.
func headerSafe(_ s: String) -> String {
    var out = ""
    for b in s.utf8 {
        if b >= 0x20 && b < 0x7F && b != UInt8(ascii: "%") {
            out.unicodeScalars.append(Unicode.Scalar(b))
        } else {
            let hex = Array("0123456789ABCDEF".utf8)
            out += "%"
            out.unicodeScalars.append(Unicode.Scalar(hex[Int(b >> 4)]))
            out.unicodeScalars.append(Unicode.Scalar(hex[Int(b & 0x0F)]))
        }
    }
    return out
}
