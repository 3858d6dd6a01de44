// The fuzz build of the broker leaves out Sources/StagepassBroker/Storage/Postgres (see Fuzz/build.sh): this stands in
// for its one entry point, so the policy target links without PostgresNIO. The policy fuzzer never opens a store.
func openPostgresStore(_ url: String, environment: [String: String]) throws -> any BrokerStore {
    throw StoreError.backend("this build has no PostgreSQL backend")
}
