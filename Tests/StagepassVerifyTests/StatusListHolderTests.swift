import Foundation
import StagepassJOSE
import Testing

@testable import StagepassVerify

/// The one status-list holder (Specs/token-profile.md §6.4): verified installs, one list per `sub`, replaced only
/// by a list that is not older; unusable documents refused with a typed error; fail closed once configured.
@Suite("Status list holder")
struct StatusListHolderTests {
    let now: Int64 = 1_900_000_000
    let uri = "https://sp/statuslists/1"
    let key: PrivateKey
    let jwk: JWK
    let keys: KeySet

    init() throws {
        key = try PrivateKey.generate(for: .ES256)
        jwk = try JWK(publicKey: key.publicKey(), alg: .ES256)
        keys = KeySet(jwks: JWKS(keys: [jwk]))
    }

    func list(
        revoked: [Int],
        iat: Int64,
        exp: Int64? = nil,
        typ: String = "statuslist+jwt",
        extra: [String: JSONValue] = [:]
    ) throws -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in revoked { bytes[i / 8] |= UInt8(1 << (i % 8)) }
        var claims: [String: JSONValue] = [
            "sub": .string(uri), "iat": .int(iat), "exp": .int(exp ?? iat + 3600), "ttl": .int(300),
            "status_list": .object(["bits": .int(1), "lst": .string(Base64URL.encode(try Zlib.compress(bytes)))]),
        ]
        for (k, v) in extra { claims[k] = v }
        return try JWS.sign(
            claims: .object(claims),
            header: ["typ": .string(typ), "kid": .string(jwk.kid ?? "")],
            key: key,
            alg: .ES256
        )
    }

    func token(idx: Int) throws -> String {
        let claims: [String: JSONValue] = [
            "iss": .string("https://sp"), "aud": .string("deploy-api"), "sub": .string("alice"),
            "jti": .string(UUID().uuidString),
            "iat": .int(now), "exp": .int(now + 300),
            "status": .object(["status_list": .object(["idx": .int(Int64(idx)), "uri": .string(uri)])]),
        ]
        return try JWS.sign(
            claims: .object(claims),
            header: ["typ": .string("at+jwt"), "kid": .string(jwk.kid ?? "")],
            key: key,
            alg: .ES256
        )
    }

    func verifier(lists: (any StatusListSource)? = nil, maxAge: Int64? = nil) throws -> Verifier {
        Verifier(
            configuration: try .init(issuer: "https://sp", audiences: ["deploy-api"], statusMaxAge: maxAge),
            keys: StaticKeySource(keys),
            statusLists: lists,
            clock: { [now] in now }
        )
    }

    @Test func newerListReplacesOlder() throws {
        let v = try verifier()
        let t = try token(idx: 3)
        try v.installStatusList(try list(revoked: [], iat: now - 600), fetchedAt: now)
        #expect(throws: Never.self) { try v.verify(t) }
        try v.installStatusList(try list(revoked: [3], iat: now - 60), fetchedAt: now)
        #expect(throws: VerificationError(.revoked, "")) { try v.verify(t) }
    }

    @Test func olderListDoesNotReplaceNewer() throws {
        let v = try verifier()
        let t = try token(idx: 3)
        try v.installStatusList(try list(revoked: [3], iat: now - 60), fetchedAt: now)
        #expect(throws: StatusListError(.superseded, "")) {
            try v.installStatusList(try list(revoked: [], iat: now - 600), fetchedAt: now)
        }
        #expect(throws: VerificationError(.revoked, "")) { try v.verify(t) }
        #expect(v.statusListHolder.info(for: uri)?.issuedAt == now - 60)
    }

    /// A polled source offering an older and a newer copy at once: the newer list decides (the first match used to
    /// win, so a token revoked in the refreshed list still verified).
    @Test func polledSourceUsesTheNewestList() throws {
        let source = StaticStatusListSource([
            StatusListDocument(jwt: try list(revoked: [], iat: now - 600), fetchedAt: now),
            StatusListDocument(jwt: try list(revoked: [3], iat: now - 60), fetchedAt: now),
        ])
        #expect(throws: VerificationError(.revoked, "")) { try verifier(lists: source).verify(try token(idx: 3)) }
        let reversed = StaticStatusListSource(source.documents(now: now).reversed())
        #expect(throws: VerificationError(.revoked, "")) { try verifier(lists: reversed).verify(try token(idx: 3)) }
    }

    @Test(arguments: ["<html><body>502 Bad Gateway</body></html>", "a.b.c", "", "x.y", "a.b.c.d"])
    func unusableDocumentsAreRefusedAndFailClosed(_ doc: String) throws {
        let v = try verifier()
        #expect(!v.checksStatus)
        #expect(throws: StatusListError(.malformed, "")) { try v.installStatusList(doc) }
        // Refused, yet status checking is now on: no list, so no token is ok.
        #expect(v.checksStatus)
        #expect(throws: VerificationError(.statusUnavailable, "")) { try v.verify(try token(idx: 1)) }
    }

    @Test func refusalsAreTyped() throws {
        let h = StatusListHolder()
        let good = try list(revoked: [], iat: now - 60)
        var parts = good.split(separator: ".").map(String.init)
        var sig = try Base64URL.decode(parts[2])
        sig[40] ^= 1
        parts[2] = Base64URL.encode(sig)
        #expect(throws: StatusListError(.badSignature, "")) {
            try h.install(parts.joined(separator: "."), fetchedAt: now, keys: keys, now: now)
        }
        #expect(throws: StatusListError(.wrongType, "")) {
            try h.install(try list(revoked: [], iat: now, typ: "JWT"), fetchedAt: now, keys: keys, now: now)
        }
        #expect(throws: StatusListError(.unknownKey, "")) {
            try h.install(good, fetchedAt: now, keys: KeySet(jwks: JWKS(keys: [])), now: now)
        }
        #expect(throws: StatusListError(.expired, "")) {
            try h.install(try list(revoked: [], iat: now - 4000, exp: now - 100), fetchedAt: now, keys: keys, now: now)
        }
        #expect(throws: StatusListError(.issuedInFuture, "")) {
            try h.install(try list(revoked: [], iat: now + 600), fetchedAt: now, keys: keys, now: now)
        }
        #expect(throws: StatusListError(.malformed, "")) {
            try h.install(
                try list(revoked: [], iat: now, extra: ["exp": .string("never")]),
                fetchedAt: now,
                keys: keys,
                now: now
            )
        }
        #expect(throws: StatusListError(.malformed, "")) {
            try h.install(
                try list(revoked: [], iat: now, extra: ["ttl": .int(0)]),
                fetchedAt: now,
                keys: keys,
                now: now
            )
        }
        // High-S twin of the list's own signature.
        var twin = good.split(separator: ".").map(String.init)
        twin[2] = Base64URL.encode(highS(try Base64URL.decode(twin[2])))
        #expect(throws: StatusListError(.badSignature, "")) {
            try h.install(twin.joined(separator: "."), fetchedAt: now, keys: keys, now: now)
        }
        #expect(h.all.isEmpty)
        #expect(try h.install(good, fetchedAt: now, keys: keys, now: now).issuedAt == now - 60)
    }

    @Test func expiredOrStaleInstalledListIsUnavailable() throws {
        let t = try token(idx: 1)
        let v = try verifier(maxAge: 120)
        try v.installStatusList(try list(revoked: [], iat: now - 10, exp: now + 100), fetchedAt: now)
        #expect(throws: Never.self) { try v.verify(t) }
        // Past the list's exp (+ 30 s leeway): never ok.
        #expect(throws: VerificationError(.statusUnavailable, "")) { try v.verify(t, at: now + 130) }
        // Older than the max age (120 s from its iat).
        let w = try verifier(maxAge: 120)
        try w.installStatusList(try list(revoked: [], iat: now - 10, exp: now + 3600), fetchedAt: now)
        #expect(throws: VerificationError(.statusUnavailable, "")) { try w.verify(t, at: now + 200) }
    }

    private func highS(_ sig: [UInt8]) -> [UInt8] {
        let n: [UInt8] = [
            0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
        ]
        var out = sig
        var borrow = 0
        for i in stride(from: 31, through: 0, by: -1) {
            var d = Int(n[i]) - Int(sig[32 + i]) - borrow
            borrow = d < 0 ? 1 : 0
            if d < 0 { d += 256 }
            out[32 + i] = UInt8(d)
        }
        return out
    }
}
