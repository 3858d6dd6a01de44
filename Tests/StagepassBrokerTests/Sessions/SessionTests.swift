import StagepassJOSE
import Testing

@testable import StagepassBroker

/// A broker wired on an in-memory store with the hash-chained audit log and a manual clock.
struct Broker {
    let f: Fixture
    let log: HashChainAuditLog
    let factors: FactorService
    let sessions: SessionService
    let accounts: AccountService

    init(policy: AuthPolicy = .default, pool: WorkPool? = nil) throws {
        f = try Fixture(pool: pool)
        log = HashChainAuditLog(store: f.store, clock: f.manual.clock)
        accounts = AccountService(store: f.store, hasher: f.hasher, clock: f.manual.clock, audit: log)
        factors = FactorService(store: f.store, masterKey: try MasterKey.generate(), clock: f.manual.clock, audit: log)
        sessions = SessionService(
            store: f.store,
            hasher: f.hasher,
            factors: factors,
            policy: policy,
            clock: f.manual.clock,
            audit: log
        )
    }

    /// Adds a user with an active TOTP factor; returns its secret.
    @discardableResult
    func user(
        _ name: String,
        groups: [String] = [],
        password: String = "a long enough password"
    ) async throws -> [UInt8] {
        try await accounts.add(name: name, password: password, groups: groups, actor: "root")
        let e = try await factors.enrolTOTP(userName: name, actor: "root")
        let secret = Base32.decode(e.secret) ?? []
        try await factors.confirmTOTP(userId: try await accounts.get(name).id, code: code(secret), actor: name)
        f.manual.advance(30)
        return secret
    }

    func code(_ secret: [UInt8]) -> String {
        (try? OTP.totp(secret: secret, unixTime: f.manual.clock.now())) ?? "no-code"
    }
}

@Suite struct SessionTests {
    @Test func fullSignInGivesMFASessionWithAmrAndAuthTime() async throws {
        let b = try Broker()
        let secret = try await b.user("alice", groups: ["deploy"])
        let step1 = try await b.sessions.signIn(name: "alice", password: "a long enough password", address: "10.0.0.1")
        #expect(step1.needsFactor)
        #expect(step1.allowedFactors == [.totp])
        #expect(step1.session.state == .pending)
        await #expect(throws: BrokerError.mfaRequired) { try await b.sessions.requireMFA(token: step1.token) }
        let mfa = try await b.sessions.completeFactor(
            pendingToken: step1.token,
            proof: .totp(b.code(secret)),
            address: "10.0.0.1"
        )
        #expect(mfa.token.hasPrefix("sps_") && mfa.token.count == 4 + 43)
        let s = try await b.sessions.requireMFA(token: mfa.token)
        #expect(s.amr == ["pwd", "otp"])
        #expect(s.authTime == b.f.manual.clock.now())
        #expect(s.groups == ["deploy"])
        // The pending token no longer works; only the token's hash is stored.
        await #expect(throws: BrokerError.invalidSession) { try await b.sessions.authenticate(token: step1.token) }
        await #expect(try b.f.store.session(id: s.id)?.tokenHash == (try Crypto.sha256(Array(mfa.token.utf8))))
        let signin = try await b.log.events().last
        #expect(signin?.action == "signin" && signin?.factors == ["pwd", "otp"])
    }

