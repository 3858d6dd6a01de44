public import Foundation
import StagepassJOSE

/// The 256-bit key that seals factor secrets at rest (AES-256-GCM, NIST SP 800-38D; aad = the factor id).
///
/// Loaded from `STAGEPASS_MASTER_KEY` (base64url of 32 bytes) or from a key file holding the same text.
public struct MasterKey: Sendable {
    let bytes: [UInt8]

    /// - Throws: ``BrokerError/masterKey(_:)`` unless `bytes` is 32 bytes.
    public init(bytes: [UInt8]) throws {
        guard bytes.count == 32 else { throw BrokerError.masterKey("the master key must be 32 bytes") }
        self.bytes = bytes
    }

    /// Parses base64url text (surrounding whitespace ignored).
    /// - Throws: ``BrokerError/masterKey(_:)`` for anything but base64url of exactly 32 bytes.
    public init(base64url text: String) throws {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let raw = try? Base64URL.decode(trimmed) else {
            throw BrokerError.masterKey("the master key is not base64url")
        }
        try self.init(bytes: raw)
    }

    /// A fresh random key.
    public static func generate() throws -> MasterKey { try MasterKey(bytes: try Crypto.randomBytes(32)) }

    /// The key as base64url text (for writing the key file once).
    public var base64url: String { Base64URL.encode(bytes) }

    /// A short fingerprint safe to log: the first 8 hex digits of SHA-256(key).
    public var fingerprint: String {
        get throws { try Crypto.sha256(bytes).prefix(4).map { String(format: "%02x", $0) }.joined() }
    }

    /// `STAGEPASS_MASTER_KEY` if set, else the file at `keyFile` if it exists, else nil.
    ///
    /// The file is read through ``SecretFile/read(_:)``: one that group or others can access is refused, never used.
    /// - Throws: ``BrokerError/masterKey(_:)`` when the value found is malformed, or the file is readable by others
    ///   (the detail names the `chmod 600` to run) or unreadable.
    public static func load(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        keyFile: String?
    ) throws -> MasterKey? {
        if let env = environment["STAGEPASS_MASTER_KEY"], !env.isEmpty { return try MasterKey(base64url: env) }
        guard let keyFile else { return nil }
        let bytes: [UInt8]?
        do { bytes = try SecretFile.read(keyFile) } catch let e as SecretFileError {
            throw BrokerError.masterKey("refusing the master key file: \(e.detail)")
        }
        guard let bytes else { return nil }
        return try MasterKey(base64url: String(decoding: bytes, as: UTF8.self))
    }

    func seal(_ secret: [UInt8], factorId: String) throws -> [UInt8] {
        do { return try AESGCM.seal(secret, key: bytes, aad: Array(factorId.utf8)) } catch {
            throw BrokerError.internalError("sealing a factor secret failed")
        }
    }

    func open(_ box: [UInt8], factorId: String) throws -> [UInt8] {
        do { return try AESGCM.open(box, key: bytes, aad: Array(factorId.utf8)) } catch {
            throw BrokerError.masterKey("the master key does not open the secret of factor \(factorId)")
        }
    }
}
