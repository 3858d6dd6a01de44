import Foundation
import StagepassJOSE

@testable import StagepassBroker

/// A tiny test-only CBOR encoder (RFC 8949 preferred serialization: shortest arguments, definite lengths).
enum TestCBOR {
    static func head(_ major: UInt8, _ n: UInt64) -> [UInt8] {
        let m = major << 5
        switch n {
        case 0..<24: return [m | UInt8(n)]
        case 24...0xFF: return [m | 24, UInt8(n)]
        case 0x100...0xFFFF: return [m | 25, UInt8(n >> 8), UInt8(n & 0xFF)]
        case 0x1_0000...0xFFFF_FFFF: return [m | 26] + (0..<4).reversed().map { UInt8((n >> (8 * UInt64($0))) & 0xFF) }
        default: return [m | 27] + (0..<8).reversed().map { UInt8((n >> (8 * UInt64($0))) & 0xFF) }
        }
    }

    static func encode(_ v: CBOR) -> [UInt8] {
        switch v {
        case .unsigned(let n): return head(0, n)
        case .negative(let n): return head(1, n)
        case .bytes(let b): return head(2, UInt64(b.count)) + b
        case .text(let s): return head(3, UInt64(s.utf8.count)) + Array(s.utf8)
        case .array(let a): return head(4, UInt64(a.count)) + a.flatMap(encode)
        case .map(let m): return head(5, UInt64(m.count)) + m.flatMap { encode($0.key) + encode($0.value) }
        case .bool(let b): return [b ? 0xF5 : 0xF4]
        case .null: return [0xF6]
        }
    }

    static func map(_ pairs: [(CBOR, CBOR)]) -> CBOR { .map(pairs.map { CBORMapEntry(key: $0.0, value: $0.1) }) }
}

/// A software authenticator over the JOSE core: it holds a P-256 or Ed25519 key, builds authenticator data
/// (WebAuthn Level 2 §6.1), attestation objects (§6.5.4, `none` and `packed` self-attestation) and assertions, and
/// signs like a real one (ES256 signatures DER-encoded, §6.5.5). Knobs let a test break exactly one thing.
final class SoftAuthenticator: @unchecked Sendable {
    let alg: COSEAlgorithm
    let key: PrivateKey
    let credentialId: [UInt8]
    var signCount: UInt32
    var aaguid: [UInt8] = Array(repeating: 0, count: 16)
    var rpID = "localhost"
    var origin = "http://localhost:8080"
    /// False for authenticators without a signature counter (always 0, §6.1.1).
    var counts = true

    init(_ alg: COSEAlgorithm, signCount: UInt32 = 0) throws {
        self.alg = alg
        key = try PrivateKey.generate(for: alg.jws)
        credentialId = try Crypto.randomBytes(20)
        self.signCount = signCount
    }

    /// The COSE_Key of the public key (RFC 8152 §13.1.1 EC2, §13.2 OKP).
    func coseKey() throws -> CBOR {
        let jwk = try JWK(publicKey: try key.publicKey(), alg: alg.jws)
        let x = try Base64URL.decode(jwk.params["x"] ?? "")
        switch alg {
        case .es256:
            let y = try Base64URL.decode(jwk.params["y"] ?? "")
            return TestCBOR.map([
                (.integer(1), .integer(2)), (.integer(3), .integer(-7)), (.integer(-1), .integer(1)),
                (.integer(-2), .bytes(x)), (.integer(-3), .bytes(y)),
            ])
        case .eddsa:
            return TestCBOR.map([
                (.integer(1), .integer(1)), (.integer(3), .integer(-8)), (.integer(-1), .integer(6)),
                (.integer(-2), .bytes(x)),
            ])
        }
    }

    /// A WebAuthn signature: DER for ES256 (§6.5.5), the raw 64 bytes for Ed25519.
    func sign(_ data: [UInt8]) throws -> [UInt8] {
        let raw = try key.sign(alg.jws, signingInput: data)
        guard alg == .es256 else { return raw }
        guard let der = ecdsaSignatureDER(fromRaw: raw) else { throw JOSEError.cryptoFailure("DER") }
        return der
    }