    @Test func backupCodeSignInIsNamedBkp() async throws {
        let b = try Broker()
        try await b.user("alice")
        let codes = try await b.factors.regenerateBackupCodes(userName: "alice", actor: "alice")
        let p = try await b.sessions.signIn(name: "alice", password: "a long enough password", address: "a")
        let mfa = try await b.sessions.completeFactor(pendingToken: p.token, proof: .backupCode(codes[3]), address: "a")
        #expect(mfa.session.amr == ["pwd", "bkp"])
        let p2 = try await b.sessions.signIn(name: "alice", password: "a long enough password", address: "a")
        await #expect(throws: BrokerError.invalidFactor) {
            try await b.sessions.completeFactor(pendingToken: p2.token, proof: .backupCode(codes[3]), address: "a")
        }
    }

    @Test func replayedTOTPIsRefusedAtSignIn() async throws {
        let b = try Broker()
        let secret = try await b.user("alice")
        let code = b.code(secret)
        let p = try await b.sessions.signIn(name: "alice", password: "a long enough password", address: "a")
        _ = try await b.sessions.completeFactor(pendingToken: p.token, proof: .totp(code), address: "a")
        let p2 = try await b.sessions.signIn(name: "alice", password: "a long enough password", address: "a")
        await #expect(throws: BrokerError.factorReplay) {
            try await b.sessions.completeFactor(pendingToken: p2.token, proof: .totp(code), address: "a")
        }
    }

    @Test func unknownUserAndWrongPasswordAreIndistinguishable() async throws {
        let b = try Broker()
        try await b.user("alice")
        var errors: [BrokerError] = []
        for name in ["alice", "mallory"] {
            do {
                _ = try await b.sessions.signIn(name: name, password: "wrong password!!", address: "x")
            } catch let e as BrokerError { errors.append(e) }
        }
        #expect(errors.count == 2)
        #expect(errors[0] == .invalidCredentials && errors[1] == .invalidCredentials)
        #expect(errors[0].detail == errors[1].detail)
        // Both paths counted the same throttle failure.
        await #expect(try b.f.store.throttle(key: "acct:alice")?.failures == 1)
        await #expect(try b.f.store.throttle(key: "acct:mallory")?.failures == 1)
    }

    @Test func disabledAccountGivesTheSameError() async throws {
        let b = try Broker()
        try await b.user("alice")
        try await b.accounts.setDisabled("alice", true, actor: "root")
        await #expect(throws: BrokerError.invalidCredentials) {
            _ = try await b.sessions.signIn(name: "alice", password: "a long enough password", address: "x")
        }
    }

    @Test func passwordThrottlingGrowsAndClearsOnSuccess() async throws {
        let b = try Broker()
        try await b.user("alice")
        for _ in 0..<3 {
            await #expect(throws: BrokerError.invalidCredentials) {
                _ = try await b.sessions.signIn(name: "alice", password: "wrong password!!", address: "1.2.3.4")
            }
        }
        // Fourth attempt comes too soon: throttled even with the right password, and from another address.
        do {
            _ = try await b.sessions.signIn(name: "alice", password: "a long enough password", address: "5.6.7.8")
            Issue.record("expected throttling")
        } catch let e as BrokerError {
            #expect(e == .throttled && e.retryAfter == 2)
        }
        b.f.manual.advance(2)
        await #expect(throws: BrokerError.invalidCredentials) {
            _ = try await b.sessions.signIn(name: "alice", password: "wrong password!!", address: "1.2.3.4")
        }
        b.f.manual.advance(2)
        do {
            _ = try await b.sessions.signIn(name: "alice", password: "wrong password!!", address: "9.9.9.9")
        } catch let e as BrokerError {
            #expect(e == .throttled && e.retryAfter == 2)  // 4 failures: delay 4 s, 2 s elapsed
        }
        b.f.manual.advance(2)
        let ok = try await b.sessions.signIn(name: "alice", password: "a long enough password", address: "9.9.9.9")
        #expect(ok.needsFactor)
        await #expect(try b.f.store.throttle(key: "acct:alice") == nil)
    }

    @Test func perAddressThrottlingAcrossAccounts() async throws {
        let b = try Broker()
        for name in ["u1", "u2", "u3"] {
            await #expect(throws: BrokerError.invalidCredentials) {
                _ = try await b.sessions.signIn(name: name, password: "wrong password!!", address: "6.6.6.6")
            }
        }
        await #expect(throws: BrokerError.throttled) {
            _ = try await b.sessions.signIn(name: "u4", password: "wrong password!!", address: "6.6.6.6")
        }
    }

    @Test func lockoutAfterFactorFailuresAndAdminUnlock() async throws {
        var policy = AuthPolicy.default
        policy.throttle = Throttle.Policy(freeFailures: 100, lockoutAfterFactorFailures: 3)
        let b = try Broker(policy: policy)
        let secret = try await b.user("alice")
        let p = try await b.sessions.signIn(name: "alice", password: "a long enough password", address: "a")
        let wrong = b.code(secret) == "000000" ? "111111" : "000000"
        for _ in 0..<2 {
            await #expect(throws: BrokerError.invalidFactor) {
                try await b.sessions.completeFactor(pendingToken: p.token, proof: .totp(wrong), address: "a")
            }
        }
        await #expect(throws: BrokerError.accountLocked) {
            try await b.sessions.completeFactor(pendingToken: p.token, proof: .totp(wrong), address: "a")
        }
        await #expect(try b.accounts.get("alice").locked)
        // The locked state answers exactly like a wrong password: no oracle for the right one.
        await #expect(throws: BrokerError.invalidCredentials) {
            _ = try await b.sessions.signIn(name: "alice", password: "a long enough password", address: "a")
        }
        await #expect(try b.log.events().contains { $0.action == "lockout" && $0.subject == "alice" })
        try await b.accounts.unlock("alice", actor: "root")
        let p2 = try await b.sessions.signIn(name: "alice", password: "a long enough password", address: "a")
        _ = try await b.sessions.completeFactor(pendingToken: p2.token, proof: .totp(b.code(secret)), address: "a")
    }

    @Test func idleAndAbsoluteExpiryWithInjectedClock() async throws {
        var policy = AuthPolicy.default
        policy.idleSeconds = 600
        policy.absoluteSeconds = 1500
        let b = try Broker(policy: policy)
        let secret = try await b.user("alice")
        let p = try await b.sessions.signIn(name: "alice", password: "a long enough password", address: "a")
        let mfa = try await b.sessions.completeFactor(pendingToken: p.token, proof: .totp(b.code(secret)), address: "a")
        b.f.manual.advance(599)
        _ = try await b.sessions.authenticate(token: mfa.token)  // slides the idle expiry
        b.f.manual.advance(599)
        _ = try await b.sessions.authenticate(token: mfa.token)
        b.f.manual.advance(301)  // 1499 s since sign-in: still inside the absolute limit
        _ = try await b.sessions.authenticate(token: mfa.token)
        b.f.manual.advance(1)
        await #expect(throws: BrokerError.invalidSession) { try await b.sessions.authenticate(token: mfa.token) }

        let p2 = try await b.sessions.signIn(name: "alice", password: "a long enough password", address: "a")
        b.f.manual.advance(30)
        let mfa2 = try await b.sessions.completeFactor(
            pendingToken: p2.token,
            proof: .totp(b.code(secret)),
            address: "a"
        )
        b.f.manual.advance(600)
        await #expect(throws: BrokerError.invalidSession) { try await b.sessions.authenticate(token: mfa2.token) }
    }

    @Test func pendingSessionExpires() async throws {
        let b = try Broker()
        let secret = try await b.user("alice")
        let p = try await b.sessions.signIn(name: "alice", password: "a long enough password", address: "a")
        b.f.manual.advance(301)
        await #expect(throws: BrokerError.invalidSession) {
            try await b.sessions.completeFactor(pendingToken: p.token, proof: .totp(b.code(secret)), address: "a")
        }
    }

    @Test func stepUpRefreshesAuthTimeAndSignOutEnds() async throws {
        let b = try Broker()
        let secret = try await b.user("alice")
        let codes = try await b.factors.regenerateBackupCodes(userName: "alice", actor: "alice")
        let p = try await b.sessions.signIn(name: "alice", password: "a long enough password", address: "a")
        let mfa = try await b.sessions.completeFactor(pendingToken: p.token, proof: .totp(b.code(secret)), address: "a")
        b.f.manual.advance(120)
        await #expect(throws: BrokerError.invalidFactor) {  // the sign-in code, four steps later: outside the window
            try await b.sessions.stepUp(
                token: mfa.token,
                proof: .totp(try OTP.totp(secret: secret, unixTime: b.f.manual.clock.now() - 120)),
                address: "a"
            )
        }
        let s = try await b.sessions.stepUp(token: mfa.token, proof: .backupCode(codes[0]), address: "a")
        #expect(s.authTime == b.f.manual.clock.now())
        #expect(s.amr == ["pwd", "otp", "bkp"])
        let p2 = try await b.sessions.signIn(name: "alice", password: "a long enough password", address: "a")
        await #expect(throws: BrokerError.mfaRequired) {
            _ = try await b.sessions.stepUp(token: p2.token, proof: .backupCode(codes[1]), address: "a")
        }
        try await b.sessions.signOut(token: mfa.token)
        await #expect(throws: BrokerError.invalidSession) { try await b.sessions.authenticate(token: mfa.token) }
        await #expect(throws: BrokerError.invalidSession) { try await b.sessions.signOut(token: mfa.token) }
    }

    @Test func policyExemptionIsExplicitAndFactorsNarrowPerGroup() async throws {
        let policy = try AuthPolicy.load(
            yaml: """
                mfa:
                  exempt_groups: [robots]
                  group_factors:
                    admins: [totp]
                """
        )
        #expect(policy.requiresMFA(groups: []))
        #expect(policy.requiresMFA(groups: ["robots", "admins"]))
        #expect(!policy.requiresMFA(groups: ["robots"]))
        #expect(policy.allowedFactors(groups: ["admins"]) == [.totp])
        #expect(policy.allowedFactors(groups: ["dev"]) == [.totp, .webauthn, .backup])
        #expect(throws: BrokerError.invalidRequest) { try AuthPolicy.load(yaml: "mfa: {factors: [sms]}") }
        #expect(throws: BrokerError.invalidRequest) { try AuthPolicy.load(yaml: "sessions: {idle_seconds: 0}") }

        let b = try Broker(policy: policy)
        try await b.accounts.add(name: "bot", password: "a long enough password", groups: ["robots"], actor: "root")
        let r = try await b.sessions.signIn(name: "bot", password: "a long enough password", address: "a")
        #expect(!r.needsFactor && r.session.amr == ["pwd"] && r.session.isMFA)

        try await b.user("root", groups: ["admins"])
        let codes = try await b.factors.regenerateBackupCodes(userName: "root", actor: "root")
        let p = try await b.sessions.signIn(name: "root", password: "a long enough password", address: "a")
        #expect(p.allowedFactors == [.totp])
        await #expect(throws: BrokerError.factorNotAllowed) {
            try await b.sessions.completeFactor(pendingToken: p.token, proof: .backupCode(codes[0]), address: "a")
        }
        await #expect(try b.factors.backupCodesLeft(userId: try b.accounts.get("root").id) == 10)
    }
}

