import Foundation
import Yams

/// Authentication methods references written into sessions and tokens (RFC 8176 §2).
///
/// - `pwd`: password (RFC 8176 §2).
/// - `otp`: a TOTP code (RFC 8176 §2 "one-time password").
/// - `bkp`: a one-time backup code. RFC 8176 registers no value for recovery codes and §2 lets parties agree on
///   others; we keep backup codes distinguishable from TOTP (a verifier may refuse them for high-risk stages), rather
///   than calling them `otp` (they are not time-based) or `kba` (they are not knowledge questions).
/// - `hwk`: reserved for WebAuthn (RFC 8176 §2 "proof-of-possession of a hardware-secured key").
public enum AMR {
    public static let password = "pwd"
    public static let totp = "otp"
    public static let backupCode = "bkp"
    public static let webauthn = "hwk"

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
/// YAML form (`stagepass serve --policy FILE`):
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

    public init(
        exemptGroups: Set<String> = [], factors: Set<FactorKind> = [.totp, .backup],
        groupFactors: [String: Set<FactorKind>] = [:], idleSeconds: Int64 = 1800,
        absoluteSeconds: Int64 = 12 * 3600, pendingSeconds: Int64 = 300, throttle: Throttle.Policy = .default,
        firstEnrolmentWithPassword: Bool = false
    ) {
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

    private struct File: Decodable {
        struct MFA: Decodable {
            var exempt_groups: [String]?
            var factors: [FactorKind]?
            var group_factors: [String: [FactorKind]]?
            var first_enrolment_with_password: Bool?
        }
        struct Sessions: Decodable {
            var idle_seconds: Int64?
            var absolute_seconds: Int64?
            var pending_seconds: Int64?
        }
        struct ThrottleFile: Decodable {
            var free_failures: Int?
            var base_delay_seconds: Int64?
            var max_delay_seconds: Int64?
            var lockout_after_factor_failures: Int?
        }
        var mfa: MFA?
        var sessions: Sessions?
        var throttle: ThrottleFile?
    }

    /// Parses the YAML form.
    /// - Throws: ``BrokerError/invalidRequest(_:)`` for malformed YAML, unknown factor kinds or non-positive times.
    public static func load(yaml: String) throws -> AuthPolicy {
        let file: File
        do { file = try YAMLDecoder().decode(File.self, from: yaml) } catch {
            throw BrokerError.invalidRequest("policy: \(error)")
        }
        var p = AuthPolicy()
        if let m = file.mfa {
            p.exemptGroups = Set(m.exempt_groups ?? [])
            if let f = m.factors { p.factors = Set(f) }
            p.groupFactors = (m.group_factors ?? [:]).mapValues { Set($0) }
            p.firstEnrolmentWithPassword = m.first_enrolment_with_password ?? false
        }
        if let s = file.sessions {
            p.idleSeconds = s.idle_seconds ?? p.idleSeconds
            p.absoluteSeconds = s.absolute_seconds ?? p.absoluteSeconds
            p.pendingSeconds = s.pending_seconds ?? p.pendingSeconds
        }
        if let t = file.throttle {
            p.throttle.freeFailures = t.free_failures ?? p.throttle.freeFailures
            p.throttle.baseDelay = t.base_delay_seconds ?? p.throttle.baseDelay
            p.throttle.maxDelay = t.max_delay_seconds ?? p.throttle.maxDelay
            p.throttle.lockoutAfterFactorFailures =
                t.lockout_after_factor_failures
                ?? p.throttle.lockoutAfterFactorFailures
        }
        guard p.idleSeconds > 0, p.absoluteSeconds > 0, p.pendingSeconds > 0, p.throttle.lockoutAfterFactorFailures > 0
        else { throw BrokerError.invalidRequest("policy: times and limits must be positive") }
        return p
    }

    /// Reads and parses a policy file.
    public static func load(file: String) throws -> AuthPolicy {
        try load(yaml: try String(contentsOfFile: file, encoding: .utf8))
    }
}