    struct Knobs {
        var type: String?
        var origin: String?
        var rpID: String?
        var crossOrigin: Bool?
        var tokenBinding: String?
        var up = true
        var uv = true
        var counter: UInt32?
        /// Replaces the COSE key bytes in authData (registration).
        var coseKey: [UInt8]?
        var extensions: [UInt8]?
        var clientDataJSON: [UInt8]?
        var userHandle: [UInt8]??
    }

    func clientData(type: String, challenge: [UInt8], k: Knobs) -> [UInt8] {
        if let c = k.clientDataJSON { return c }
        var o: [String: JSONValue] = [
            "type": .string(k.type ?? type), "challenge": .string(Base64URL.encode(challenge)),
            "origin": .string(k.origin ?? origin),
        ]
        if let c = k.crossOrigin { o["crossOrigin"] = .bool(c) }
        if let t = k.tokenBinding { o["tokenBinding"] = .object(["status": .string(t)]) }
        return Array(JSONValue.object(o).serialized().utf8)
    }

    func authData(attested: Bool, k: Knobs) throws -> [UInt8] {
        var flags: UInt8 = 0
        if k.up { flags |= 0x01 }
        if k.uv { flags |= 0x04 }
        if attested { flags |= 0x40 }
        if k.extensions != nil { flags |= 0x80 }
        let count = k.counter ?? signCount
        var out = try Crypto.sha256(Array((k.rpID ?? rpID).utf8)) + [flags]
        out += [UInt8(count >> 24), UInt8((count >> 16) & 0xFF), UInt8((count >> 8) & 0xFF), UInt8(count & 0xFF)]
        if attested {
            out += aaguid + [UInt8(credentialId.count >> 8), UInt8(credentialId.count & 0xFF)] + credentialId
            out += try k.coseKey ?? TestCBOR.encode(coseKey())
        }
        if let e = k.extensions { out += e }
        return out
    }

    enum Attestation {
        case none
        case packedSelf
        /// A packed statement with the given alg and signature handling.
        case packed(alg: Int64?, corruptSignature: Bool, x5c: Bool)
        case format(String)
    }

    /// Builds the registration response JSON for `challenge` (what a page posts after `credentials.create()`).
    func register(
        challenge: [UInt8],
        attestation: Attestation = .none,
        knobs k: Knobs = Knobs(),
        attestationObject override: (([UInt8], [UInt8]) throws -> [UInt8])? = nil
    ) throws -> String {
        let cdj = clientData(type: "webauthn.create", challenge: challenge, k: k)
        let ad = try authData(attested: true, k: k)
        let signed = try ad + Crypto.sha256(cdj)
        let stmt: CBOR
        var fmt = "packed"
        switch attestation {
        case .none:
            fmt = "none"
            stmt = .map([])
        case .packedSelf:
            stmt = TestCBOR.map([(.text("alg"), .integer(alg.rawValue)), (.text("sig"), .bytes(try sign(signed)))])
        case .packed(let a, let corrupt, let x5c):
            var sig = try sign(signed)
            if corrupt { sig[sig.count - 1] ^= 0x01 }
            var pairs: [(CBOR, CBOR)] = [(.text("alg"), .integer(a ?? alg.rawValue)), (.text("sig"), .bytes(sig))]
            if x5c { pairs.append((.text("x5c"), .array([.bytes([0x30, 0x00])]))) }
            stmt = TestCBOR.map(pairs)
        case .format(let f):
            fmt = f
            stmt = .map([])
        }
        let object =
            try override?(ad, cdj)
            ?? TestCBOR.encode(
                TestCBOR.map([(.text("fmt"), .text(fmt)), (.text("attStmt"), stmt), (.text("authData"), .bytes(ad))])
            )
        return JSONValue.object([
            "id": .string(Base64URL.encode(credentialId)), "rawId": .string(Base64URL.encode(credentialId)),
            "type": .string("public-key"),
            "response": .object([
                "clientDataJSON": .string(Base64URL.encode(cdj)),
                "attestationObject": .string(Base64URL.encode(object)),
                "transports": .array([.string("usb")]),
            ]),
            "clientExtensionResults": .object([:]),
        ]).serialized()
    }

