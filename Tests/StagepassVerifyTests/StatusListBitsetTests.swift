import Foundation
import StagepassJOSE
import Testing

@testable import StagepassVerify

/// A verifier holds a 2^20-entry list as a 128 KiB bitset with O(1) lookups, and refuses lists that inflate past
/// the bound (Specs/token-profile.md §6.3).
@Suite("Status list bitset")
struct StatusListBitsetTests {
    let now: Int64 = 1_900_000_000
    let uri = "https://sp/v1/statuslists/1"
    let key: PrivateKey
    let jwk: JWK
    let keys: KeySet

    init() throws {
        key = try PrivateKey.generate(for: .ES256)
        jwk = try JWK(publicKey: key.publicKey(), alg: .ES256)
        keys = KeySet(jwks: JWKS(keys: [jwk]))
    }

    func list(bytes: [UInt8], bits: Int64 = 1) throws -> String {
        try list(lst: Base64URL.encode(try Zlib.compress(bytes)), bits: bits)
    }

    func list(lst: String, bits: Int64 = 1) throws -> String {
        let claims: [String: JSONValue] = [
            "sub": .string(uri), "iat": .int(now), "exp": .int(now + 3600), "ttl": .int(300),
            "status_list": .object(["bits": .int(bits), "lst": .string(lst)]),
        ]
        return try JWS.sign(
            claims: .object(claims),
            header: ["typ": .string("statuslist+jwt"), "kid": .string(jwk.kid ?? "")],
            key: key,
            alg: .ES256
        )
    }

    func token(idx: Int64) throws -> String {
        let claims: [String: JSONValue] = [
            "iss": .string("https://sp"), "aud": .string("deploy-api"), "sub": .string("alice"),
            "jti": .string(UUID().uuidString), "iat": .int(now), "exp": .int(now + 300),
            "status": .object(["status_list": .object(["idx": .int(idx), "uri": .string(uri)])]),
        ]
        return try JWS.sign(
            claims: .object(claims),
            header: ["typ": .string("at+jwt"), "kid": .string(jwk.kid ?? "")],
            key: key,
            alg: .ES256
        )
    }

    func verifier() throws -> Verifier {
        Verifier(
            configuration: try .init(issuer: "https://sp", audiences: ["deploy-api"], cacheCapacity: 0),
            keys: StaticKeySource(keys),
            statusLists: nil,
            clock: { [now] in now }
        )
    }

    /// 2^20 entries with the first and the last revoked.
    var million: [UInt8] {
        var b = [UInt8](repeating: 0, count: (1 << 20) / 8)
        b[0] = 0b0000_0001
        b[b.count - 1] = 0b1000_0000
        return b
    }

    @Test func lookupsAtBothEndsAndOutOfRange() throws {
        let v = try verifier()
        try v.installStatusList(try list(bytes: million), fetchedAt: now)
        #expect(throws: VerificationError(.revoked, "")) { try v.verify(try token(idx: 0)) }
        #expect(throws: VerificationError(.revoked, "")) { try v.verify(try token(idx: (1 << 20) - 1)) }
        #expect(throws: Never.self) { try v.verify(try token(idx: 1)) }
        #expect(throws: Never.self) { try v.verify(try token(idx: (1 << 20) - 2)) }
        #expect(throws: Never.self) { try v.verify(try token(idx: 1 << 19)) }
        // Past the end: the list cannot say, so the verifier fails closed.
        #expect(throws: VerificationError(.statusUnavailable, "")) { try v.verify(try token(idx: 1 << 20)) }
        #expect(throws: VerificationError(.statusUnavailable, "")) { try v.verify(try token(idx: Int64.max)) }
    }

    @Test func aMillionEntriesAreHeldIn128KiBAndReadInPlace() throws {
        let parsed = try ParsedStatusList(jwt: try list(bytes: million), keySet: keys)
        #expect(parsed.bits == 1)
        #expect(parsed.bytes.count == 128 * 1024)
        #expect(parsed.value(at: 0) == 1)
        #expect(parsed.value(at: 7) == 0)
        #expect(parsed.value(at: (1 << 20) - 1) == 1)
        #expect(parsed.value(at: 1 << 20) == nil)
        #expect(parsed.value(at: -1) == nil)
        #expect(parsed.value(at: Int.max) == nil)
        // The holder hands out the installed list by reference: every lookup reads the same storage.
        let holder = StatusListHolder()
        try holder.install(try list(bytes: million), fetchedAt: now, keys: keys, now: now)
        let a = try #require(holder.installed(for: uri))
        let b = try #require(holder.installed(for: uri))
        let same = a.list.bytes.withUnsafeBufferPointer { pa in
            b.list.bytes.withUnsafeBufferPointer { pb in pa.baseAddress == pb.baseAddress }
        }
        #expect(same)
    }

    @Test func largestAcceptedListIsTwoToTheTwentyFourEntries() throws {
        let holder = StatusListHolder()
        let max = [UInt8](repeating: 0, count: ParsedStatusList.maxBytes)
        #expect(throws: Never.self) {
            try holder.install(try list(bytes: max), fetchedAt: now, keys: keys, now: now)
        }
        #expect(ParsedStatusList.maxBytes * 8 == 1 << 24)
    }

    @Test func decompressionBombIsRefusedAsTooLarge() throws {
        let holder = StatusListHolder()
        // 64 MiB of zeros compresses to about 64 KiB: inflating stops at the 2 MiB bound.
        let bomb = try Zlib.compress([UInt8](repeating: 0, count: 64 << 20))
        print("zip bomb: 64 MiB in \(bomb.count) bytes of ZLIB")
        #expect(throws: StatusListError(.tooLarge, "")) {
            try holder.install(try list(lst: Base64URL.encode(bomb)), fetchedAt: now, keys: keys, now: now)
        }
        // One byte over the bound is refused the same way; nothing is installed.
        let over = try Zlib.compress([UInt8](repeating: 0, count: ParsedStatusList.maxBytes + 1))
        #expect(throws: StatusListError(.tooLarge, "")) {
            try holder.install(try list(lst: Base64URL.encode(over)), fetchedAt: now, keys: keys, now: now)
        }
        #expect(holder.info(for: uri) == nil)
        #expect(try Zlib.inflate(bomb, limit: 1 << 21) == .tooLarge)
        // Not ZLIB at all stays malformed.
        #expect(throws: StatusListError(.malformed, "")) {
            try holder.install(try list(lst: Base64URL.encode([1, 2, 3])), fetchedAt: now, keys: keys, now: now)
        }
    }

    @Test func oversizedListTokenIsRefusedAsTooLarge() throws {
        let holder = StatusListHolder()
        let huge = String(repeating: "a", count: ParsedStatusList.maxTokenBytes + 1)
        #expect(throws: StatusListError(.tooLarge, "")) {
            try holder.install(huge, fetchedAt: now, keys: keys, now: now)
        }
    }
}
