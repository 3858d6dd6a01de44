public import Logging

/// An audit sink that writes each event as one structured log line: the hook point the CLI uses until the
/// hash-chained audit log exists. Events carry no secrets (see ``AuditEvent``).
public struct LogAuditSink: AuditSink {
    private let logger: Logger

    public init(logger: Logger = Logger(label: "stagepass.audit")) { self.logger = logger }

    public func recordBlocking(_ event: AuditEvent) throws {
        var metadata: Logger.Metadata = ["action": "\(event.action)", "result": "\(event.result)"]
        if let actor = event.actor { metadata["actor"] = "\(actor)" }
        if let subject = event.subject { metadata["subject"] = "\(subject)" }
        if let reason = event.reason { metadata["reason"] = "\(reason)" }
        for (k, v) in event.details { metadata["detail.\(k)"] = "\(v)" }
        logger.notice("audit", metadata: metadata)
    }
}
