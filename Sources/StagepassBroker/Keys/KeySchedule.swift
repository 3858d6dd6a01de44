/// When keys rotate and retire. All durations are in seconds.
///
/// The timing argument (DESIGN.md "Rotate keys"): a key is published as `next` at least `prePublication` seconds
/// before it signs, and a verifier refreshes its JWKS at least every ``jwksMaxAge`` seconds, which is strictly
/// shorter; so every verifier that honours the `Cache-Control` max-age already knows a key's `kid` before the first
/// token it signs. A demoted key stays published (`retiring`) until every token it signed has expired plus leeway.
///
/// ```swift
/// let schedule = try KeySchedule(rotationPeriod: 7 * 86_400, prePublication: 86_400,
///                                maxTokenLifetime: 3_600, leeway: 60)
/// schedule.jwksMaxAge  // 300
/// ```
public struct KeySchedule: Sendable, Hashable {
    /// How long a key stays `active` before the schedule rotates it.
    public let rotationPeriod: Int64
    /// The minimum time a `next` key is published before it may become `active`.
    public let prePublication: Int64
    /// The longest lifetime of anything the broker signs: the longest token any stage can issue, and the status
    /// lists (``AccessPolicy/longestSignedLifetime``). A demoted key stays published this long plus ``leeway``.
    public let maxTokenLifetime: Int64
    /// Clock-skew allowance verifiers apply to `exp`.
    public let leeway: Int64

    /// The largest JWKS `Cache-Control: max-age` the broker ever serves.
    public static let jwksMaxAgeCap: Int64 = 300

    /// Creates a schedule.
    /// - Throws: ``KeyStoreError/invalidSchedule`` when a value is not positive, when `prePublication` exceeds
    ///   `rotationPeriod` (a scheduled rotation would have to promote a key published too briefly), or when
    ///   `prePublication` is under 2 seconds (no max-age could be strictly shorter), or when `maxTokenLifetime` exceeds
    ///   `rotationPeriod` (``longestCoverableLifetime``).
    public init(rotationPeriod: Int64, prePublication: Int64, maxTokenLifetime: Int64, leeway: Int64) throws {
        guard rotationPeriod > 0, prePublication > 0, maxTokenLifetime > 0, leeway >= 0 else {
            throw KeyStoreError.invalidSchedule("periods must be positive and leeway non-negative")
        }
        guard prePublication <= rotationPeriod else {
            throw KeyStoreError.invalidSchedule(
                "prePublication (\(prePublication) s) must not exceed rotationPeriod (\(rotationPeriod) s)"
            )
        }
        guard prePublication >= 2 else {
            throw KeyStoreError.invalidSchedule(
                "prePublication must be at least 2 s so the JWKS max-age can be shorter"
            )
        }
        guard maxTokenLifetime <= rotationPeriod else {
            throw KeyStoreError.invalidSchedule(
                "tokens living \(maxTokenLifetime) s exceed what the key schedule covers (\(rotationPeriod) s): a key "
                    + "stays published after it stops signing for at most one rotation period"
            )
        }
        self.rotationPeriod = rotationPeriod
        self.prePublication = prePublication
        self.maxTokenLifetime = maxTokenLifetime
        self.leeway = leeway
    }

    /// The default: rotate weekly, publish the next key a day ahead, tokens live at most an hour, 60 s leeway.
    public static let standard: KeySchedule = {
        guard
            let s = try? KeySchedule(
                rotationPeriod: 7 * 86_400,
                prePublication: 86_400,
                maxTokenLifetime: 3_600,
                leeway: 60
            )
        else { preconditionFailure("the standard key schedule is valid") }
        return s
    }()

    /// The standard rotation timing, with the retiring window sized for signed objects living `lifetime` seconds
    /// (``AccessPolicy/longestSignedLifetime`` of the policy in force).
    /// - Throws: ``KeyStoreError/invalidSchedule`` when `lifetime` is not positive or exceeds
    ///   ``longestCoverableLifetime`` of the standard schedule (7 days).
    public static func standard(covering lifetime: Int64) throws -> KeySchedule {
        let s = standard
        return try KeySchedule(
            rotationPeriod: s.rotationPeriod,
            prePublication: s.prePublication,
            maxTokenLifetime: lifetime,
            leeway: s.leeway
        )
    }

    /// The longest lifetime a token may have under this schedule: one rotation period. A key stops signing at a
    /// rotation and stays published (`retiring`) until its last token has expired, so at most one retiring key is
    /// published beside the active and next ones, and a demoted key is unpublished within one rotation period.
    public var longestCoverableLifetime: Int64 { rotationPeriod }

    /// The `Cache-Control: max-age` (seconds) to serve with the JWKS: a quarter of the pre-publication window,
    /// at most ``jwksMaxAgeCap``, at least 1, and always strictly shorter than ``prePublication``.
    public var jwksMaxAge: Int64 { max(1, min(prePublication / 4, Self.jwksMaxAgeCap)) }

    /// How long a demoted key stays published: every token it signed has expired, plus leeway.
    public var retiringPeriod: Int64 { maxTokenLifetime + leeway }
}
