import Foundation

/// Authentication methods references written into sessions and tokens (RFC 8176 §2).
///
/// - `pwd`: password (RFC 8176 §2).
/// - `otp`: a TOTP code (RFC 8176 §2 "one-time password").
/// - `bkp`: a one-time backup code. RFC 8176 registers no value for recovery codes and §2 lets parties agree on
///   others; we keep backup codes distinguishable from TOTP (a verifier may refuse them for high-risk stages), rather
///   than calling them `otp` (they are not time-based) or `kba` (they are not knowledge questions).
/// - `hwk`: a WebAuthn security key (RFC 8176 §2 "proof-of-possession of a hardware-secured key").
/// - `user`: added beside `hwk` when the authenticator set the UV flag (WebAuthn Level 2 §6.1). RFC 8176 §2 defines
///   `user` as a test of user presence; every accepted assertion has UP, but Stagepass writes `user` only when the
///   authenticator also verified the user (PIN or biometric), so the value never claims more than happened and a
///   verifier can tell a verified key use from a touch.
public enum AMR {
    public static let password = "pwd"
    public static let totp = "otp"
    public static let backupCode = "bkp"
    public static let webauthn = "hwk"
    public static let userPresence = "user"

    public static func value(for kind: FactorKind) -> String {
        switch kind {
        case .totp: return totp
        case .backup: return backupCode
        case .webauthn: return webauthn
        }
    }
}

/// Who must use a second factor, which factors count, and how long sessions last.
///
/// MFA is required for everyone by default. A user is exempt only when the policy lists *every* one of their groups
/// in `exempt_groups` (a user with no group, or with one non-exempt group, must use MFA). The factors that count are
/// `factors` narrowed by the `group_factors` entry of each of the user's groups (the strictest wins).
///
/// YAML form: the `mfa`, `sessions` and `throttle` sections of the policy file (`stagepass serve --policy FILE`,
/// `Specs/policy.md`); times are durations (seconds, or `30m`, `12h`, …):
/// ```yaml
/// mfa:
///   exempt_groups: [robots]
///   factors: [totp, backup]
///   group_factors:
///     admins: [totp]
///   first_enrolment_with_password: false
/// sessions:
///   idle_seconds: 1800
///   absolute_seconds: 43200
///   pending_seconds: 300
/// throttle:
///   free_failures: 3
///   lockout_after_factor_failures: 10
/// ```
public struct AuthPolicy: Sendable, Hashable {
    public var exemptGroups: Set<String>
    public var factors: Set<FactorKind>
    public var groupFactors: [String: Set<FactorKind>]
    public var idleSeconds: Int64
    public var absoluteSeconds: Int64
    public var pendingSeconds: Int64
    public var throttle: Throttle.Policy
    /// Whether a user with no active factor may enrol their first TOTP factor from a password-only (pending) session.
    /// Off by default: then only an admin (`stagepass factors totp-enrol NAME`) starts a first enrolment, and the
    /// password alone never leads to an MFA session. Turning it on is trust-on-first-use of the password.
    public var firstEnrolmentWithPassword: Bool
    /// Enrolling, regenerating or removing a factor needs a proof of an existing active factor at most this many
    /// seconds old (`mfa.factor_change_max_age`, default 5 minutes).
    public var factorChangeMaxAge: Int64

    public init(
        exemptGroups: Set<String> = [],
        factors: Set<FactorKind> = [.totp, .webauthn, .backup],
        groupFactors: [String: Set<FactorKind>] = [:],
        idleSeconds: Int64 = 1800,
        absoluteSeconds: Int64 = 12 * 3600,
        pendingSeconds: Int64 = 300,
        throttle: Throttle.Policy = .default,
        firstEnrolmentWithPassword: Bool = false,
        factorChangeMaxAge: Int64 = 300
    ) {
        self.factorChangeMaxAge = factorChangeMaxAge
        self.exemptGroups = exemptGroups
        self.factors = factors
        self.groupFactors = groupFactors
        self.idleSeconds = idleSeconds
        self.absoluteSeconds = absoluteSeconds
        self.pendingSeconds = pendingSeconds
        self.throttle = throttle
        self.firstEnrolmentWithPassword = firstEnrolmentWithPassword
    }

    public static let `default` = AuthPolicy()

    /// Whether a user in `groups` must present a second factor.
    public func requiresMFA(groups: [String]) -> Bool {
        groups.isEmpty || !groups.allSatisfy { exemptGroups.contains($0) }
    }

    /// The factor kinds that count for a user in `groups`.
    public func allowedFactors(groups: [String]) -> Set<FactorKind> {
        groups.reduce(factors) { acc, g in groupFactors[g].map { acc.intersection($0) } ?? acc }
    }

    /// Parses the `mfa`, `sessions` and `throttle` sections of a policy document: the `auth` part of
    /// ``AccessPolicy/load(yaml:source:)``, which validates the whole document (format: `Specs/policy.md`).
    /// - Throws: ``BrokerError/invalidRequest(_:)`` whose detail is `policy: <source>:<line>: <message>` (the
    ///   ``PolicyError``), for malformed YAML, unknown keys, unknown factor kinds or non-positive times.
    public static func load(yaml: String) throws -> AuthPolicy {
        do { return try AccessPolicy.load(yaml: yaml).auth } catch let error as PolicyError {
            throw BrokerError.invalidRequest("policy: \(error)")
        }
    }

    /// Reads and parses a policy file; see ``load(yaml:)``.
    /// - Throws: ``BrokerError/invalidRequest(_:)`` naming the file and line.
    public static func load(file: String) throws -> AuthPolicy {
        do { return try AccessPolicy.load(file: file).auth } catch let error as PolicyError {
            throw BrokerError.invalidRequest("policy: \(error)")
        }
    }
}
