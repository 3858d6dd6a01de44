import Hummingbird
import HummingbirdTesting
import StagepassBroker
import StagepassJOSE
import Testing

@testable import StagepassHTTP

/// Every error kind reaches the wire with its documented status (Specs/openapi.yaml `info.description`): the
/// mapping is an exhaustive `switch`, so a new kind does not compile until it has one; these tables pin the values.
@Suite struct ErrorMappingTests {
    static let brokerStatus: [BrokerError.Kind: Int] = [
        .invalidRequest: 400, .invalidCredentials: 401, .invalidFactor: 401, .factorReplay: 401,
        .factorNotAllowed: 403, .noFactor: 409, .throttled: 429, .overloaded: 503, .accountLocked: 403,
        .invalidSession: 401, .mfaRequired: 403, .stepUpRequired: 403, .notFound: 404, .conflict: 409,
        .storageUnavailable: 503,
        // The broker's own failures: a bare 500 without internals.
        .masterKey: 500, .internalError: 500,
    ]

    @Test(arguments: BrokerError.Kind.allCases)
    func brokerErrorKindHasItsStatus(_ kind: BrokerError.Kind) throws {
        let expected = try #require(Self.brokerStatus[kind], "no documented status for \(kind)")
        let error = try #require(Self.brokerErrors.first { $0.kind == kind })
        let p = Problem.from(error as any Error)
        #expect(Int(p.status.code) == expected)
        if expected == 500 {
            #expect(p.code == "internal" && !p.detail.contains(error.detail))
        } else {
            #expect(p.code == kind.rawValue && p.type == "urn:stagepass:problem:" + kind.rawValue)
        }
    }

    /// One error of each kind, made through the public API.
    static let brokerErrors: [BrokerError] = [
        .invalidRequest("x"), .invalidCredentials, .invalidFactor, .factorReplay, .factorNotAllowed("x"),
        .noFactor("x"), .throttled(retryAfter: 4), .overloaded(retryAfter: 2), .accountLocked, .invalidSession,
        .mfaRequired,
        .stepUpRequired("x"), .notFound("x"), .conflict("x"), .masterKey("secret detail"),
        .internalError("secret detail"), .storageUnavailable(StorageFault(.diskFull, resultCode: 13)),
    ]

    @Test func throttledCarriesRetryAfter() {
        let r = Problem.from(BrokerError.throttled(retryAfter: 4) as any Error).response()
        #expect(r.status == .tooManyRequests && r.headers[.retryAfter] == "4")
    }

    /// A storage fault is 503 `storage_unavailable` with `Retry-After`, naming the cause and nothing else; on the
    /// OAuth endpoints an RFC 6749 §5.2 body with `temporarily_unavailable`.
    @Test(arguments: StorageFault.Cause.allCases)
    func storageFaultIsServiceUnavailable(_ cause: StorageFault.Cause) async throws {
        let fault = StorageFault(cause, resultCode: 13)
        let p = Problem.from(fault as any Error)
        #expect(p.status == .serviceUnavailable && p.code == "storage_unavailable")
        #expect(p.detail == "storage unavailable: \(cause.phrase); nothing was changed, retry later")
        let r = p.response()
        #expect(r.headers[.retryAfter] == String(fault.retryAfter))
        #expect(r.headers[.contentType] == "application/problem+json")
        let router = Router(context: StagepassRequestContext.self)
        router.get("/token") { _, _ in fault.tokenEndpointResponse }
        try await Application(router: router).test(.router) { client in
            let t = try await client.execute(uri: "/token", method: .get)
            #expect(t.status == .serviceUnavailable && t.headers[.retryAfter] == String(fault.retryAfter))
            let json = try JSONValue.parse(Array(String(buffer: t.body).utf8))
            #expect(json["error"] == .string("temporarily_unavailable"))
            #expect(json["error_description"] == .string(p.detail))
        }
    }

    @Test func overloadedIs503WithRetryAfterAndTemporarilyUnavailableOnTheTokenEndpoint() throws {
        let busy = BrokerError.overloaded(retryAfter: 3)
        let r = Problem.from(busy as any Error).response()
        #expect(r.status == .serviceUnavailable && r.headers[.retryAfter] == "3")
        #expect(r.headers[.contentType] == "application/problem+json")
        let oauth = try #require(OAuthError.tokenEndpoint(busy))
        #expect(oauth.kind == .temporarilyUnavailable && oauth.retryAfter == 3)
        let t = oauth.tokenEndpointResponse
        #expect(t.status == .serviceUnavailable && t.headers[.retryAfter] == "3")
        #expect(OAuthError.tokenEndpoint(.throttled(retryAfter: 3)) == nil)
    }

    /// As a problem (the human-facing calls) and as an RFC 6749 §5.2 body (the OAuth endpoints).
    static let oauthStatus: [OAuthError.Kind: (problem: Int, endpoint: Int)] = [
        .invalidRequest: (400, 400), .invalidClient: (401, 401), .invalidGrant: (400, 400),
        .unauthorizedClient: (400, 400), .unsupportedGrantType: (400, 400), .invalidScope: (400, 400),
        .invalidTarget: (400, 400), .authorizationPending: (400, 400), .slowDown: (400, 400),
        .accessDenied: (403, 400), .expiredToken: (410, 400), .insufficientUserAuthentication: (401, 400),
        .notFound: (404, 400), .conflict: (409, 400), .forbidden: (403, 400), .temporarilyUnavailable: (503, 503),
        .invalidDPoPProof: (400, 400),
    ]

    @Test(arguments: OAuthError.Kind.allCases)
    func oauthErrorKindHasItsStatus(_ kind: OAuthError.Kind) throws {
        let expected = try #require(Self.oauthStatus[kind], "no documented status for \(kind)")
        let error = OAuthError(kind, "detail")
        #expect(error.error == kind.rawValue)
        let p = Problem.from(error as any Error)
        #expect(Int(p.status.code) == expected.problem && p.code == kind.rawValue)
        let r = error.tokenEndpointResponse
        #expect(Int(r.status.code) == expected.endpoint)
        #expect(r.headers[.contentType] == "application/json")
        // RFC 6749 §5.2: a challenge only with 401 invalid_client.
        #expect((r.headers[.wwwAuthenticate] != nil) == (kind == .invalidClient))
    }

    /// RFC 9470 §3: the step-up demand names how fresh and which factor, in the body and the challenge.
    @Test func insufficientUserAuthenticationChallenge() {
        let e = OAuthError.insufficientUserAuthentication("x", maxAge: 300, acrValues: ["urn:stagepass:acr:totp"])
        let p = Problem.from(e)
        #expect(p.extra["max_age"] == .int(300))
        #expect(
            p.wwwAuthenticate
                == "Bearer error=\"insufficient_user_authentication\", max_age=300, acr_values=\"urn:stagepass:acr:totp\""
        )
    }

    @Test func staticMembersKeepTheirCodes() {
        #expect(OAuthError.invalidClient.kind == .invalidClient)
        #expect(OAuthError.slowDown(interval: 5).error == "slow_down")
        #expect(
            BrokerError.invalidSession.kind == .invalidSession && BrokerError.invalidSession.code == "invalid_session"
        )
        #expect(BrokerError.allCodes == BrokerError.Kind.allCases.map(\.rawValue))
    }
}
