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
    public let error: String
    public let errorDescription: String
    /// RFC 9470 §3: the largest acceptable age of the user's authentication, seconds.
    public var maxAge: Int64?
    /// RFC 9470 §3: the acceptable authentication context classes (see ``ACR``).
    public var acrValues: [String]?

    public init(_ error: String, _ description: String, maxAge: Int64? = nil, acrValues: [String]? = nil) {
        self.error = error
        self.errorDescription = description
        self.maxAge = maxAge
        self.acrValues = acrValues
    }

    public var description: String { "\(error): \(errorDescription)" }

    public static func invalidRequest(_ d: String) -> OAuthError { .init("invalid_request", d) }
    /// RFC 6749 §5.2: client authentication failed (unknown client, wrong secret): one error for both.
    public static let invalidClient = OAuthError("invalid_client", "client authentication failed")
    public static func invalidGrant(_ d: String) -> OAuthError { .init("invalid_grant", d) }
    public static func unauthorizedClient(_ d: String) -> OAuthError { .init("unauthorized_client", d) }
    public static func unsupportedGrantType(_ d: String) -> OAuthError { .init("unsupported_grant_type", d) }
    public static func invalidScope(_ d: String) -> OAuthError { .init("invalid_scope", d) }
    public static func invalidTarget(_ d: String) -> OAuthError { .init("invalid_target", d) }
    public static let authorizationPending = OAuthError(
        "authorization_pending", "the request has not been approved yet")
    public static func slowDown(interval: Int64) -> OAuthError {
        .init("slow_down", "polling too fast; wait at least \(interval) s between polls")
    }
    public static func accessDenied(_ d: String) -> OAuthError { .init("access_denied", d) }
    public static let expiredToken = OAuthError("expired_token", "the request expired before it was approved")
    public static func notFound(_ d: String) -> OAuthError { .init("not_found", d) }
    public static func conflict(_ d: String) -> OAuthError { .init("conflict", d) }
    public static func forbidden(_ d: String) -> OAuthError { .init("forbidden", d) }
    /// RFC 9470 §3.
    public static func insufficientUserAuthentication(_ d: String, maxAge: Int64?, acrValues: [String])
        -> OAuthError
    {
        .init("insufficient_user_authentication", d, maxAge: maxAge, acrValues: acrValues)
    }
}

/// Authentication context class values (RFC 9470 §3 `acr_values`, OpenID Connect Core §2 `acr`) that name the
/// second factor a stage accepts: `urn:stagepass:acr:totp`, `urn:stagepass:acr:webauthn`, `urn:stagepass:acr:backup`.
public enum ACR {
    public static func value(for kind: FactorKind) -> String { "urn:stagepass:acr:" + kind.rawValue }
    public static func values(for kinds: Set<FactorKind>) -> [String] { kinds.map(value(for:)).sorted() }
}
