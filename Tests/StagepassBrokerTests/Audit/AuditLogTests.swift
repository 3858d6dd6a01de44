import Testing

@testable import StagepassBroker

@Suite struct AuditLogTests {
    func log() async throws -> (SQLiteStore, HashChainAuditLog) {
        let store = try SQLiteStore()
        let log = HashChainAuditLog(store: store, clock: ManualClock(1000).clock)
        for i in 1...5 {
            try await log.record(AuditEvent(action: "test", actor: "root", subject: "u\(i)", factors: ["pwd", "otp"]))
        }
        return (store, log)
    }

    @Test func chainVerifiesAndExportsJSONLines() async throws {
        let (_, log) = try await log()
        let v = try await log.verify()
        #expect(v.isIntact && v.count == 5)
        var lines: [String] = []
        try await log.export { lines.append($0) }
        #expect(lines.count == 5)
        #expect(
            lines[0].hasPrefix(
                "{\"event\":{\"action\":\"test\",\"actor\":\"root\",\"details\":{},\"factors\":[\"pwd\",\"otp\"]"
            )
        )
        #expect(lines[0].contains("\"prev_hash\":\"\(HashChainAuditLog.genesis)\""))
        await #expect(try log.events().map(\.subject) == ["u1", "u2", "u3", "u4", "u5"])
    }

    @Test func tamperedEventIsNamed() async throws {
        let (store, log) = try await log()
        try await store.unsafeExecute("DROP TRIGGER audit_log_no_update")
        try await store.unsafeExecute("UPDATE audit_log SET event = replace(event, 'u3', 'u9') WHERE seq = 3")
        let v = try await log.verify()
        #expect(v.firstBadSeq == 3)
        #expect(v.reason == "record hash does not match")
    }

    @Test func rehashedRecordBreaksTheNextLink() async throws {
        let (store, log) = try await log()
        try await store.unsafeExecute("DROP TRIGGER audit_log_no_update")
        try await store.unsafeExecute("UPDATE audit_log SET hash = 'ab' || substr(hash, 3) WHERE seq = 2")
        await #expect(try log.verify().firstBadSeq == 2)
    }

    @Test func deletedRecordIsAGap() async throws {
        let (store, log) = try await log()
        try await store.unsafeExecute("DROP TRIGGER audit_log_no_delete")
        try await store.unsafeExecute("DELETE FROM audit_log WHERE seq = 4")
        let v = try await log.verify()
        #expect(v.firstBadSeq == 4)
    }

    @Test func emptyLogIsIntact() async throws {
        let log = HashChainAuditLog(store: try SQLiteStore(), clock: .system)
        await #expect(try await log.verify() == AuditVerification(count: 0, firstBadSeq: nil, reason: nil))
    }
}
