/// Why a status list token was not installed (``StatusListHolder/install(_:fetchedAt:maxAge:keys:now:leeway:)``).
///
/// A closed set of stable codes. In the C ABI every code but ``Code-swift.enum/superseded`` is
/// `STAGEPASS_ERR_BAD_STATUS_LIST`; ``Code-swift.enum/superseded`` is `STAGEPASS_ERR_STALE_STATUS_LIST`.
/// Equality compares the code only; `detail` is for humans and never contains the document.
public struct StatusListError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable, CaseIterable {
        /// Not a compact JWS with JSON header and claims, or claims that are not a status list (missing `sub`,
        /// `iat` or `status_list`, bad `bits`, `lst` that is not ZLIB, a non-integer `exp`, a non-positive `ttl`).
        case malformed = "malformed"
        /// `typ` is not `statuslist+jwt`.
        case wrongType = "wrong_type"
        /// A header the verifier never follows (`crit`, `jku`, `jwk`, `x5u`, `x5c`).
        case forbiddenHeader = "forbidden_header"
        /// `kid` missing or not in the verifier's key set, or `alg` not the key's.
        case unknownKey = "unknown_key"
        /// The signature does not verify (including a high-S ES256 signature).
        case badSignature = "bad_signature"
        /// `now ≥ exp + leeway`.
        case expired = "expired"
        /// The list token is longer than 4 MiB, or its `lst` inflates to more than 2 MiB (2^24 one-bit entries): a
        /// decompression bomb is refused after inflating at most that much.
        case tooLarge = "too_large"
        /// `iat` later than `now + leeway`.
        case issuedInFuture = "issued_in_future"
        /// A usable list, but older (smaller `iat`) than the one installed for the same `sub`: the installed one is
        /// kept.
        case superseded = "superseded"
    }

    public let code: Code
    public let detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { "\(code.rawValue): \(detail)" }
    public static func == (a: StatusListError, b: StatusListError) -> Bool { a.code == b.code }
    public func hash(into h: inout Hasher) { h.combine(code) }
}
