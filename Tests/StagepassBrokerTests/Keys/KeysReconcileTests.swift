import Foundation
import StagepassBroker
import StagepassJOSE
import Testing

/// Audit before effect for key changes, and the reconciliation of the keyring with the audit log at start
/// (``KeyStore/reconcile()``).
@Suite("Keys: audit before effect and reconciliation")
struct KeysReconcileTests {
    static let t0: Int64 = 1_800_000_000

    /// An audit sink that refuses every record.
    struct RefusingSink: AuditSink {
        struct Refused: Error {}
        func recordBlocking(_ event: AuditEvent) throws { throw Refused() }
        func keyEvents() throws -> [AuditEvent]? { [] }
    }

    /// A sink holding a copy of `events`.
    func sink(_ events: [AuditEvent]) async throws -> MemoryAuditSink {
        let s = MemoryAuditSink()
        for e in events { try await s.record(e) }
        return s
    }

    @Test func aChangeRecordsItsIntentFirstAndItsCompletionWithTheSameChangeID() async throws {
        let dir = try TempDir()
        let audit = MemoryAuditSink()
        let store = try makeStore(dir.keys, clock: ManualClock(Self.t0), audit: audit)
        let first = try await store.rotate()
        let events = audit.events
        let intent = try #require(events.first)
        #expect(intent.action == "key.rotate.intent")
        let change = try #require(intent.details["change"])
        #expect(intent.details["kid.\(first.activeKid)"] == "none->active")
        #expect(intent.details["kid.\(first.nextKid)"] == "none->next")
        let completions = events.dropFirst()
        #expect(completions.map(\.action) == ["key.generate", "key.generate", "key.rotate"])
        #expect(completions.allSatisfy { $0.details["change"] == change })

        let second = try await store.rotate(force: true)
        let intent2 = try #require(
            audit.events.first { $0.action == "key.rotate.intent" && $0.details["change"] != change }
        )
        #expect(intent2.details["kid.\(first.activeKid)"] == "active->retiring")
        #expect(intent2.details["kid.\(first.nextKid)"] == "next->active")
        #expect(intent2.details["kid.\(second.nextKid)"] == "none->next")
        #expect(try await store.reconcile().isClean, "a fully audited store needs no repair")
    }

    @Test func anAuditLogThatRefusesTheIntentLeavesTheStoreUnchanged() async throws {
        let dir = try TempDir()
        let clock = ManualClock(Self.t0)
        _ = try await makeStore(dir.keys, clock: clock).rotate()
        let before = try snapshot(dir.keys)
        let store = try KeyStore(
            configuration: KeyStoreConfiguration(
                directory: dir.keys,
                passphrase: .passphrase("correct horse"),
                clock: clock.clock,
                audit: RefusingSink(),
                rsaBits: 2048
            )
        )
        await #expect(throws: KeyStoreError.auditFailure) { try await store.rotate(force: true) }
        #expect(try snapshot(dir.keys) == before, "audit before effect: nothing written")
    }

    @Test func aStateWithoutARecordIsRecoveredOnceAndLoudly() async throws {
        let dir = try TempDir()
        let clock = ManualClock(Self.t0)
        let full = MemoryAuditSink()
        let store = try makeStore(dir.keys, clock: clock, audit: full)
        let first = try await store.rotate()
        let second = try await store.rotate(force: true)
        // The last rotation's completion never reached the log (a kill between the keyring write and the records).
        let lastChange = try #require(full.events.last?.details["change"])
        let partial = try await sink(
            full.events.filter { $0.details["change"] != lastChange || $0.action.hasSuffix(".intent") }
        )

        let reopened = try makeStore(dir.keys, clock: clock, audit: partial)
        let report = try await reopened.reconcile()
        #expect(report.checked)
        #expect(Set(report.recovered) == [first.activeKid, first.nextKid, second.nextKid])
        #expect(report.abandoned.isEmpty)
        let recovered = partial.events.filter { $0.action == "key.recovered" }
        #expect(recovered.count == 3)
        #expect(recovered.allSatisfy { $0.actor == "broker" && $0.details["change"] == lastChange })
        let byKid = Dictionary(uniqueKeysWithValues: recovered.map { ($0.details["kid"] ?? "", $0.details["state"]) })
        #expect(byKid[first.activeKid] == "retiring")
        #expect(byKid[first.nextKid] == "active")
        #expect(byKid[second.nextKid] == "next")
        #expect(recovered.allSatisfy { ($0.details["missing"] ?? "").contains("completion record of key.rotate") })

        #expect(try await reopened.reconcile().isClean, "reported once")
        #expect(partial.events.filter { $0.action == "key.recovered" }.count == 3)
    }

    @Test func anEmptyAuditLogGetsEveryKeyRecovered() async throws {
        let dir = try TempDir()
        let clock = ManualClock(Self.t0)
        let r = try await makeStore(dir.keys, clock: clock).rotate()
        let empty = MemoryAuditSink()
        let report = try await makeStore(dir.keys, clock: clock, audit: empty).reconcile()
        #expect(Set(report.recovered) == [r.activeKid, r.nextKid])
        #expect(
            empty.events.allSatisfy {
                $0.action == "key.recovered" && $0.details["missing"] == "every record of this key"
            }
        )
    }

    @Test func aRecordedStateThatDiffersIsRecoveredNamingTheChange() async throws {
        let dir = try TempDir()
        let clock = ManualClock(Self.t0)
        let full = MemoryAuditSink()
        let r = try await makeStore(dir.keys, clock: clock, audit: full).rotate()
        _ = try await makeStore(dir.keys, clock: clock, audit: MemoryAuditSink()).rotate(force: true)
        // The second rotation went to another sink (a process log): this log still says active/next.
        let report = try await makeStore(dir.keys, clock: clock, audit: full).reconcile()
        #expect(report.recovered.contains(r.activeKid))
        let rec = try #require(full.events.first { $0.action == "key.recovered" && $0.details["kid"] == r.activeKid })
        #expect(rec.details["state"] == "retiring")
        #expect(rec.details["missing"] == "the change from active to retiring")
    }

    @Test func anIntentWithoutEffectIsAbandoned() async throws {
        let dir = try TempDir()
        let clock = ManualClock(Self.t0)
        let audit = MemoryAuditSink()
        let r = try await makeStore(dir.keys, clock: clock, audit: audit).rotate()
        // A rotation recorded its intent, then died before writing the keyring.
        try await audit.record(
            AuditEvent(
                action: "key.rotate.intent",
                actor: "cli:test",
                subject: r.nextKid,
                details: [
                    "change": "0123456789abcdef", "kid.\(r.nextKid)": "next->active",
                    "kid.\(r.activeKid)": "active->retiring",
                ]
            )
        )
        let store = try makeStore(dir.keys, clock: clock, audit: audit)
        let report = try await store.reconcile()
        #expect(report.abandoned == ["0123456789abcdef"])
        #expect(report.recovered.isEmpty, "the keyring is what the log says")
        let abandoned = try #require(audit.events.last)
        #expect(abandoned.action == "key.abandoned" && abandoned.actor == "broker")
        #expect(abandoned.details["intent"] == "key.rotate.intent")
        #expect(abandoned.details["kid.\(r.nextKid)"] == "next->active")
        #expect(try await store.reconcile().isClean, "reported once")
    }

    @Test func leftoverTempAndOrphanFilesAreRemovedAtStart() async throws {
        let dir = try TempDir()
        let clock = ManualClock(Self.t0)
        let audit = MemoryAuditSink()
        let r = try await makeStore(dir.keys, clock: clock, audit: audit).rotate()
        let orphanKid = try JWK(publicKey: PrivateKey.generate(for: .ES256).publicKey(), alg: .ES256).thumbprint()
        for name in [".keyring.json.AbC123.tmp", ".\(r.nextKid).pem.xYz789.tmp", "\(orphanKid).pem"] {
            #expect(FileManager.default.createFile(atPath: "\(dir.keys)/\(name)", contents: Data("x".utf8)))
        }
        let report = try await makeStore(dir.keys, clock: clock, audit: audit).reconcile()
        #expect(Set(report.removedTempFiles) == [".keyring.json.AbC123.tmp", ".\(r.nextKid).pem.xYz789.tmp"])
        #expect(report.destroyedKeyFiles == ["\(orphanKid).pem"])
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.keys)
        #expect(!names.contains { $0.hasSuffix(".tmp") })
        #expect(!names.contains("\(orphanKid).pem"))
        #expect(names.contains("\(r.activeKid).pem") && names.contains("\(r.nextKid).pem"))
    }

    @Test func aSinkThatCannotReadBackChecksOnlyTheFiles() async throws {
        let dir = try TempDir()
        let clock = ManualClock(Self.t0)
        _ = try await makeStore(dir.keys, clock: clock).rotate()
        let store = try KeyStore(
            configuration: KeyStoreConfiguration(
                directory: dir.keys,
                passphrase: .passphrase("correct horse"),
                clock: clock.clock,
                audit: LogAuditSink()
            )
        )
        let report = try await store.reconcile()
        #expect(!report.checked && report.isClean)
    }

    @Test func aMissingDirectoryIsLeftAlone() async throws {
        let dir = try TempDir()
        let report = try await makeStore(dir.keys, clock: ManualClock(Self.t0)).reconcile()
        #expect(report.isClean)
        #expect(!FileManager.default.fileExists(atPath: dir.keys))
    }
}
