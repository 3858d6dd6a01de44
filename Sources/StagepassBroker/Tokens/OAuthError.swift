import Foundation

/// An error of the token, device-authorization, approval and revocation flows, named by its OAuth error code.
///
/// Codes: RFC 6749 §5.2 (`invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`,
/// `unsupported_grant_type`, `invalid_scope`), RFC 8693 §2.2.2 (`invalid_target`), RFC 8628 §3.5
/// (`authorization_pending`, `slow_down`, `access_denied`, `expired_token`), RFC 9470 §3
/// (`insufficient_user_authentication`, with `max_age` and `acr_values` saying which factor, how fresh), plus
/// `not_found`, `conflict` and `forbidden` for the human-facing approval and revocation calls. `description` is safe
/// to show: it names no secret and never whether an account exists.
public struct OAuthError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The closed set of error codes. A front end maps errors by switching over it exhaustively, so a new code is a
    /// compile error there until it has a status and body, never a silent 500.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        // RFC 6749 §5.2
        case invalidRequest = "invalid_request"
        case invalidClient = "invalid_client"
        case invalidGrant = "invalid_grant"
        case unauthorizedClient = "unauthorized_client"
        case unsupportedGrantType = "unsupported_grant_type"
        case invalidScope = "invalid_scope"
        // RFC 8693 §2.2.2
        case invalidTarget = "invalid_target"
        // RFC 8628 §3.5
        case authorizationPending = "authorization_pending"
        case slowDown = "slow_down"
        case accessDenied = "access_denied"
        case expiredToken = "expired_token"
        // RFC 9449 §5 / §12.2: a missing (where required), malformed, invalid or replayed DPoP proof
        case invalidDPoPProof = "invalid_dpop_proof"
        // RFC 9470 §3
        case insufficientUserAuthentication = "insufficient_user_authentication"
        // RFC 6749 §4.1.2.1 (defined for the authorization endpoint; used here on every endpoint, with 503)
        case temporarilyUnavailable = "temporarily_unavailable"
        // The human-facing approval, delegation, revocation and admin calls.
        case notFound = "not_found"
        case conflict
        case forbidden
    }

    /// The error's kind; its raw value is ``error``.
    public let kind: Kind
    public let errorDescription: String
    /// RFC 9470 §3: the largest acceptable age of the user's authentication, seconds.
    public var maxAge: Int64?
    /// RFC 9470 §3: the acceptable authentication context classes (see ``ACR``).
    public var acrValues: [String]?
    /// For ``Kind/temporarilyUnavailable``: seconds before a retry is worth making (`Retry-After`).
    public var retryAfter: Int64?

    public init(_ kind: Kind, _ description: String, maxAge: Int64? = nil, acrValues: [String]? = nil) {
        self.kind = kind
        self.errorDescription = description
        self.maxAge = maxAge
        self.acrValues = acrValues
    }

    /// The OAuth error code (`invalid_request`, `authorization_pending`, …).
    public var error: String { kind.rawValue }
    public var description: String { "\(error): \(errorDescription)" }

    public static func invalidRequest(_ d: String) -> OAuthError { .init(.invalidRequest, d) }
    /// RFC 6749 §5.2: client authentication failed (unknown client, wrong secret): one error for both.
    public static let invalidClient = OAuthError(.invalidClient, "client authentication failed")
    public static func invalidGrant(_ d: String) -> OAuthError { .init(.invalidGrant, d) }
    public static func unauthorizedClient(_ d: String) -> OAuthError { .init(.unauthorizedClient, d) }
    public static func unsupportedGrantType(_ d: String) -> OAuthError { .init(.unsupportedGrantType, d) }
    public static func invalidScope(_ d: String) -> OAuthError { .init(.invalidScope, d) }
    public static func invalidTarget(_ d: String) -> OAuthError { .init(.invalidTarget, d) }
    public static func invalidDPoPProof(_ d: String) -> OAuthError { .init(.invalidDPoPProof, d) }
    public static let authorizationPending = OAuthError(
        .authorizationPending,
        "the request has not been approved yet"
    )
    /// RFC 6749 §4.1.2.1: the broker is too busy to handle the request now (HTTP 503 with `Retry-After`); nothing
    /// was changed.
    public static func temporarilyUnavailable(retryAfter: Int64) -> OAuthError {
        var e = OAuthError(.temporarilyUnavailable, "the broker is busy; retry in \(retryAfter) s")
        e.retryAfter = retryAfter
        return e
    }
    public static func slowDown(interval: Int64) -> OAuthError {
        .init(.slowDown, "polling too fast; wait at least \(interval) s between polls")
    }
    public static func accessDenied(_ d: String) -> OAuthError { .init(.accessDenied, d) }
    public static let expiredToken = OAuthError(.expiredToken, "the request expired before it was approved")
    public static func notFound(_ d: String) -> OAuthError { .init(.notFound, d) }
    public static func conflict(_ d: String) -> OAuthError { .init(.conflict, d) }
    public static func forbidden(_ d: String) -> OAuthError { .init(.forbidden, d) }
    /// RFC 9470 §3.
    public static func insufficientUserAuthentication(
        _ d: String,
        maxAge: Int64?,
        acrValues: [String]
    )
        -> OAuthError
    {
        .init(.insufficientUserAuthentication, d, maxAge: maxAge, acrValues: acrValues)
    }
}

/// Authentication context class values (RFC 9470 §3 `acr_values`, OpenID Connect Core §2 `acr`) that name the
/// second factor a stage accepts: `urn:stagepass:acr:totp`, `urn:stagepass:acr:webauthn`, `urn:stagepass:acr:backup`.
public enum ACR {
    public static func value(for kind: FactorKind) -> String { "urn:stagepass:acr:" + kind.rawValue }
    public static func values(for kinds: Set<FactorKind>) -> [String] { kinds.map(value(for:)).sorted() }
}
