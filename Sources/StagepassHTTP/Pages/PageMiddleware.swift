import Hummingbird
import StagepassBroker
import StagepassJOSE

/// The pages' authenticator: reads the session, pending sign-in and CSRF nonce cookies (Hummingbird's
/// `request.cookies`) into ``PageRequest``. A missing, expired or ended session is no session (the page then
/// redirects to sign-in); it never stops the request.
struct PageSessionAuthenticator: Authenticator {
    let broker: HumanBroker
    let security: PageSecurity

    func authenticate(request: Request, context: Context) async throws -> PageRequest? {
        let (cookies, broker, security) = (request.cookies, self.broker, self.security)
        return try await PageRequest(cookies: cookies, broker: broker, security: security)
    }

    func store(_ identity: PageRequest, in context: inout Context) {
        context.page = identity
        context.identity.session = identity.session
        context.identity.sessionToken = identity.sessionToken
    }
}

/// The CSRF check of every state-changing page call (a `POST`): reads the body — a form, or the page script's JSON —
/// and checks its token against the request's binding (``PageRequest/csrfBinding``): the form's `csrf` field, else
/// the `X-CSRF-Token` header; script calls send the header only.
///
/// The outcome waits in ``PageRequest/body`` until the handler asks for it (``PageRequest/form()``,
/// ``PageRequest/scriptBody()``), so a signed-out post still goes to the
/// sign-in page before any CSRF refusal, as the handler decides.
struct CSRFMiddleware: RouterMiddleware {
    typealias Context = StagepassRequestContext
    enum Mode: Sendable {
        /// Forms (urlencoded, or JSON with string members); the token in `csrf` or `X-CSRF-Token`.
        case form
        /// The page script's JSON (security-key answers); the token in `X-CSRF-Token`.
        case script
    }

    let mode: Mode
    let options: HTTPOptions
    let security: PageSecurity

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws
        -> Response
    {
        guard request.method == .post, var page = context.page else { return try await next(request, context) }
        do {
            page.body = .success(try await read(request, page))
        } catch {
            page.body = .failure(error)
        }
        var context = context
        context.page = page
        return try await next(request, context)
    }

    func read(_ request: Request, _ page: PageRequest) async throws -> PageBody {
        let header = PageSecurity.name("X-CSRF-Token").flatMap { request.headers[$0] }
        switch mode {
        case .form:
            let fields: [String: String]
            if request.headers[.contentType]?.lowercased().hasPrefix("application/json") == true {
                let body = try await JSONBody(request, options, allowEmpty: true)
                fields = body.fields.compactMapValues { $0.stringValue }
            } else {
                do { fields = try await FormBody(request, options).fields } catch let e as OAuthError {
                    throw PageError(status: .badRequest, message: e.errorDescription)
                }
            }
            guard security.verifyCSRF(fields["csrf"] ?? header ?? "", binding: page.csrfBinding) else {
                throw PageError.csrf
            }
            return .form(fields)
        case .script:
            var limited = options
            limited.maxBodyBytes = WebAuthnService.maximumResponseBytes
            let body = try await JSONBody(request, limited, allowEmpty: true)
            guard security.verifyCSRF(header ?? "", binding: page.csrfBinding) else { throw PageError.csrf }
            return .script(body)
        }
    }
}

/// A page post's body, read and CSRF-checked by ``CSRFMiddleware``.
enum PageBody: Sendable {
    case form([String: String])
    case script(JSONBody)
}

extension StagepassRequestContext {
    /// The page state from the cookies.
    /// - Throws: ``PageError`` when no ``PageSessionAuthenticator`` ran (a routing mistake).
    func requirePage() throws -> PageRequest {
        guard let page else { throw PageError(status: .internalServerError, message: "Something went wrong.") }
        return page
    }
}

extension PageRequest {
    /// The posted form, CSRF-checked by ``CSRFMiddleware``; rethrows its body or CSRF refusal.
    func form() throws -> [String: String] {
        switch body {
        case .success(.form(let fields)): return fields
        case .failure(let error): throw error
        case .success(.script), .none: throw PageError.csrf
        }
    }

    /// The page script's JSON body, CSRF-checked by ``CSRFMiddleware``; rethrows its body or CSRF refusal.
    func scriptBody() throws -> JSONBody {
        switch body {
        case .success(.script(let body)): return body
        case .failure(let error): throw error
        case .success(.form), .none: throw PageError.csrf
        }
    }
}
