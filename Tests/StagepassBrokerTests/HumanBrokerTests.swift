import Foundation
import StagepassJOSE
import Testing

@testable import StagepassBroker

@Suite struct HumanBrokerTests {
    @Test func firstStartBootstrapsOnceAndTheSecretsSignIn() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sp-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let clock = ManualClock(1_700_000_000)
        let broker = try HumanBroker.open(
            dataDirectory: dir,
            hasherParameters: .testing,
            clock: clock.clock,
            environment: [:]
        )
        let first = try await #require(try broker.bootstrapIfEmpty())
        #expect(first.userName == "admin")
        await #expect(try broker.bootstrapIfEmpty() == nil)
        let attrs = try FileManager.default.attributesOfItem(atPath: HumanBroker.masterKeyPath(dir))
        #expect((attrs[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let dirAttrs = try FileManager.default.attributesOfItem(atPath: dir)
        #expect((dirAttrs[.posixPermissions] as? NSNumber)?.intValue == 0o700)

        // Reopen: the same master key opens the seed; the first correct code activates the admin's factor.
        let again = try HumanBroker.open(
            dataDirectory: dir,
            hasherParameters: .testing,
            clock: clock.clock,
            environment: [:]
        )
        let p = try await again.sessions.signIn(name: "admin", password: first.password, address: "t")
        #expect(p.needsFactor && p.allowedFactors == [.totp])
        let secret = try #require(Base32.decode(first.enrolment.secret))
        let s = try await again.sessions.completeFactor(
            pendingToken: p.token,
            proof: .totp(try OTP.totp(secret: secret, unixTime: clock.clock.now())),
            address: "t"
        )
        #expect(s.session.amr == ["pwd", "otp"] && s.session.groups == ["admins"])
        await #expect(try again.factors.list(userId: s.session.userId).map(\.state) == [.active])
        await #expect(try again.audit.verify().isIntact)
    }

    @Test func aMalformedMasterKeyInTheEnvironmentIsRefused() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sp-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: BrokerError.masterKey) {
            try HumanBroker.open(
                dataDirectory: dir,
                hasherParameters: .testing,
                environment: ["STAGEPASS_MASTER_KEY": "too-short"]
            )
        }
        #expect(!FileManager.default.fileExists(atPath: HumanBroker.masterKeyPath(dir)))
    }
}
