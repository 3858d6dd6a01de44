import Foundation
import StagepassJOSE
import Testing

@testable import StagepassBroker

private struct TOTPFile: Decodable {
    struct Row: Decodable {
        let unix_time: Int64
        let mode: String
        let totp_8: String
    }
    let vectors: [Row]
}

private struct HOTPFile: Decodable {
    struct Row: Decodable {
        let counter: UInt64
        let hotp_6: String
    }
    let secret_ascii: String
    let vectors: [Row]
}

@Suite struct OTPTests {
    /// RFC 4226 Appendix D: HOTP values for the 20-byte ASCII secret, counters 0–9.
    @Test func hotpRFC4226AppendixD() async throws {
        let file = try JSONDecoder().decode(HOTPFile.self, from: Data(contentsOf: vectorsURL("rfc4226_hotp.json")))
        #expect(file.vectors.count == 10)
        for row in file.vectors {
            #expect(try OTP.hotp(secret: Array(file.secret_ascii.utf8), counter: row.counter) == row.hotp_6)
        }
    }

    /// RFC 6238 Appendix B: the SHA-1 rows (8 digits, X = 30, T0 = 0).
    @Test func totpRFC6238AppendixB() async throws {
        let file = try JSONDecoder().decode(TOTPFile.self, from: Data(contentsOf: vectorsURL("rfc6238_totp.json")))
        let sha1 = file.vectors.filter { $0.mode == "SHA1" }
        #expect(sha1.count == 6)
        for row in sha1 {
            #expect(
                try OTP.totp(secret: Array("12345678901234567890".utf8), unixTime: row.unix_time, digits: 8)
                    == row.totp_8
            )
        }
    }

    @Test func base32RoundTripAndRFC4648Vectors() async {
        #expect(Base32.encode(Array("foobar".utf8)) == "MZXW6YTBOI")
        #expect(Base32.encode(Array("12345678901234567890".utf8)) == "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
        #expect(Base32.decode("mzxw6ytboi======") == Array("foobar".utf8))
        #expect(Base32.decode("MZX!") == nil)
    }

    @Test func windowAcceptsOneStepOfDrift() async throws {
        let s = Array("12345678901234567890".utf8)
        let t: Int64 = 1_700_000_010
        let prev = try OTP.totp(secret: s, unixTime: t - 30)
        let next = try OTP.totp(secret: s, unixTime: t + 30)
        let far = try OTP.totp(secret: s, unixTime: t + 90)
        #expect(OTP.matchingStep(secret: s, code: prev, unixTime: t) == OTP.timeStep(t) - 1)
        #expect(OTP.matchingStep(secret: s, code: next, unixTime: t) == OTP.timeStep(t) + 1)
        #expect(OTP.matchingStep(secret: s, code: far, unixTime: t) == nil || far == prev || far == next)
    }

    @Test func otpauthURIFormat() async {
        let uri = OTP.otpauthURI(secret: Array("12345678901234567890".utf8), account: "alice")
        #expect(
            uri == "otpauth://totp/Stagepass:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Stagepass"
                + "&algorithm=SHA1&digits=6&period=30"
        )
    }
}

@Suite struct FactorServiceTests {
    let f: Fixture
    let key: MasterKey
    let factors: FactorService

    init() async throws {
        f = try Fixture()
        key = try MasterKey.generate()
        factors = FactorService(store: f.store, masterKey: key, clock: f.manual.clock, audit: f.audit)
        try await f.accounts.add(name: "alice", password: "a long enough password", actor: "root")
    }

    func code(_ e: TOTPEnrolment, offset: Int64 = 0) -> String {
        (try? OTP.totp(secret: Base32.decode(e.secret) ?? [], unixTime: f.manual.clock.now() + offset)) ?? "no-code"
    }

