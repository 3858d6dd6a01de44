import Hummingbird
import StagepassJOSE
import StagepassVerify

/// The access-token check of one deploy endpoint, shared by ``StagepassTokenMiddleware`` and the forward-auth guard
/// (``ForwardAuthGuard``): it reads the credentials of a request (RFC 6750 §2.1, RFC 9449 §7.1), verifies them with
/// a ``Verifier`` (in process, against the verifier's cached JWKS and status lists: no network on the request path)
/// and says either "this token" or "this refusal" (``TokenRefusal``, with its RFC 6750 §3 challenge).
///
/// ```swift
/// let gate = TokenGate(
///     verifier: verifier,
///     requirements: Requirements(roles: ["deployer"], stage: "production", pipeline: "acme/*"))
/// switch gate.check(authorization: ["Bearer eyJ…"], dpop: [], method: "POST", url: "https://deploy.example/deploy") {
/// case .success(let token): print(token.subject)
/// case .failure(let refusal): print(refusal.status, refusal.wwwAuthenticate)
/// }
/// ```
public struct TokenGate: Sendable {
    /// The verifier (issuer, audiences, leeway, lifetime cap, key and status-list sources).
    public let verifier: Verifier
    /// What this endpoint requires of a token beyond the verifier's configuration (roles, stage, pipeline pattern).
    public var requirements: Requirements
    /// The `realm` of the challenges (RFC 6750 §3, RFC 9110 §11.5).
    public var realm: String
    /// The algorithms announced for DPoP proofs in the `DPoP` challenge (RFC 9449 §7.1 `algs`).
    public var dpopAlgorithms: [String]
    /// Seconds a client is asked to wait (`Retry-After`) when revocation cannot be checked (`status_unavailable`).
    public var retryAfter: Int64

    public init(
        verifier: Verifier,
        requirements: Requirements = .none,
        realm: String = "stagepass",
        dpopAlgorithms: [String] = DPoPProofChecker.algorithms.map(\.rawValue),
        retryAfter: Int64 = 5
    ) {
        self.verifier = verifier
        self.requirements = requirements
        self.realm = realm
        self.dpopAlgorithms = dpopAlgorithms
        self.retryAfter = retryAfter
    }

    /// Checks the credentials of one request.
    /// - Parameters:
    ///   - authorization: every `Authorization` field value of the request (none, one, or — refused — several).
    ///   - dpop: every `DPoP` field value of the request.
    ///   - method: the request's method as sent (for the DPoP proof's `htm`).
    ///   - url: the request's target URI as the client addressed it (for the DPoP proof's `htu`).
    ///   - at: the time to verify at (unix seconds); nil = the verifier's clock.
    /// - Returns: the verified token, or the refusal to send.
    public func check(
        authorization: [String],
        dpop: [String],
        method: String,
        url: String,
        at: Int64? = nil
    ) -> Result<VerifiedToken, TokenRefusal> {
        let credentials: Credentials
        switch Credentials.parse(authorization: authorization, dpop: dpop) {
        case .success(let c): credentials = c
        case .failure(let problem):
            return .failure(refusal(problem, scheme: problem.kind == .invalidDPoPProof ? .dpop : nil))
        }
        do throws(VerificationError) {
            let token: VerifiedToken
            // RFC 9449 §7.1: with the DPoP scheme the proof is checked for this method and URL, `ath` against the
            // token, its key against the token's cnf.jkt, and seen once; with Bearer a bound token is refused
            // (dpop_required).
            let presentation = credentials.proof.map { DPoPPresentation(proof: $0, method: method, url: url) }
            token = try verifier.verify(credentials.token, requirements: requirements, dpop: presentation, at: at)
            return .success(token)
        } catch {
            let reason = Self.problem(for: error)
            // dpop_required answers a Bearer request in the DPoP challenge: that is the scheme the token needs.
            return .failure(refusal(reason, scheme: error.code == .dpopRequired ? .dpop : credentials.scheme))
        }
    }

    /// How a verification error reaches the client (Specs/token-profile.md, "The guard's HTTP contract").
    static func problem(for error: VerificationError) -> RefusalReason {
        switch error.code {
        // RFC 6750 §3.1 insufficient_scope: a valid token that does not grant this endpoint (403).
        case .roleMismatch, .stageMismatch, .pipelineMismatch:
            return .init(.insufficientScope, error.detail, reason: error.code.name)
        // Fail closed: revocation cannot be checked. Not the token's fault, so not invalid_token: 503, retry later.
        case .statusUnavailable:
            return .init(.statusUnavailable, error.detail, reason: error.code.name)
        // RFC 6750 §3.1 invalid_token: expired, revoked, malformed, wrong issuer or audience, bad signature… (401).
        // RFC 9449 §7.1: a bound token without a proof is an invalid_token for the Bearer scheme.
        case .malformed, .wrongType, .unsupportedCriticalHeader, .forbiddenHeader, .unknownKey, .unsupportedAlgorithm,
            .badSignature, .wrongIssuer, .wrongAudience, .missingClaim, .expired, .notYetValid, .issuedInFuture,
            .lifetimeExceeded, .revoked, .dpopRequired:
            return .init(.invalidToken, error.detail, reason: error.code.name)
        // RFC 9449 §7.1 invalid_dpop_proof: the proof fails a §4.3 check, was seen before (§11.1), or is signed by
        // another key than the token's cnf.jkt (§4.3 step 12), or the token is not bound at all.
        case .badDPoPProof, .dpopReplayed, .dpopKeyMismatch:
            return .init(.invalidDPoPProof, error.detail, reason: error.code.name)
        // The replay cache is full of live proofs: refusing is the only safe answer (fail closed), retry later.
        case .dpopReplayCacheFull:
            return .init(.temporarilyUnavailable, error.detail, reason: error.code.name)
        }
    }

