import Foundation
import StagepassJOSE
import StagepassVerify
import StagepassVerifyFetch
import Synchronization
import Testing

/// StagepassVerifyFetch: refresh happens in the background; a verification never waits for the network.
@Suite("Fetch")
struct FetchTests {
    let now: Int64 = 1_900_000_000

    /// A getter whose responses the test releases one at a time: until released, a fetch stays in flight.
    final class GatedGetter: HTTPGetting {
        private let pending = Mutex<[CheckedContinuation<(body: [UInt8], maxAge: Int64?), any Error>]>([])
        private let calls = Atomic<Int>(0)
        var callCount: Int { calls.load(ordering: .acquiring) }
        var waiting: Int { pending.withLock { $0.count } }

        func get(_ url: URL) async throws -> (body: [UInt8], maxAge: Int64?) {
            calls.add(1, ordering: .releasing)
            return try await withCheckedThrowingContinuation { c in pending.withLock { $0.append(c) } }
        }

        func release(_ body: [UInt8], maxAge: Int64?) {
            let c = pending.withLock { $0.isEmpty ? nil : $0.removeFirst() }
            c?.resume(returning: (body, maxAge))
        }
    }

    @Test func refreshFollowsTheShorterOfTTLAndMaxAge() {
        #expect(HTTPFetch.statusListRefresh(ttl: 300, maxAge: 60) == 60)
        #expect(HTTPFetch.statusListRefresh(ttl: 45, maxAge: 600) == 45)
        #expect(HTTPFetch.statusListRefresh(ttl: 45, maxAge: nil) == 45)
        #expect(HTTPFetch.statusListRefresh(ttl: nil, maxAge: 120) == 120)
        #expect(HTTPFetch.statusListRefresh(ttl: nil, maxAge: nil) == 60)
        #expect(HTTPFetch.statusListRefresh(ttl: 10, maxAge: 0) == 1)  // no-store is not a busy loop
        #expect(HTTPFetch.maxAge("public, max-age=90") == 90)
        #expect(HTTPFetch.maxAge("no-store") == 0)
    }

    /// Before any list arrived the verifier answers status_unavailable at once, while the fetch is still in flight;
    /// after it arrived the list decides.
    @Test func firstVerificationBeforeAnyListIsStatusUnavailable() async throws {
        let key = try PrivateKey.generate(for: .ES256)
        let jwk = try JWK(publicKey: key.publicKey(), alg: .ES256)
        let uri = "https://sp/statuslists/1"
        let getter = GatedGetter()
        let source = URLStatusListSource(url: URL(string: uri)!, getter: getter, clock: { [now] in now })
        let verifier = Verifier(
            configuration: try .init(issuer: "https://sp", audiences: ["deploy-api"]),
            keys: StaticKeySource(KeySet(jwks: JWKS(keys: [jwk]))),
            statusLists: source,
            clock: { [now] in now }
        )
        let claims: [String: JSONValue] = [
            "iss": .string("https://sp"), "aud": .string("deploy-api"), "sub": .string("alice"), "jti": .string("t1"),
            "iat": .int(now), "exp": .int(now + 300),
            "status": .object(["status_list": .object(["idx": .int(3), "uri": .string(uri)])]),
        ]
        let token = try JWS.sign(
            claims: .object(claims),
            header: ["typ": .string("at+jwt"), "kid": .string(jwk.kid ?? "")],
            key: key,
            alg: .ES256
        )
        let list = try JWS.sign(
            claims: .object([
                "sub": .string(uri), "iat": .int(now - 5), "exp": .int(now + 600), "ttl": .int(120),
                "status_list": .object([
                    "bits": .int(1), "lst": .string(Base64URL.encode(try Zlib.compress([0b0000_1000, 0]))),
                ]),
            ]),
            header: ["typ": .string("statuslist+jwt"), "kid": .string(jwk.kid ?? "")],
            key: key,
            alg: .ES256
        )

        try await withThrowingTaskGroup(of: Int64.self) { group in
            group.addTask { try await source.refresh() }
            while getter.waiting == 0 { await Task.yield() }
            // The fetch is in flight and cannot finish until released: verify still answers, without waiting.
            #expect(throws: VerificationError(.statusUnavailable, "")) { try verifier.verify(token) }
            getter.release(Array(list.utf8), maxAge: 300)
            let next = try await group.next()
            #expect(next == 120)  // the list's ttl (120) is shorter than max-age (300)
        }
        #expect(throws: VerificationError(.revoked, "")) { try verifier.verify(token) }
    }

    /// An unknown kid never makes verify() fetch: it asks the background loop (at most once per 30 s) and the
    /// token is unknown_key until the loop has the new set.
    @Test func unknownKidAsksTheLoopWithoutBlocking() async throws {
        let key = try PrivateKey.generate(for: .ES256)
        let jwk = try JWK(publicKey: key.publicKey(), alg: .ES256)
        let getter = GatedGetter()
        let source = URLKeySource(url: URL(string: "https://sp/jwks")!, getter: getter)
        let clock = Atomic<Int64>(now)
        let verifier = Verifier(
            configuration: try .init(issuer: "https://sp", audiences: ["deploy-api"], cacheCapacity: 0),
            keys: source,
            clock: { clock.load(ordering: .acquiring) }
        )
        let claims: [String: JSONValue] = [
            "iss": .string("https://sp"), "aud": .string("deploy-api"), "sub": .string("alice"), "jti": .string("t1"),
            "iat": .int(now), "exp": .int(now + 300),
        ]
        let token = try JWS.sign(
            claims: .object(claims),
            header: ["typ": .string("at+jwt"), "kid": .string(jwk.kid ?? "")],
            key: key,
            alg: .ES256
        )
        let empty = Array(JWKS(keys: []).serialized().utf8)
        let full = Array(JWKS(keys: [jwk]).serialized().utf8)

        await withTaskGroup(of: Void.self) { group in
            group.addTask { await source.run() }
            // The loop's first fetch: an empty set.
            while getter.waiting == 0 { await Task.yield() }
            getter.release(empty, maxAge: 3600)
            while source.current(now: now) == nil { await Task.yield() }
            #expect(getter.callCount == 1)
            // Unknown kid: refused now (no waiting), and one early re-fetch is requested.
            #expect(throws: VerificationError(.unknownKey, "")) { try verifier.verify(token) }
            while getter.waiting == 0 { await Task.yield() }
            #expect(getter.callCount == 2)
            // Within 30 s another unknown kid does not ask again.
            clock.store(now + 10, ordering: .releasing)
            #expect(throws: VerificationError(.unknownKey, "")) { try verifier.verify(token) }
            getter.release(full, maxAge: 3600)
            while source.current(now: now)?[jwk.kid ?? ""] == nil { await Task.yield() }
            #expect(throws: Never.self) { try verifier.verify(token) }
            #expect(getter.callCount == 2)
            group.cancelAll()
        }
    }
}
