import Foundation
import Hummingbird
import HummingbirdTesting
import StagepassJOSE
import StagepassVerify
import Synchronization
import Testing

@testable import StagepassHummingbird

/// An issuer for the tests: an ES256 key, tokens signed with it, a JWKS and a Token Status List, served by a
/// Hummingbird server on a loopback port (`/jwks.json`, `/statuslists/1`; `/missing` answers 404).
final class TestIssuer: Sendable {
    let issuer = "https://stagepass.test"
    let key: PrivateKey
    let jwk: JWK
    /// The revoked indices of status list 1; the served list changes when this does.
    let revoked = Mutex<Set<Int>>([])
    let listURI = "https://stagepass.test/statuslists/1"

    init() throws {
        key = try PrivateKey.generate(for: .ES256)
        jwk = try JWK(publicKey: key.publicKey(), alg: .ES256)
    }

    static var now: Int64 { Int64(Date().timeIntervalSince1970) }

    var jwks: String { JWKS(keys: [jwk]).serialized() }

    /// A deploy token (`role` deployer, `stage` production, `client_id` acme/web-deploy, status index `idx`);
    /// `overrides` replace or add claims, a `.null` override removes one.
    func token(idx: Int = 7, _ overrides: [String: JSONValue] = [:]) throws -> String {
        let now = Self.now
        var claims: [String: JSONValue] = [
            "iss": .string(issuer), "sub": .string("rita"), "aud": .string("deploy-api"), "exp": .int(now + 300),
            "iat": .int(now), "jti": .string("tok-\(UUID().uuidString)"), "client_id": .string("acme/web-deploy"),
            "role": .string("deployer"), "stage": .string("production"), "run_id": .string("run-4711"),
            "commit": .string("5d41402abc4b2a76b9719d911017c592"),
            "act": .object(["sub": .string("acme/web-deploy"), "run_id": .string("run-4711")]),
            "status": .object(["status_list": .object(["idx": .int(Int64(idx)), "uri": .string(listURI)])]),
        ]
        for (k, v) in overrides {
            if case .null = v { claims[k] = nil } else { claims[k] = v }
        }
        return try JWS.sign(
            claims: .object(claims),
            header: ["typ": .string("at+jwt"), "kid": .string(jwk.kid ?? "")],
            key: key,
            alg: .ES256
        )
    }

    /// The current status list token (draft-ietf-oauth-status-list §5.1), `ttl` 1 s so a verifier re-fetches it
    /// every second.
    func statusList() throws -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in revoked.withLock({ $0 }) { bytes[i / 8] |= UInt8(1 << (i % 8)) }
        let claims: JSONValue = .object([
            "sub": .string(listURI), "iat": .int(Self.now), "ttl": .int(1),
            "status_list": .object(["bits": .int(1), "lst": .string(Base64URL.encode(try Zlib.compress(bytes)))]),
        ])
        return try JWS.sign(
            claims: claims,
            header: ["typ": .string("statuslist+jwt"), "kid": .string(jwk.kid ?? "")],
            key: key,
            alg: .ES256
        )
    }

    /// The issuer's documents on a loopback port.
    func application() -> some ApplicationProtocol {
        let router = Router()
        router.get("/jwks.json") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "application/jwk-set+json", .cacheControl: "public, max-age=300"],
                body: .init(byteBuffer: ByteBuffer(string: self.jwks))
            )
        }
        router.get("/statuslists/1") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "application/statuslist+jwt", .cacheControl: "public, max-age=1"],
                body: .init(byteBuffer: ByteBuffer(string: try self.statusList()))
            )
        }
        router.get("/missing") { _, _ in Response(status: .notFound) }
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }

    /// Runs `body` with the issuer served on loopback and a ``StagepassVerifierService`` over its JWKS and
    /// (unless `statusPath` is nil) a status list path, its refresh loops running; `body` starts once the service
    /// is ready (or, for a status path that never serves a list, once the JWKS is in).
    func withVerification(
        statusPath: String? = "/statuslists/1",
        cacheCapacity: Int = 0,
        _ body: @escaping @Sendable (StagepassVerifierService) async throws -> Void
    ) async throws {
        try await application().test(.live) { client in
            let port = try #require(client.port)
            let base = "http://127.0.0.1:\(port)"
            let service = StagepassVerifierService(
                configuration: try VerifierConfiguration(
                    issuer: issuer,
                    audiences: ["deploy-api"],
                    cacheCapacity: cacheCapacity
                ),
                jwks: try #require(URL(string: base + "/jwks.json")),
                statusList: try statusPath.map { try #require(URL(string: base + $0)) }
            )
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                try await waitUntil("the verifier service fetched its documents") {
                    statusPath == "/missing" ? self.keysFetched(service) : service.isReady
                }
                try await body(service)
                group.cancelAll()
            }
        }
    }

    private func keysFetched(_ service: StagepassVerifierService) -> Bool {
        // A token's kid is known once the JWKS is in: the error moves past unknown_key.
        guard let t = try? token() else { return false }
        do {
            _ = try service.verifier.verify(t)
            return true
        } catch {
            return error.code != .unknownKey
        }
    }
}

/// Polls `condition` every 50 ms for up to 20 s (a readiness wait, not a timing assertion).
func waitUntil(
    _ what: String,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: @Sendable () async throws -> Bool
) async throws {
    for _ in 0..<400 {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    Issue.record("timed out waiting until \(what)", sourceLocation: sourceLocation)
    throw CancellationError()
}

/// The parsed parts of a problem+json response.
struct Answer {
    let status: Int
    let headers: HTTPFields
    let body: String
    var json: JSONValue? { try? JSONValue.parse(body) }
    var code: String? { json?["code"]?.stringValue }
    var reason: String? { json?["reason"]?.stringValue }
    var challenge: String? { headers[.wwwAuthenticate] }

    init(_ r: TestResponse) {
        status = Int(r.status.code)
        headers = r.headers
        body = String(buffer: r.body)
    }
}