    func refusal(_ reason: RefusalReason, scheme: Credentials.Scheme?) -> TokenRefusal {
        TokenRefusal(
            kind: reason.kind,
            detail: reason.detail,
            reason: reason.reason,
            wwwAuthenticate: challenge(reason, scheme: scheme),
            retryAfter: reason.kind.status == .serviceUnavailable ? retryAfter : nil
        )
    }

    /// The `WWW-Authenticate` value: a `Bearer` challenge (RFC 6750 §3) and a `DPoP` challenge (RFC 9449 §7.1) in
    /// one field (RFC 9110 §11.6.1 allows several challenges in one field; proxies such as nginx `auth_request` copy
    /// one `WWW-Authenticate` field only). The error goes into the challenge of the scheme the client used; a request
    /// without credentials gets no error code (RFC 6750 §3.1).
    func challenge(_ reason: RefusalReason, scheme: Credentials.Scheme?) -> String? {
        guard let error = reason.kind.oauthError else { return nil }
        var bearer = "Bearer realm=\(quoted(realm))"
        var dpop = "DPoP realm=\(quoted(realm))"
        if !dpopAlgorithms.isEmpty { dpop += ", algs=\(quoted(dpopAlgorithms.joined(separator: " ")))" }
        if reason.kind != .missingToken {
            let description = reason.reason.map { "\($0): \(reason.detail)" } ?? reason.detail
            let params = ", error=\(quoted(error)), error_description=\(quoted(String(description.prefix(200))))"
            if scheme == .dpop { dpop += params } else { bearer += params }
        }
        return bearer + ", " + dpop
    }
}

/// Why a request was refused, before it becomes a ``TokenRefusal``.
struct RefusalReason: Error, Sendable {
    let kind: TokenRefusal.Kind
    let detail: String
    let reason: String?

    init(_ kind: TokenRefusal.Kind, _ detail: String, reason: String? = nil) {
        self.kind = kind
        self.detail = detail
        self.reason = reason
    }
}

/// The credentials of a request: `Authorization: Bearer <token>` (RFC 6750 §2.1) or `Authorization: DPoP <token>`
/// with one `DPoP` proof header (RFC 9449 §7.1).
struct Credentials: Sendable, Equatable {
    enum Scheme: Sendable, Equatable { case bearer, dpop }
    let scheme: Scheme
    let token: String
    let proof: String?

    static func parse(authorization: [String], dpop: [String]) -> Result<Credentials, RefusalReason> {
        guard let field = authorization.first else {
            return .failure(.init(.missingToken, "the request carries no access token"))
        }
        // RFC 6750 §3.1 invalid_request: the request is malformed; RFC 9110 §11.6.2 allows one Authorization field.
        guard authorization.count == 1 else {
            return .failure(.init(.invalidRequest, "more than one Authorization header"))
        }
        // RFC 9110 §11.4: credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]; the scheme is
        // case-insensitive.
        let parts = field.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        let scheme: Scheme
        switch parts.first?.lowercased() {
        case "bearer": scheme = .bearer
        case "dpop": scheme = .dpop
        default:
            // Not a scheme this endpoint accepts: as if no credentials were sent (RFC 6750 §3.1, no error code).
            return .failure(.init(.missingToken, "the Authorization scheme is neither Bearer nor DPoP"))
        }
        let token = parts.count == 2 ? parts[1].drop(while: { $0 == " " }) : ""
        // RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
        guard !token.isEmpty, isB64Token(token) else {
            return .failure(.init(.invalidRequest, "the access token is not a b64token (RFC 6750 §2.1)"))
        }
        var proof: String?
        if scheme == .dpop {
            // RFC 9449 §4.3 step 1: exactly one DPoP header field.
            guard dpop.count == 1, let p = dpop.first, !p.isEmpty else {
                return .failure(
                    .init(
                        .invalidDPoPProof,
                        dpop.isEmpty ? "the DPoP scheme needs a DPoP proof header" : "more than one DPoP header",
                        reason: "bad_dpop_proof"
                    )
                )
            }
            proof = p
        }
        return .success(Credentials(scheme: scheme, token: String(token), proof: proof))
    }

    static func isB64Token(_ s: Substring) -> Bool {
        var seenPadding = false
        for b in s.utf8 {
            if b == UInt8(ascii: "=") {
                seenPadding = true
                continue
            }
            if seenPadding { return false }
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"), UInt8(ascii: "+"), UInt8(ascii: "/"):
                continue
            default:
                return false
            }
        }
        return true
    }
}

/// An RFC 9110 §5.6.4 quoted-string; characters that cannot appear in one (controls, `"` and `\` in an RFC 6750 §3
/// `error_description`, which is limited to %x20-21 / %x23-5B / %x5D-7E) are left out.
func quoted(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars where u.value >= 0x20 && u.value <= 0x7E && u != "\"" && u != "\\" {
        out.unicodeScalars.append(u)
    }
    return out + "\""
}
