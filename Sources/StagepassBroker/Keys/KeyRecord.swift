public import StagepassJOSE

/// The lifecycle state of a signing key (DESIGN.md "Rotate keys").
///
/// `next` → `active` → `retiring` → `retired`; any key may become `compromised`. Only `next`, `active` and
/// `retiring` keys are published in the JWKS; only the `active` key signs.
public enum KeyState: String, Sendable, Hashable, Codable, CaseIterable {
    /// Published, not yet signing.
    case next
    /// The one signing key.
    case active
    /// Published, no longer signing, until every token it signed has expired plus leeway.
    case retiring
    /// Unpublished; the private key file is destroyed.
    case retired
    /// Unpublished at once; the private key file is destroyed; its tokens are to be revoked.
    case compromised

    /// Whether keys in this state appear in the JWKS.
    public var isPublished: Bool { self == .next || self == .active || self == .retiring }
}

/// One key's entry in the keyring file. Timestamps are unix seconds.
public struct KeyRecord: Sendable, Hashable, Codable {
    /// The RFC 7638 §3 JWK thumbprint (SHA-256) of the public key; also the key file's name (`<kid>.pem`).
    public var kid: String
    /// The JWS algorithm this key signs with (fixed at generation/import; RFC 8725 §3.1).
    public var alg: String
    public var state: KeyState
    /// When the key was generated or imported (and published as `next`).
    public var created: Int64
    /// When the key became `active` (nil while `next`).
    public var activated: Int64?
    /// When the key was demoted to `retiring`.
    public var retiringSince: Int64?
    /// When the key became `retired` or `compromised`.
    public var retired: Int64?
    /// For a `retiring` key: the earliest time it may be retired, fixed when it was demoted (its tokens' longest
    /// lifetime then, plus leeway). The schedule retires it after this and after `retiringSince` + the current
    /// window, whichever is later, so a broker restarted with shorter lifetimes never unpublishes it early.
    public var retireAfter: Int64?
    /// `generated` or `imported`.
    public var origin: String

    public init(
        kid: String,
        alg: String,
        state: KeyState,
        created: Int64,
        activated: Int64? = nil,
        retiringSince: Int64? = nil,
        retired: Int64? = nil,
        retireAfter: Int64? = nil,
        origin: String
    ) {
        self.retireAfter = retireAfter
        self.kid = kid
        self.alg = alg
        self.state = state
        self.created = created
        self.activated = activated
        self.retiringSince = retiringSince
        self.retired = retired
        self.origin = origin
    }

    /// The parsed algorithm.
    public var algorithm: JWSAlgorithm? { JWSAlgorithm(rawValue: alg) }
    /// The key file's name inside the store directory.
    public var fileName: String { "\(kid).pem" }
}

/// The keyring file (`keyring.json`): every key the store has known, with its state and timestamps.
struct Keyring: Sendable, Hashable, Codable {
    static let currentFormat = "stagepass-keyring/1"
    var format: String = Keyring.currentFormat
    var keys: [KeyRecord] = []

    var active: [KeyRecord] { keys.filter { $0.state == .active } }
    var next: KeyRecord? { keys.last { $0.state == .next } }
    func index(of kid: String) -> Int? { keys.firstIndex { $0.kid == kid } }
}

/// A key as `stagepass keys list` shows it, with the planned times filled in from the schedule.
public struct KeyInfo: Sendable, Hashable {
    public var kid: String
    public var alg: String
    public var state: KeyState
    public var created: Int64
    /// When the key became active, or (for `next`) the earliest time it may: never before `created + prePublication`.
    public var activates: Int64?
    /// When the key stops signing (`active`: the scheduled rotation), or is unpublished (`retiring`: all its tokens
    /// expired plus leeway), or was (`retired`, `compromised`).
    public var retires: Int64?
}

/// The active key, ready to sign (the header must carry `kid`, RFC 7515 §4.1.4).
public struct SigningKey: Sendable {
    public let kid: String
    public let alg: JWSAlgorithm
    public let privateKey: PrivateKey
}

/// What ``KeyStore/rotate(alg:force:)`` did.
public struct RotationResult: Sendable, Hashable {
    /// The key that now signs.
    public let activeKid: String
    /// The demoted key, now `retiring` (nil on the first rotation of an empty store).
    public let retiringKid: String?
    /// The freshly generated `next` key.
    public let nextKid: String
}

/// What ``KeyStore/compromise(kid:)`` did.
public struct CompromiseResult: Sendable, Hashable {
    /// The compromised key: revoke every token carrying this `kid`.
    public let kid: String
    /// The state it was in.
    public let previousState: KeyState
    /// The key that signs now (changed when the active key was compromised).
    public let activeKid: String
    /// The `next` key after the action.
    public let nextKid: String?
}