    @Test func enrolmentIsPendingUntilFirstCorrectCode() async throws {
        let alice = try await f.accounts.get("alice")
        let e = try await factors.enrolTOTP(userName: "alice", actor: "alice")
        #expect(e.uri.hasPrefix("otpauth://totp/Stagepass:alice?secret=\(e.secret)&issuer=Stagepass"))
        await #expect(try factors.list(userId: alice.id).map(\.state) == [.pending])
        await #expect(throws: BrokerError.noFactor) {
            try await factors.verifyTOTP(userId: alice.id, code: code(e), allowPending: false)
        }
        await #expect(throws: BrokerError.invalidFactor) {
            try await factors.confirmTOTP(userId: alice.id, code: "000000", actor: "alice")
        }
        await #expect(throws: BrokerError.invalidRequest) {
            try await factors.confirmTOTP(userId: alice.id, code: "12345", actor: "alice")
        }
        await #expect(try factors.list(userId: alice.id).map(\.state) == [.pending])
        try await factors.confirmTOTP(userId: alice.id, code: code(e), actor: "alice")
        await #expect(try factors.list(userId: alice.id).map(\.state) == [.active])
    }

    @Test func replayOfTheSameStepIsRefused() async throws {
        let alice = try await f.accounts.get("alice")
        let e = try await factors.enrolTOTP(userName: "alice", actor: "alice")
        try await factors.confirmTOTP(userId: alice.id, code: code(e), actor: "alice")
        await #expect(throws: BrokerError.factorReplay) {
            try await factors.verifyTOTP(userId: alice.id, code: code(e), allowPending: false)
        }
        // An older step (previous window) is also refused once a newer one was used.
        await #expect(throws: BrokerError.factorReplay) {
            try await factors.verifyTOTP(userId: alice.id, code: code(e, offset: -30), allowPending: false)
        }
        f.manual.advance(30)
        _ = try await factors.verifyTOTP(userId: alice.id, code: code(e), allowPending: false)
    }

    @Test func seedsAreEncryptedAtRestWithFactorIdAsAAD() async throws {
        let e = try await factors.enrolTOTP(userName: "alice", actor: "alice")
        let rec = try await #require(try f.store.factor(id: e.factorId))
        let box = try #require(rec.secretBox)
        let secret = try #require(Base32.decode(e.secret))
        #expect(box.count == 12 + secret.count + 16)
        #expect(!box.indices.dropLast(secret.count).contains { Array(box[$0..<($0 + secret.count)]) == secret })
        #expect(throws: BrokerError.masterKey) { try key.open(box, factorId: "f_other") }
        #expect(try key.open(box, factorId: e.factorId) == secret)
    }

    @Test func masterKeyRotationReencryptsAllSeeds() async throws {
        let alice = try await f.accounts.get("alice")
        try await f.accounts.add(name: "bob", password: "another long password", actor: "root")
        let e1 = try await factors.enrolTOTP(userName: "alice", actor: "alice")
        let e2 = try await factors.enrolTOTP(userName: "bob", actor: "bob")
        let newKey = try MasterKey.generate()
        await #expect(try factors.rotateMasterKey(to: newKey, actor: "root") == 2)
        let rotated = FactorService(store: f.store, masterKey: newKey, clock: f.manual.clock, audit: f.audit)
        try await rotated.confirmTOTP(userId: alice.id, code: code(e1), actor: "alice")
        // The old key no longer opens anything, and a rotation from the wrong key changes nothing.
        await #expect(throws: BrokerError.masterKey) {
            try await factors.verifyTOTP(userId: try await f.accounts.get("bob").id, code: code(e2), allowPending: true)
        }
        let before = try await f.store.factors(kind: .totp).map(\.secretBox)
        await #expect(throws: BrokerError.masterKey) {
            try await factors.rotateMasterKey(to: try MasterKey.generate(), actor: "root")
        }
        await #expect(try f.store.factors(kind: .totp).map(\.secretBox) == before)
    }

    @Test func masterKeyParsing() async throws {
        let k = try MasterKey.generate()
        #expect(try MasterKey(base64url: k.base64url + "\n").fingerprint == (try k.fingerprint))
        #expect(throws: BrokerError.masterKey) { try MasterKey(base64url: "short") }
        #expect(throws: BrokerError.masterKey) { try MasterKey(base64url: "!!!") }
        let env = ["STAGEPASS_MASTER_KEY": k.base64url]
        #expect(try MasterKey.load(environment: env, keyFile: nil)?.fingerprint == (try k.fingerprint))
        #expect(try MasterKey.load(environment: [:], keyFile: "/nonexistent/key") == nil)
    }

    @Test func backupCodesAreSingleUseAndRegenerationInvalidates() async throws {
        let alice = try await f.accounts.get("alice")
        let codes = try await factors.regenerateBackupCodes(userName: "alice", actor: "alice")
        #expect(codes.count == 10 && Set(codes).count == 10)
        #expect(codes.allSatisfy { $0.count == 11 && $0.dropFirst(5).first == "-" })
        try await factors.useBackupCode(userId: alice.id, code: codes[0])
        await #expect(throws: BrokerError.invalidFactor) {
            try await factors.useBackupCode(userId: alice.id, code: codes[0])
        }
        try await factors.useBackupCode(
            userId: alice.id,
            code: codes[1].uppercased().replacingOccurrences(of: "-", with: "")
        )
        await #expect(try factors.backupCodesLeft(userId: alice.id) == 8)
        let fresh = try await factors.regenerateBackupCodes(userName: "alice", actor: "alice")
        await #expect(throws: BrokerError.invalidFactor) {
            try await factors.useBackupCode(userId: alice.id, code: codes[2])
        }
        try await factors.useBackupCode(userId: alice.id, code: fresh[0])
        await #expect(try f.store.factors(ofUser: alice.id).filter { $0.kind == .backup }.count == 1)
    }
}