@Suite struct EnumerationTimingTests {
    /// An unknown user costs what a wrong password costs: the sign-in verifies the password against the hasher's
    /// dummy hash, which is an Argon2id hash with exactly the production parameters (so one Argon2id verification of
    /// the same cost runs either way), and both answers are the same error with the same audit shape. Checked by
    /// structure, not by a stopwatch (no timing threshold in a unit test).
    @Test func unknownUserDoesTheSameWorkAsAWrongPassword() async throws {
        let hasher = try PasswordHasher(parameters: .owasp)
        let dummy = try #require(PasswordHasher.parameters(of: hasher.dummyHash))
        #expect(dummy.memoryKiB == 19_456 && dummy.iterations == 2 && dummy.parallelism == 1)
        #expect(!hasher.needsRehash(hasher.dummyHash))
        let real = try #require(PasswordHasher.parameters(of: try hasher.hash("a long enough password")))
        #expect(real.memoryKiB == dummy.memoryKiB && real.iterations == dummy.iterations)
        #expect(real.parallelism == dummy.parallelism)
        let b = try Broker()
        try await b.user("alice")
        var errors: [BrokerError] = []
        for name in ["alice", "nobody"] {
            do { _ = try await b.sessions.signIn(name: name, password: "wrong password!!", address: "t") } catch let e
                as BrokerError
            {
                errors.append(e)
            }
        }
        #expect(errors.count == 2 && errors.allSatisfy { $0 == .invalidCredentials && $0.detail == errors[0].detail })
        let failures = try await b.log.events().filter { $0.action == "signin.password" && $0.result == "failure" }
        #expect(failures.map(\.reason) == ["bad_password", "unknown_user"])
    }
}
