import Testing

@testable import StagepassBroker

/// PostgreSQL failures map onto the same ``StorageFault`` causes as SQLite's, so either backend's fault answers 503
/// `storage_unavailable`; a constraint or syntax error stays an internal error. The end-to-end case (the server
/// stopped under a live broker, then started again) is `test_chaos_postgres.py`.
@Suite struct PostgresFaultTests {
    static let states: [(String, StorageFault.Cause)] = [
        ("53100", .diskFull), ("25006", .readOnly), ("55P03", .locked), ("40001", .locked), ("40P01", .locked),
        ("XX001", .corrupt), ("XX002", .corrupt), ("58030", .ioError), ("53300", .unreachable),
        ("57P01", .unreachable), ("57P03", .unreachable), ("08006", .unreachable), ("08001", .unreachable),
    ]

    @Test(arguments: states)
    func sqlStatesClassify(state: String, cause: StorageFault.Cause) {
        #expect(PostgresFault.classify(sqlState: state) == cause)
    }

    /// Unique and foreign-key violations, syntax errors, undefined tables: the broker's own business, not a fault.
    @Test(arguments: ["23505", "23503", "42601", "42P01", "22001"])
    func otherStatesAreNotStorageFaults(state: String) {
        #expect(PostgresFault.classify(sqlState: state) == nil)
    }

    /// The fault names the cause and the SQLSTATE only, and asks for a short wait.
    @Test func unreachableFaultsAreShortAndSayWhy() async {
        let fault = StorageFault(.unreachable, sqlState: "57P01")
        #expect(fault.description == "database unreachable (PostgreSQL 57P01)")
        #expect(fault.retryAfter == 5)
        let broker = BrokerError.storageUnavailable(fault)
        #expect(broker.code == "storage_unavailable" && broker.retryAfter == 5)
        #expect(broker.detail.hasPrefix("storage unavailable: database unreachable"))
    }
}
