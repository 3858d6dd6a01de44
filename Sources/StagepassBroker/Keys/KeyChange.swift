import Foundation

/// What ``KeyStore/reconcile()`` repaired.
public struct KeyReconciliation: Sendable, Hashable {
    /// False when the audit sink cannot read its records back (``LogAuditSink``): only the files were checked.
    public var checked = false
    /// Kids recorded as `key.recovered`: their state in the keyring had no audit record.
    public var recovered: [String] = []
    /// Change ids recorded as `key.abandoned`: an intent whose effect never reached the keyring.
    public var abandoned: [String] = []
    /// Leftover temp files removed (`.<name>.<random>.tmp`).
    public var removedTempFiles: [String] = []
    /// Key files destroyed: orphans no keyring names, or files of keys no longer published.
    public var destroyedKeyFiles: [String] = []

    public init() {}

    /// True when nothing needed repair.
    public var isClean: Bool {
        recovered.isEmpty && abandoned.isEmpty && removedTempFiles.isEmpty && destroyedKeyFiles.isEmpty
    }
}

/// The audit records of key changes: the intent written before a change touches the key store, and the
/// reconciliation of the keyring against the records (``KeyStore/reconcile()``).
///
/// The states the audit log gives each key, in record order:
/// `key.generate`, `key.import`, `key.recovered` (`details.kid` → `details.state`); `key.rotate` (`details.active` →
/// active, `details.next` → next, `details.retiring` → retiring); `key.retire` (subject → retired);
/// `key.compromise` (subject → compromised, `details.active` → active). Intent and `key.abandoned` records change no
/// key's audited state.
enum KeyChange {
    static let changeDetail = "change"
    static let intentSuffix = ".intent"
    static let recoveredAction = "key.recovered"
    static let abandonedAction = "key.abandoned"
    /// Intent details name each changed key as `kid.<kid>` with the value `<from>-><to>` (`none` for a new key).
    static let kidPrefix = "kid."
    /// The broker's own records (reconciliation is the broker repairing itself, whichever process runs it).
    static let brokerActor = "broker"

    /// The action an intent is named after: the most significant completion record of the change.
    static func primaryAction(_ events: [AuditEvent]) -> AuditEvent? {
        for a in ["key.compromise", "key.import", "key.rotate", "key.retire", "key.generate"] {
            if let e = events.first(where: { $0.action == a }) { return e }
        }
        return events.first
    }

    /// The intent record of the change from `old` to `new`: `<action>.intent` with the change id and every key whose
    /// state changes (`kid.<kid>`: `from->to`).
    static func intent(
        from old: Keyring,
        to new: Keyring,
        change: String,
        events: [AuditEvent],
        actor: String?
    ) -> AuditEvent {
        let primary = primaryAction(events)
        var details = [changeDetail: change]
        for r in new.keys {
            let before = old.keys.first { $0.kid == r.kid }?.state
            if before != r.state {
                details[kidPrefix + r.kid] = "\(before?.rawValue ?? "none")->\(r.state.rawValue)"
            }
        }
        return AuditEvent(
            action: (primary?.action ?? "key.change") + intentSuffix,
            actor: actor,
            subject: primary?.subject,
            details: details
        )
    }

    /// Applies one completion record to the audited states.
    static func apply(_ e: AuditEvent, to audited: inout [String: KeyState]) {
        let kid = e.details["kid"] ?? e.subject
        switch e.action {
        case "key.generate", "key.import", recoveredAction:
            if let kid, let s = e.details["state"].flatMap(KeyState.init(rawValue:)) { audited[kid] = s }
        case "key.rotate":
            if let k = e.details["retiring"] { audited[k] = .retiring }
            if let k = e.details["active"] { audited[k] = .active }
            if let k = e.details["next"] { audited[k] = .next }
        case "key.retire":
            if let kid { audited[kid] = .retired }
        case "key.compromise":
            if let kid { audited[kid] = .compromised }
            if let k = e.details["active"] { audited[k] = .active }
        default:
            break
        }
    }

    /// The records that make `history` name every key of `ring` in its current state: `key.abandoned` for each intent
    /// with no completion whose effect the keyring does not show, and `key.recovered` for each key whose state has no
    /// record (with the change id when an intent's completion is what is missing).
    static func repairs(ring: Keyring, history: [AuditEvent]) -> [AuditEvent] {
        var audited: [String: KeyState] = [:]
        var intents: [(id: String, event: AuditEvent)] = []
        var resolved = Set<String>()
        for e in history {
            if e.action.hasSuffix(intentSuffix) {
                if let id = e.details[changeDetail] { intents.append((id, e)) }
                continue
            }
            if let id = e.details[changeDetail] { resolved.insert(id) }
            apply(e, to: &audited)
        }
        let current = Dictionary(ring.keys.map { ($0.kid, $0.state) }, uniquingKeysWith: { _, last in last })
        var out: [AuditEvent] = []
        for (id, intent) in intents where !resolved.contains(id) {
            let action = String(intent.action.dropLast(intentSuffix.count))
            let targets = intent.details.compactMap { k, v -> (kid: String, state: KeyState?)? in
                guard k.hasPrefix(kidPrefix), let to = v.components(separatedBy: "->").last else { return nil }
                return (String(k.dropFirst(kidPrefix.count)), KeyState(rawValue: to))
            }
            .sorted { $0.kid < $1.kid }
            let applied = !targets.isEmpty && targets.allSatisfy { t in t.state != nil && current[t.kid] == t.state }
            if applied {
                for t in targets {
                    guard let state = t.state else { continue }
                    out.append(
                        recovered(
                            kid: t.kid,
                            state: state,
                            missing: "the completion record of \(action)",
                            change: id
                        )
                    )
                    audited[t.kid] = state
                }
            } else {
                var details = intent.details.filter { $0.key.hasPrefix(kidPrefix) }
                details[changeDetail] = id
                details["intent"] = intent.action
                out.append(
                    AuditEvent(
                        action: abandonedAction,
                        actor: brokerActor,
                        subject: intent.subject,
                        reason: "the keyring never showed this change: the process stopped before its keyring write",
                        details: details
                    )
                )
            }
        }
        for r in ring.keys where audited[r.kid] != r.state {
            let missing =
                audited[r.kid].map { "the change from \($0.rawValue) to \(r.state.rawValue)" }
                ?? "every record of this key"
            out.append(recovered(kid: r.kid, state: r.state, missing: missing, change: nil))
            audited[r.kid] = r.state
        }
        return out
    }

    static func recovered(kid: String, state: KeyState, missing: String, change: String?) -> AuditEvent {
        var details = ["kid": kid, "state": state.rawValue, "missing": missing]
        if let change { details[changeDetail] = change }
        return AuditEvent(
            action: recoveredAction,
            actor: brokerActor,
            subject: kid,
            reason: "the keyring holds this key in this state but the audit log did not say so",
            details: details
        )
    }
}