    /// Builds the assertion response JSON for `challenge`, incrementing the counter like a real key (unless
    /// `knobs.counter` pins it or the key does not count). `authenticatorData` replaces the bytes (still signed).
    func assert(
        challenge: [UInt8],
        userId: String? = nil,
        knobs k: Knobs = Knobs(),
        authenticatorData: [UInt8]? = nil,
        corruptSignature: Bool = false
    ) throws -> String {
        if k.counter == nil, counts { signCount &+= 1 }
        let cdj = clientData(type: "webauthn.get", challenge: challenge, k: k)
        let ad = try authenticatorData ?? authData(attested: false, k: k)
        var sig = try sign(ad + Crypto.sha256(cdj))
        if corruptSignature { sig[sig.count / 2] ^= 0x01 }
        var response: [String: JSONValue] = [
            "clientDataJSON": .string(Base64URL.encode(cdj)),
            "authenticatorData": .string(Base64URL.encode(ad)),
            "signature": .string(Base64URL.encode(sig)),
        ]
        switch k.userHandle {
        case .some(.some(let h)): response["userHandle"] = .string(Base64URL.encode(h))
        case .some(.none): response["userHandle"] = .null
        case .none: if let userId { response["userHandle"] = .string(Base64URL.encode(Array(userId.utf8))) }
        }
        return JSONValue.object([
            "id": .string(Base64URL.encode(credentialId)), "rawId": .string(Base64URL.encode(credentialId)),
            "type": .string("public-key"), "response": .object(response),
        ]).serialized()
    }
}

/// A human broker on an in-memory store whose policy accepts security keys, with a manual clock.
struct WebAuthnHarness {
    let manual: ManualClock
    let human: HumanBroker
    var service: WebAuthnService { human.webauthn }
    static let password = "a long enough password"

    init(
        factors: Set<FactorKind> = [.totp, .backup, .webauthn],
        configuration: WebAuthnConfiguration = WebAuthnConfiguration(
            rpID: "localhost",
            rpName: "Stagepass test",
            origins: ["http://localhost:8080"]
        )
    ) throws {
        manual = ManualClock(1_700_000_000)
        human = HumanBroker(
            store: try SQLiteStore(),
            masterKey: try MasterKey.generate(),
            policy: AuthPolicy(factors: factors),
            hasher: try PasswordHasher(parameters: .testing, pool: WorkPool(label: "test", workers: 2)),
            clock: manual.clock,
            webAuthn: configuration
        )
    }

    /// Adds a user; returns its id.
    func user(_ name: String, groups: [String] = ["deploy"]) async throws -> String {
        try await human.accounts.add(name: name, password: Self.password, groups: groups, actor: "root").id
    }

    /// Registers `key` for the user (none attestation unless told otherwise).
    @discardableResult
    func register(
        _ key: SoftAuthenticator,
        userId: String,
        name: String = "key",
        attestation: SoftAuthenticator.Attestation = .none
    ) async throws -> WebAuthnCredentialInfo {
        let options = try await service.beginRegistration(userId: userId, userName: "someone")
        return try await service.finishRegistration(
            userId: userId,
            name: name,
            credentialJSON: try key.register(challenge: options.challenge, attestation: attestation)
        )
    }

    var events: [AuditEvent] {
        get async throws {
            try await human.store.auditRows(after: 0, limit: 10_000).compactMap {
                try? JSONDecoder().decode(AuditEvent.self, from: Data($0.event.utf8))
            }
        }
    }
}

/// The WebAuthnError a body throws (nil when it throws nothing or something else).
func webAuthnError(_ body: () async throws -> Void) async -> WebAuthnError? {
    do { try await body() } catch let e as WebAuthnError { return e } catch { return nil }
    return nil
}
