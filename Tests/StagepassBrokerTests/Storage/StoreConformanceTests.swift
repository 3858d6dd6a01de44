import Foundation
import Testing

@testable import StagepassBroker

@Suite struct SQLiteStoreTests {
    @Test func migrationsCreateTablesAndEnforceForeignKeys() throws {
        let s = try SQLiteStore()
        let f = FactorRecord(id: "f1", userId: "nobody", kind: .totp, state: .pending, secretBox: [1], createdAt: 0)
        #expect(throws: (any Error).self) { try s.insertFactor(f) }
        #expect(try s.factors(kind: .totp).isEmpty)
    }

    @Test func userNamesAreUniqueAndGroupsRoundTrip() throws {
        let s = try SQLiteStore()
        try s.insertUser(UserRecord(id: "u1", name: "alice", passwordHash: "x", createdAt: 1), groups: ["b", "a"])
        #expect(try s.groups(ofUser: "u1") == ["a", "b"])
        #expect(throws: StoreError.conflict) {
            try s.insertUser(UserRecord(id: "u2", name: "alice", passwordHash: "y", createdAt: 1), groups: [])
        }
        #expect(try s.allUsers().count == 1)
        try s.setGroups(userId: "u1", ["c"])
        #expect(try s.groups(ofUser: "u1") == ["c"])
        #expect(try s.allGroups() == ["a", "b", "c"])
    }

    @Test func totpStepClaimIsCompareAndSet() throws {
        let s = try SQLiteStore()
        try s.insertUser(UserRecord(id: "u1", name: "alice", passwordHash: "x", createdAt: 1), groups: [])
        try s.insertFactor(
            FactorRecord(id: "f1", userId: "u1", kind: .totp, state: .active, secretBox: [1], createdAt: 0)
        )
        #expect(try s.claimTOTPStep(factorId: "f1", step: 10))
        #expect(try !s.claimTOTPStep(factorId: "f1", step: 10))
        #expect(try !s.claimTOTPStep(factorId: "f1", step: 9))
        #expect(try s.claimTOTPStep(factorId: "f1", step: 11))
    }

    @Test func backupCodesAreConsumedOnce() throws {
        let s = try SQLiteStore()
        try s.insertUser(UserRecord(id: "u1", name: "alice", passwordHash: "x", createdAt: 1), groups: [])
        try s.replaceBackupCodes(userId: "u1", hashes: [[1], [2]])
        let codes = try s.unusedBackupCodes(userId: "u1")
        #expect(codes.count == 2)
        #expect(try s.consumeBackupCode(id: codes[0].id, at: 5))
        #expect(try !s.consumeBackupCode(id: codes[0].id, at: 6))
        #expect(try s.unusedBackupCodes(userId: "u1").count == 1)
    }

    @Test func auditLogIsAppendOnly() throws {
        let s = try SQLiteStore()
        _ = try s.appendAudit(time: 1, event: "{}") { prev in
            #expect(prev == nil)
            return AuditRow(seq: 1, time: 1, prevHash: "0", event: "{}", hash: "h")
        }
        #expect(throws: (any Error).self) { try s.unsafeExecute("UPDATE audit_log SET event = 'x'") }
        #expect(throws: (any Error).self) { try s.unsafeExecute("DELETE FROM audit_log") }
        #expect(try s.auditRows(after: 0, limit: 10).count == 1)
    }

    @Test func fileDatabaseUsesWAL() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("broker.sqlite").path
        do {
            let s = try SQLiteStore(path: path)
            try s.insertUser(UserRecord(id: "u1", name: "alice", passwordHash: "x", createdAt: 1), groups: [])
        }
        let again = try SQLiteStore(path: path)
        #expect(try again.user(named: "alice")?.id == "u1")
        #expect(FileManager.default.fileExists(atPath: path + "-wal"))
    }
}
