/// Errors the broker's account, factor and session services throw, with stable codes.
///
/// The codes are part of the HTTP contract: StagepassHTTP turns each into an RFC 9457 problem whose `type` ends in
/// the code. `detail` is safe to show to the caller: it never names whether an account exists, nor any secret.
public struct BrokerError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The closed set of error kinds. A front end maps errors by switching over it exhaustively, so a new kind is a
    /// compile error there until it has a status, never a silent 500.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case invalidRequest = "invalid_request"
        case invalidCredentials = "invalid_credentials"
        case invalidFactor = "invalid_factor"
        case factorReplay = "factor_replay"
        case factorNotAllowed = "factor_not_allowed"
        case noFactor = "no_factor"
        case throttled
        case overloaded
        case accountLocked = "account_locked"
        case invalidSession = "invalid_session"
        case mfaRequired = "mfa_required"
        case stepUpRequired = "step_up_required"
        case notFound = "not_found"
        case conflict
        case masterKey = "master_key"
        case storageUnavailable = "storage_unavailable"
        case internalError = "internal"
    }

    private typealias Code = Kind
    private let _code: Code
    /// A message for the caller, without secrets.
    public let detail: String
    /// For ``throttled``, ``overloaded`` and ``storageUnavailable``: seconds until the next attempt is worth making.
    public let retryAfter: Int64?

    private init(_ code: Code, _ detail: String, retryAfter: Int64? = nil) {
        _code = code
        self.detail = detail
        self.retryAfter = retryAfter
    }

    /// The stable code (`invalid_credentials`, `throttled`, …).
    public var code: String { _code.rawValue }
    /// The error's kind; its raw value is ``code``.
    public var kind: Kind { _code }
    public var description: String { "\(code): \(detail)" }
    public static func == (l: BrokerError, r: BrokerError) -> Bool { l._code == r._code }
    public func hash(into h: inout Hasher) { h.combine(_code) }

    /// Every stable code, for documentation and conformance tests.
    public static var allCodes: [String] { Code.allCases.map(\.rawValue) }

    /// Malformed input (missing field, bad name, wrong length); nothing was changed.
    public static func invalidRequest(_ d: String) -> BrokerError { .init(.invalidRequest, d) }
    /// Unknown user, wrong password or disabled account: deliberately one error (no account enumeration).
    public static let invalidCredentials = BrokerError(.invalidCredentials, "the user name or password is wrong")
    /// The second-factor code is wrong.
    public static let invalidFactor = BrokerError(.invalidFactor, "the code is wrong")
    /// A second factor was refused for the reason given (a security key's response that did not verify); the same
    /// code as ``invalidFactor``.
    public static func invalidFactor(_ d: String) -> BrokerError { .init(.invalidFactor, d) }
    /// A TOTP code for a time step that was already used (RFC 6238 §5.2).
    public static let factorReplay = BrokerError(.factorReplay, "this code was already used; wait for the next one")
    /// The policy does not accept this factor for this user.
    public static func factorNotAllowed(_ d: String) -> BrokerError { .init(.factorNotAllowed, d) }
    /// The user has no usable factor of that kind.
    public static func noFactor(_ d: String) -> BrokerError { .init(.noFactor, d) }
    /// Too many recent failures; retry after the given number of seconds.
    public static func throttled(retryAfter: Int64) -> BrokerError {
        .init(.throttled, "too many failed attempts; retry in \(retryAfter) s", retryAfter: retryAfter)
    }
    /// The broker refused costly work (password hashing) at once because its bounded queue is full, the work waited
    /// too long, or the global budget of failed sign-ins is spent; nothing was counted or changed. Retry after the
    /// given number of seconds (HTTP 503 with `Retry-After`).
    public static func overloaded(retryAfter: Int64) -> BrokerError {
        .init(.overloaded, "the broker is busy; retry in \(retryAfter) s", retryAfter: retryAfter)
    }
    /// Locked after repeated factor failures; an administrator must unlock it.
    public static let accountLocked = BrokerError(.accountLocked, "the account is locked; ask an administrator")
    /// The session token is unknown, expired or signed out.
    public static let invalidSession = BrokerError(.invalidSession, "the session is missing, expired or ended")
    /// The session has not completed the second factor.
    public static let mfaRequired = BrokerError(.mfaRequired, "this needs a session verified with a second factor")
    /// The action needs a recent proof of one of the user's active factors (step up first); nothing was changed.
    public static func stepUpRequired(_ d: String) -> BrokerError { .init(.stepUpRequired, d) }
    public static let stepUpRequired = BrokerError(.stepUpRequired, "")
    public static func notFound(_ d: String) -> BrokerError { .init(.notFound, d) }
    public static func conflict(_ d: String) -> BrokerError { .init(.conflict, d) }
    /// The master key is missing, malformed, or does not open a stored secret.
    public static func masterKey(_ d: String) -> BrokerError { .init(.masterKey, d) }
    public static func internalError(_ d: String) -> BrokerError { .init(.internalError, d) }
    /// The store could not commit or read: nothing was changed; retry after `retryAfter` seconds. The detail names
    /// the cause, never SQL or a path (``StorageFault`` builds it: `BrokerError.storageUnavailable(fault)`).
    public static func storageUnavailable(_ detail: String, retryAfter: Int64) -> BrokerError {
        .init(.storageUnavailable, detail, retryAfter: retryAfter)
    }
    public static let storageUnavailable = BrokerError(.storageUnavailable, "")

    public static let invalidRequest = BrokerError(.invalidRequest, "")
    public static let noFactor = BrokerError(.noFactor, "")
    public static let factorNotAllowed = BrokerError(.factorNotAllowed, "")
    public static let throttled = BrokerError(.throttled, "")
    public static let overloaded = BrokerError(.overloaded, "")
    public static let notFound = BrokerError(.notFound, "")
    public static let conflict = BrokerError(.conflict, "")
    public static let masterKey = BrokerError(.masterKey, "")
}
