import Foundation
import Logging
import ServiceLifecycle
import StagepassBroker
import Testing

@testable import StagepassHTTP

/// The background services run in a `ServiceGroup` and end on graceful shutdown (as SIGTERM triggers it).
@Suite struct ServicesTests {
    @Test func keyScheduleRunsAndStopsOnGracefulShutdown() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stagepass-services-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let keys = try KeyStore(
            configuration: KeyStoreConfiguration(
                directory: dir,
                passphrase: .passphrase("correct horse"),
                actor: "test",
                rsaBits: 2048
            )
        )
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: KeyScheduleService(keys: keys, interval: .milliseconds(10)))],
                logger: Logger(label: "test")
            )
        )
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            // The schedule's first tick creates the first keys of an empty store.
            for _ in 0..<500 where await !keys.isInitialized { try await Task.sleep(for: .milliseconds(10)) }
            #expect(await keys.isInitialized)
            await group.triggerGracefulShutdown()
            try await tasks.next()
        }
    }
}
