import Foundation
import StagepassJOSE

/// The result of walking the audit chain.
public struct AuditVerification: Sendable, Hashable {
    /// Records checked.
    public var count: Int
    /// The first record whose sequence number, previous hash or own hash is wrong; nil when the chain is intact.
    public var firstBadSeq: Int64?
    /// Why that record is bad.
    public var reason: String?
    public var isIntact: Bool { firstBadSeq == nil }
}

/// The append-only, hash-chained audit log; the broker's ``AuditSink``.
///
/// Record `n` stores `seq`, `time`, `prev_hash` (the hash of record `n−1`, 64 zeros for the first), the event as
/// canonical JSON (sorted keys), and `hash = SHA-256(prev_hash bytes || canonical record)` where the canonical record
/// is `{"event":…,"prev":"…","seq":n,"time":t}`. Changing, removing or reordering any record breaks every later hash,
/// and ``verify()`` names the first bad `seq`. (An attacker who can rewrite the whole database can rebuild the chain;
/// export the head hash elsewhere to anchor it.) `record` returns once the SQLite transaction has committed.
public final class HashChainAuditLog: AuditSink {
    public let store: any BrokerStore
    public let clock: BrokerClock
    public static let genesis = String(repeating: "0", count: 64)

    public init(store: any BrokerStore, clock: BrokerClock) {
        self.store = store
        self.clock = clock
    }

    static func canonicalEvent(_ e: AuditEvent) throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try enc.encode(e), as: UTF8.self)
    }

    static func canonicalRecord(seq: Int64, time: Int64, prev: String, event: String) -> String {
        "{\"event\":\(event),\"prev\":\"\(prev)\",\"seq\":\(seq),\"time\":\(time)}"
    }

    static func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

    static func unhex(_ s: String) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < u.count {
            guard let b = UInt8(String(decoding: u[i..<(i + 2)], as: UTF8.self), radix: 16) else { return nil }
            out.append(b)
            i += 2
        }
        return out
    }

    static func chainHash(prev: String, record: String) throws -> String {
        hex(try Crypto.sha256((unhex(prev) ?? []) + Array(record.utf8)))
    }

    /// The chained append of `event`, for a store write that must commit it together with other rows.
    public func chainedEntry(_ event: AuditEvent) throws -> AuditAppend? { try entry(event) }

    public func entry(_ event: AuditEvent) throws -> AuditAppend {
        let json = try Self.canonicalEvent(event)
        let now = clock.now()
        return AuditAppend(time: now, event: json) { last in
            let seq = (last?.seq ?? 0) + 1
            let prev = last?.hash ?? Self.genesis
            let hash = try Self.chainHash(
                prev: prev,
                record: Self.canonicalRecord(seq: seq, time: now, prev: prev, event: json)
            )
            return AuditRow(seq: seq, time: now, prevHash: prev, event: json, hash: hash)
        }
    }

    /// Appends one event (``AuditSink``).
    public func record(_ event: AuditEvent) async throws {
        let e = try entry(event)
        _ = try await store.appendAudit(time: e.time, event: e.event, chain: e.chain)
    }

    /// Appends one event, blocking the calling thread (``AuditSink/recordBlocking(_:)``: the key store).
    public func recordBlocking(_ event: AuditEvent) throws {
        let e = try entry(event)
        _ = try store.appendAuditBlocking(time: e.time, event: e.event, chain: e.chain)
    }

    /// Walks the whole chain and names the first bad record.
    public func verify() async throws -> AuditVerification {
        var walk = ChainWalk()
        var after: Int64 = 0
        while true {
            let page = try await store.auditRows(after: after, limit: 1000)
            if page.isEmpty { break }
            for r in page {
                if let bad = try walk.check(r) { return bad }
                after = r.seq
            }
        }
        return walk.result
    }

    /// Recomputes every hash of `rows` (a whole chain in `seq` order, e.g. a ``StoreSnapshot``'s) exactly as
    /// ``verify()`` does, and names the first bad record.
    public static func verify(rows: [AuditRow]) throws -> AuditVerification {
        var walk = ChainWalk()
        for r in rows {
            if let bad = try walk.check(r) { return bad }
        }
        return walk.result
    }

    /// The chain check, one record at a time from the first: consecutive `seq`s from 1, each `prev_hash` the hash
    /// before it, each hash recomputed from the stored row.
    struct ChainWalk {
        private var expectedSeq: Int64 = 1
        private var prev = HashChainAuditLog.genesis
        private var count = 0

        /// The verdict on a bad record, or nil if `r` is good.
        mutating func check(_ r: AuditRow) throws -> AuditVerification? {
            count += 1
            if r.seq != expectedSeq {
                return AuditVerification(
                    count: count,
                    firstBadSeq: min(r.seq, expectedSeq),
                    reason: "sequence gap: expected \(expectedSeq), found \(r.seq)"
                )
            }
            if r.prevHash != prev {
                return AuditVerification(count: count, firstBadSeq: r.seq, reason: "previous hash does not match")
            }
            let h = try HashChainAuditLog.chainHash(
                prev: r.prevHash,
                record: HashChainAuditLog.canonicalRecord(seq: r.seq, time: r.time, prev: r.prevHash, event: r.event)
            )
            if h != r.hash {
                return AuditVerification(count: count, firstBadSeq: r.seq, reason: "record hash does not match")
            }
            prev = r.hash
            expectedSeq += 1
            return nil
        }

        /// The verdict when every record checked was good.
        var result: AuditVerification { AuditVerification(count: count, firstBadSeq: nil, reason: nil) }
    }

    /// Writes every record as one JSON line: `{"event":{…},"hash":"…","prev_hash":"…","seq":n,"time":t}`.
    public func export(_ write: (String) throws -> Void) async throws {
        var after: Int64 = 0
        while true {
            let page = try await store.auditRows(after: after, limit: 1000)
            if page.isEmpty { return }
            for r in page {
                try write(
                    "{\"event\":\(r.event),\"hash\":\"\(r.hash)\",\"prev_hash\":\"\(r.prevHash)\","
                        + "\"seq\":\(r.seq),\"time\":\(r.time)}"
                )
                after = r.seq
            }
        }
    }

    /// The signing-key events (action `key.…`) in order (``AuditSink/keyEvents()``), blocking the calling thread.
    /// The filter runs in the database: canonical events sort their keys, so each starts with its action
    /// (`{"action":"key.`).
    public func keyEvents() throws -> [AuditEvent]? {
        let rows = try store.auditEventsBlocking(withActionPrefix: "key.")
        return try rows.map { try JSONDecoder().decode(AuditEvent.self, from: Data($0.utf8)) }
            .filter { $0.action.hasPrefix("key.") }
    }

    /// The decoded events in order (tests, admin pages).
    public func events() async throws -> [AuditEvent] {
        var out: [AuditEvent] = []
        var after: Int64 = 0
        while true {
            let page = try await store.auditRows(after: after, limit: 1000)
            if page.isEmpty { return out }
            for r in page {
                out.append(try JSONDecoder().decode(AuditEvent.self, from: Data(r.event.utf8)))
                after = r.seq
            }
        }
    }
}
