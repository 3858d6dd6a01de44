import Testing

@testable import StagepassBroker

@Suite struct PasswordHasherTests {
    @Test func owaspDefaultsProducePHCStrings() async throws {
        let h = try PasswordHasher()
        let phc = try h.hash("correct horse battery staple")
        #expect(phc.hasPrefix("$argon2id$v=19$m=19456,t=2,p=1$"))
        #expect(h.verify("correct horse battery staple", against: phc))
        #expect(!h.verify("correct horse battery stapl", against: phc))
    }

    @Test func verifyReadsParametersFromTheStringAndFlagsRehash() async throws {
        let cheap = try PasswordHasher(parameters: .testing)
        let phc = try cheap.hash("a long enough password")
        let strong = try PasswordHasher(parameters: .init(memoryKiB: 512, iterations: 2, parallelism: 1))
        #expect(strong.verify("a long enough password", against: phc))
        #expect(strong.needsRehash(phc))
        #expect(!cheap.needsRehash(phc))
        #expect(!strong.verify("x", against: "$argon2i$garbage"))
        #expect(!strong.verify("x", against: "not a hash"))
    }
}

@Suite struct AccountServiceTests {
    @Test func addListDisableUnlock() async throws {
        let f = try Fixture()
        let u = try await f.accounts.add(
            name: "alice",
            password: "a long enough password",
            groups: ["deploy"],
            actor: "root"
        )
        #expect(u.groups == ["deploy"])
        await #expect(try f.accounts.list().map(\.name) == ["alice"])
        try await f.accounts.setDisabled("alice", true, actor: "root")
        await #expect(try f.accounts.get("alice").disabled)
        try await f.store.setLocked(userId: u.id, true)
        try await f.accounts.unlock("alice", actor: "root")
        await #expect(try !f.accounts.get("alice").locked)
        #expect(f.audit.events.map(\.action) == ["user.add", "user.disable", "user.unlock"])
    }

    @Test(arguments: ["", "Alice", "a b", "-x", String(repeating: "a", count: 65), "é"])
    func badNamesAreRejectedAndChangeNothing(name: String) async throws {
        let f = try Fixture()
        await #expect(throws: BrokerError.invalidRequest) {
            try await f.accounts.add(name: name, password: "a long enough password", actor: "root")
        }
        #expect(try await f.accounts.list().isEmpty)
        #expect(f.audit.events.isEmpty)
    }

    @Test func shortPasswordAndDuplicateNameAreRejected() async throws {
        let f = try Fixture()
        await #expect(throws: BrokerError.invalidRequest) {
            try await f.accounts.add(name: "bob", password: "short", actor: "root")
        }
        try await f.accounts.add(name: "bob", password: "a long enough password", actor: "root")
        await #expect(throws: BrokerError.conflict) {
            try await f.accounts.add(name: "bob", password: "another long password", actor: "root")
        }
        await #expect(try f.accounts.list().count == 1)
    }
}
