import Foundation
import Hummingbird
import Mustache
import StagepassBroker
import StagepassJOSE

extension PagesAPI {
    /// The administrator pages: keys, revocations, the audit log. Actions need a fresh factor (``freshAdmin``).
    var adminRoutes: RouteCollection<StagepassRequestContext> {
        let routes = pageRoutes()
        routes.get("/admin/keys") { request, context in
            try await admin(request, context) { pr, s in try await keysPage(pr, s) }
        }
        routes.post("/admin/keys/rotate") { request, context in
            try await admin(request, context) { pr, s in try await rotate(request, pr, s) }
        }
        routes.get("/admin/revocations") { request, context in
            try await admin(request, context) { pr, s in try await revocationsPage(pr, s) }
        }
        routes.post("/admin/revocations") { request, context in
            try await admin(request, context) { pr, s in try await revoke(request, pr, s) }
        }
        routes.get("/admin/audit") { request, context in
            try await admin(request, context) { pr, s in try await auditPage(request, pr, s) }
        }
        routes.post("/admin/audit/verify") { request, context in
            try await admin(request, context) { pr, s in try await verifyAudit(request, pr, s) }
        }
        return routes
    }

    func keysPage(_ pr: PageRequest, _ s: Session, error: String? = nil, notice: String? = nil) async throws -> Response
    {
        let keys = await tokens.keys.keys().reversed().map { k -> [String: Any] in
            [
                "kid": k.kid, "alg": k.alg, "state": k.state.rawValue, "created": time(k.created),
                "activates": time(k.activates), "retires": time(k.retires),
            ]
        }
        return render("keys", title: "Keys", pr, ["keys": Array(keys)], error: error, notice: notice)
    }

    func rotate(_ request: Request, _ pr: PageRequest, _ s: Session) async throws -> Response {
        let f = try pr.form()
        if let step = try await freshAdmin(pr, s, next: "/admin/keys") { return step }
        do {
            let r = try await tokens.rotateKeys(by: s, force: f["force"] == "1")
            return try await keysPage(pr, s, notice: "Rotated: \(r.activeKid) signs now.")
        } catch let e as KeyStoreError where e == .nextNotPrePublished {
            return try await keysPage(pr, s, error: e.detail)
        }
    }

    func revocationsPage(
        _ pr: PageRequest,
        _ s: Session,
        error: String? = nil,
        notice: String? = nil
    ) async throws
        -> Response
    {
        var revoked = 0
        let lists = try await tokens.statusLists.count()
        for n in 1...max(1, lists) { revoked += try await tokens.statusLists.revokedIndices(n).count }
        return render("revocations", title: "Revocations", pr, ["revokedCount": revoked], error: error, notice: notice)
    }

    func revoke(_ request: Request, _ pr: PageRequest, _ s: Session) async throws -> Response {
        let f = try pr.form()
        if let step = try await freshAdmin(pr, s, next: "/admin/revocations") { return step }
        // The page revokes tokens, sessions and users; keys are compromised from the keys' own commands.
        guard let kind = f["kind"], kind != "kid", let what = RevocationRequest(kind: kind, value: f["value"] ?? "")
        else { return try await revocationsPage(pr, s, error: "Choose what to revoke.") }
        do {
            let jtis = try await tokens.revoke(
                what,
                sessionToken: pr.sessionToken ?? "",
                reason: f["reason"].flatMap { $0.isEmpty ? nil : $0 }
            )
            return try await revocationsPage(pr, s, notice: "Revoked \(jtis.count) token(s).")
        } catch {
            return try await revocationsPage(pr, s, error: Self.message(error))
        }
    }

    func auditPage(
        _ request: Request,
        _ pr: PageRequest,
        _ s: Session,
        notice: String? = nil,
        error: String? = nil
    )
        async throws -> Response
    {
        let q = request.uri.queryParameters
        let user = q["user"].map(String.init) ?? ""
        let pipeline = q["pipeline"].map(String.init) ?? ""
        let stage = q["stage"].map(String.init) ?? ""
        let result = q["result"].map(String.init) ?? ""
        var rows: [[String: Any]] = []
        var after: Int64 = 0
        while true {
            let batch = try await broker.store.auditRows(after: after, limit: 1000)
            for row in batch {
                guard let e = try? JSONDecoder().decode(AuditEvent.self, from: Data(row.event.utf8)) else { continue }
                if !user.isEmpty && e.actor != user && e.subject != user { continue }
                if !pipeline.isEmpty && e.details["client"] != pipeline && e.subject != pipeline { continue }
                if !stage.isEmpty && e.details["stage"] != stage { continue }
                if !result.isEmpty && e.result != result { continue }
                rows.append([
                    "seq": row.seq, "time": time(row.time), "action": e.action, "actor": e.actor ?? "",
                    "subject": e.subject ?? "", "result": e.result, "reason": e.reason ?? "",
                    "factors": e.factors.joined(separator: "+"),
                    "details": e.details.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(
                        separator: " "
                    ),
                ])
            }
            guard let last = batch.last, batch.count == 1000 else { break }
            after = last.seq
        }
        // Newest first, at most 500 on one page.
        let shown = Array(rows.reversed().prefix(500))
        return render(
            "audit",
            title: "Audit log",
            pr,
            ["rows": shown, "f": ["user": user, "pipeline": pipeline, "stage": stage]],
            error: error,
            notice: notice ?? "\(rows.count) record(s) match\(rows.count > 500 ? "; the newest 500 are shown" : "")."
        )
    }

    func verifyAudit(_ request: Request, _ pr: PageRequest, _ s: Session) async throws -> Response {
        _ = try pr.form()
        let v = try await broker.audit.verify()
        if v.isIntact {
            return try await auditPage(request, pr, s, notice: "The hash chain is intact: \(v.count) records.")
        }
        return try await auditPage(
            request,
            pr,
            s,
            error: "The hash chain is BROKEN at record \(v.firstBadSeq ?? 0): \(v.reason ?? "")"
        )
    }
}
