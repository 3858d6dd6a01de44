import Testing

@testable import StagepassBroker

@Suite struct AuditLogTests {
    func log() throws -> (SQLiteStore, HashChainAuditLog) {
        let store = try SQLiteStore()
        let log = HashChainAuditLog(store: store, clock: ManualClock(1000).clock)
        for i in 1...5 {
            try log.record(AuditEvent(action: "test", actor: "root", subject: "u\(i)", factors: ["pwd", "otp"]))
        }
        return (store, log)
    }

    @Test func chainVerifiesAndExportsJSONLines() throws {
        let (_, log) = try log()
        let v = try log.verify()
        #expect(v.isIntact && v.count == 5)
        var lines: [String] = []
        try log.export { lines.append($0) }
        #expect(lines.count == 5)
        #expect(
            lines[0].hasPrefix(
                "{\"event\":{\"action\":\"test\",\"actor\":\"root\",\"details\":{},\"factors\":[\"pwd\",\"otp\"]"
            )
        )
        #expect(lines[0].contains("\"prev_hash\":\"\(HashChainAuditLog.genesis)\""))
        #expect(try log.events().map(\.subject) == ["u1", "u2", "u3", "u4", "u5"])
    }

    @Test func tamperedEventIsNamed() throws {
        let (store, log) = try log()
        try store.unsafeExecute("DROP TRIGGER audit_log_no_update")
        try store.unsafeExecute("UPDATE audit_log SET event = replace(event, 'u3', 'u9') WHERE seq = 3")
        let v = try log.verify()
        #expect(v.firstBadSeq == 3)
        #expect(v.reason == "record hash does not match")
    }

    @Test func rehashedRecordBreaksTheNextLink() throws {
        let (store, log) = try log()
        try store.unsafeExecute("DROP TRIGGER audit_log_no_update")
        try store.unsafeExecute("UPDATE audit_log SET hash = 'ab' || substr(hash, 3) WHERE seq = 2")
        #expect(try log.verify().firstBadSeq == 2)
    }

    @Test func deletedRecordIsAGap() throws {
        let (store, log) = try log()
        try store.unsafeExecute("DROP TRIGGER audit_log_no_delete")
        try store.unsafeExecute("DELETE FROM audit_log WHERE seq = 4")
        let v = try log.verify()
        #expect(v.firstBadSeq == 4)
    }

    @Test func emptyLogIsIntact() throws {
        let log = HashChainAuditLog(store: try SQLiteStore(), clock: .system)
        #expect(try log.verify() == AuditVerification(count: 0, firstBadSeq: nil, reason: nil))
    }
}
