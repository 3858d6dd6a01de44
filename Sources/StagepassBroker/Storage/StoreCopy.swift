/// What ``StoreCopy/copy(from:to:)`` copied and checked.
public struct StoreCopyReport: Sendable {
    /// Rows per table, in the order they were written (every count matched the target's).
    public var rows: [(table: String, rows: Int)]
    /// The target's audit chain, verified after the copy.
    public var targetChain: AuditVerification
    /// The hash of the last audit record (the chain's head), the genesis hash for an empty log.
    public var headHash: String
}

/// Moves a broker's database from one backend to another (`stagepass db copy`).
public enum StoreCopy {
    /// Copies every durable record of `source` into the empty `target`, then checks the result.
    ///
    /// 1. Reads the whole source in one read transaction (``StoreTransfer/exportSnapshot()``).
    /// 2. Recomputes the source's audit chain from the rows read (``HashChainAuditLog/verify(rows:)``); a broken
    ///    chain is refused before anything is written.
    /// 3. Writes everything into `target` in one transaction (``StoreTransfer/importSnapshot(_:)``), which refuses a
    ///    non-empty target.
    /// 4. Walks the target's chain with ``HashChainAuditLog/verify()`` (the `stagepass audit verify` walk), reads the
    ///    target back and compares it with the source, table by table: row counts and the records themselves.
    /// - Throws: ``StoreTransferError`` (``StoreTransferError/targetNotEmpty(_:)``,
    ///   ``StoreTransferError/sourceChainBroken(_:)``, ``StoreTransferError/mismatch(_:)``) or a store's error.
    public static func copy(
        from source: any BrokerStore & StoreTransfer,
        to target: any BrokerStore & StoreTransfer
    ) async throws -> StoreCopyReport {
        let snapshot = try await source.exportSnapshot()
        let sourceChain = try HashChainAuditLog.verify(rows: snapshot.audit)
        guard sourceChain.isIntact else { throw StoreTransferError.sourceChainBroken(sourceChain) }
        try await target.importSnapshot(snapshot)

        var problems: [String] = []
        let chain = try await HashChainAuditLog(store: target, clock: .system).verify()
        if !chain.isIntact {
            problems.append("target audit chain BROKEN at seq \(chain.firstBadSeq ?? 0): \(chain.reason ?? "")")
        } else if chain.count != snapshot.audit.count {
            problems.append("target audit chain has \(chain.count) records, source \(snapshot.audit.count)")
        }
        let copied = try await target.exportSnapshot()
        problems += differences(snapshot, copied)
        guard problems.isEmpty else { throw StoreTransferError.mismatch(problems) }
        return StoreCopyReport(
            rows: snapshot.rowCounts,
            targetChain: chain,
            headHash: copied.audit.last?.hash ?? HashChainAuditLog.genesis
        )
    }

    /// One line per table whose rows differ between `a` and `b` (counts first, then contents).
    static func differences(_ a: StoreSnapshot, _ b: StoreSnapshot) -> [String] {
        var out: [String] = []
        for (x, y) in zip(a.rowCounts, b.rowCounts) where x.rows != y.rows {
            out.append("\(x.table): \(x.rows) rows in the source, \(y.rows) in the target")
        }
        guard out.isEmpty else { return out }
        func same<T: Equatable>(_ table: String, _ p: [T], _ q: [T]) {
            if p != q { out.append("\(table): rows differ") }
        }
        same("users", a.users, b.users)
        same("groups", a.groups, b.groups)
        same("memberships", a.memberships, b.memberships)
        same("factors", a.factors, b.factors)
        same("backup_codes", a.backupCodes, b.backupCodes)
        same("webauthn_credentials", a.webAuthnCredentials, b.webAuthnCredentials)
        same("sessions", a.sessions, b.sessions)
        same("clients", a.clients, b.clients)
        same("tokens", a.tokens, b.tokens)
        same("status_lists", a.statusLists, b.statusLists)
        if a.counters != b.counters { out.append("counters: values differ") }
        same("approval_requests", a.requests, b.requests)
        same("approvals", a.approvals, b.approvals)
        same("delegations", a.delegations, b.delegations)
        same("audit_log", a.audit, b.audit)
        same("ci_token_uses", a.ciTokenUses, b.ciTokenUses)
        return out
    }
}
