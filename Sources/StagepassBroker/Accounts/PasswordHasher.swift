import CArgon2
import StagepassJOSE

/// Argon2id password hashing through the reference library (RFC 9106), stored as a PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) so that parameters can be raised later: verification reads
/// them from the string, and ``needsRehash(_:)`` says when a stored hash is below the current parameters.
public struct PasswordHasher: Sendable {
    /// Argon2id cost parameters.
    public struct Parameters: Sendable, Hashable {
        /// Memory in KiB.
        public var memoryKiB: UInt32
        public var iterations: UInt32
        public var parallelism: UInt32
        public init(memoryKiB: UInt32, iterations: UInt32, parallelism: UInt32) {
            self.memoryKiB = memoryKiB
            self.iterations = iterations
            self.parallelism = parallelism
        }
        /// OWASP Password Storage Cheat Sheet (Argon2id): m = 19 MiB, t = 2, p = 1.
        public static let owasp = Parameters(memoryKiB: 19_456, iterations: 2, parallelism: 1)
        /// Deliberately cheap parameters for tests only.
        public static let testing = Parameters(memoryKiB: 256, iterations: 1, parallelism: 1)
    }

    public let parameters: Parameters
    /// A hash of a random password, verified when the user does not exist so that the response takes the same time.
    public let dummyHash: String
    /// Where ``verifyOffPool(_:against:admission:)`` and ``hashOffPool(_:limits:)`` run (``WorkPool/passwords``).
    public let pool: WorkPool

    public init(parameters: Parameters = .owasp, pool: WorkPool = .passwords) throws {
        self.parameters = parameters
        self.pool = pool
        let random = try Crypto.randomBytes(24)
        self.dummyHash = try Self.hash(Base64URL.encode(random), parameters: parameters)
    }

    /// Hashes `password` with a fresh 16-byte salt and returns the PHC string.
    /// - Throws: ``BrokerError/internalError(_:)`` if libargon2 fails.
    public func hash(_ password: String) throws -> String { try Self.hash(password, parameters: parameters) }

    static func hash(_ password: String, parameters p: Parameters) throws -> String {
        let salt = try Crypto.randomBytes(16)
        let pwd = Array(password.utf8)
        let hashLen = 32
        let encLen = argon2_encodedlen(
            p.iterations,
            p.memoryKiB,
            p.parallelism,
            UInt32(salt.count),
            UInt32(hashLen),
            Argon2_id
        )
        var encoded = [CChar](repeating: 0, count: encLen + 1)
        let rc = pwd.withUnsafeBytes { pw in
            salt.withUnsafeBytes { s in
                argon2id_hash_encoded(
                    p.iterations,
                    p.memoryKiB,
                    p.parallelism,
                    pw.baseAddress,
                    pw.count,
                    s.baseAddress,
                    s.count,
                    hashLen,
                    &encoded,
                    encoded.count
                )
            }
        }
        guard rc == ARGON2_OK.rawValue else {
            throw BrokerError.internalError("argon2id: \(String(cString: argon2_error_message(rc)))")
        }
        return String(decoding: encoded.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Verifies `password` against a PHC string (libargon2 compares in constant time). A malformed or
    /// non-Argon2id string verifies as false.
    public func verify(_ password: String, against phc: String) -> Bool {
        guard phc.hasPrefix("$argon2id$") else { return false }
        let pwd = Array(password.utf8)
        let rc = pwd.withUnsafeBytes { pw in argon2id_verify(phc, pw.baseAddress, pw.count) }
        return rc == ARGON2_OK.rawValue
    }

    /// Runs ``verify(_:against:)`` on the hashing pool with a place taken earlier (see ``WorkPool/admit(_:)``), off
    /// the Swift cooperative pool (it takes tens of ms).
    /// - Throws: ``BrokerError/overloaded(retryAfter:)`` when it waited too long for a worker (nothing verified).
    public func verifyOffPool(
        _ password: String,
        against phc: String,
        admission: WorkPool.Admission
    ) async throws
        -> Bool
    {
        try await admission.run { self.verify(password, against: phc) }
    }

    /// Runs ``hash(_:)`` on the hashing pool, off the Swift cooperative pool.
    /// - Throws: ``BrokerError/overloaded(retryAfter:)`` when the pool is full or the hash waited too long.
    public func hashOffPool(_ password: String, limits: WorkPool.Limits) async throws -> String {
        try await pool.run(limits) { try self.hash(password) }
    }

    /// True when `phc` was made with weaker parameters than ``parameters`` (rehash after the next good sign-in).
    public func needsRehash(_ phc: String) -> Bool {
        guard let params = Self.parameters(of: phc) else { return true }
        return params.memoryKiB < parameters.memoryKiB || params.iterations < parameters.iterations
            || params.parallelism < parameters.parallelism
    }

    /// Parses `m=…,t=…,p=…` out of a PHC string.
    public static func parameters(of phc: String) -> Parameters? {
        let parts = phc.split(separator: "$")
        guard parts.count >= 4, parts[0] == "argon2id" else { return nil }
        var m: UInt32?
        var t: UInt32?
        var p: UInt32?
        for kv in parts[2].split(separator: ",") {
            let pair = kv.split(separator: "=")
            guard pair.count == 2, let v = UInt32(pair[1]) else { return nil }
            switch pair[0] {
            case "m": m = v
            case "t": t = v
            case "p": p = v
            default: return nil
            }
        }
        guard let m, let t, let p else { return nil }
        return Parameters(memoryKiB: m, iterations: t, parallelism: p)
    }
}
