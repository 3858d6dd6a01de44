import Foundation

/// One token waiting to be written: its ledger row, its `token.issue` audit record and, for a pipeline's approved
/// request, the request id to claim (``TokenStore/insertTokens(_:)``).
public struct PendingToken: Sendable {
    /// The ledger row; its `seq` is assigned on insert.
    public var token: TokenRecord
    /// The audit record, chained after the record before it in the same transaction.
    public var audit: AuditAppend
    /// With a request id, the request must be `approved` and turns `issued` together with the row.
    public var claimRequest: String?

    public init(token: TokenRecord, audit: AuditAppend, claimRequest: String?) {
        self.token = token
        self.audit = audit
        self.claimRequest = claimRequest
    }
}

extension TokenStore {
    /// A backend without a batched write: one ``insertToken(_:audit:claimRequest:)`` transaction per item, in
    /// order. Correct (each item succeeds or fails alone, the chain stays in order) but one commit per token; a
    /// backend overrides it with one transaction for the whole batch.
    public func insertTokens(_ batch: [PendingToken]) async throws -> [Result<TokenRecord, StoreError>] {
        var out: [Result<TokenRecord, StoreError>] = []
        out.reserveCapacity(batch.count)
        for p in batch {
            do {
                out.append(.success(try await insertToken(p.token, audit: p.audit, claimRequest: p.claimRequest)))
            } catch let e as StoreError {
                out.append(.failure(e))
            }
        }
        return out
    }
}
