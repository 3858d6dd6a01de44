import Foundation
import Hummingbird
import HummingbirdTesting
import StagepassBroker
import StagepassJOSE
import Testing

@testable import StagepassHTTP

/// While the store refuses writes, sign-in answers 503 `storage_unavailable`, `/readyz` answers 503 naming the
/// cause and `/healthz` stays 200; once writes commit again everything recovers without a restart.
@Suite struct StorageFaultHTTPTests {
    @Test func writesRefusedMeansUnreadyAnd503ThenRecovery() async throws {
        let t = try TestBroker()
        _ = try await t.user("alice")
        let store = try #require(t.broker.store as? SQLiteStore)
        try await t.app.test(.router) { client in
            #expect(try await t.call(client, .get, "/readyz").status == 200)
            try await store.unsafeExecute("PRAGMA query_only = ON")  // every write now fails with SQLITE_READONLY
            let signIn = #"{"user":"alice","password":"a long enough password"}"#
            let r = try await t.call(client, .post, "/v1/auth/password", body: signIn)
            #expect(r.status == 503)
            #expect(r.json?["code"] == .string("storage_unavailable"))
            #expect(r.json?["detail"]?.stringValue?.hasPrefix("storage unavailable: read-only") == true)
            #expect(r.headers[.retryAfter] == "30")
            let ready = try await t.call(client, .get, "/readyz")
            #expect(ready.status == 503 && ready.json?["cause"] == .string("read_only"))
            #expect(try await t.call(client, .get, "/healthz").status == 200)
            let metrics = try await t.call(client, .get, "/metrics")
            #expect(metrics.raw.contains(#"stagepass_storage_faults_total{cause="read_only"}"#))

            try await store.unsafeExecute("PRAGMA query_only = OFF")
            #expect(try await t.call(client, .get, "/readyz").status == 200)
            #expect(try await t.call(client, .post, "/v1/auth/password", body: signIn).status == 200)
        }
    }
}
