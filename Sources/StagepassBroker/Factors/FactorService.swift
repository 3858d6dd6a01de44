import StagepassJOSE

/// What a TOTP enrolment returns, once: the secret, its `otpauth://` URI and the URI as a QR code.
public struct TOTPEnrolment: Sendable {
    public var factorId: String
    /// Base32 secret (RFC 4648 §6, unpadded).
    public var secret: String
    public var uri: String
    /// The URI as a QR code (``QRCode/svg(moduleSize:border:)``, ``QRCode/terminal(border:)``).
    public var qr: QRCode
}

/// A factor as shown to users and admins (no secret).
public struct FactorInfo: Sendable, Hashable, Codable {
    public var id: String
    public var kind: FactorKind
    public var state: FactorState
    public var createdAt: Int64
    /// When the factor last proved its user (sign-in, step-up, approval); nil if never.
    public var lastUsedAt: Int64?
}

/// Second factors: TOTP (RFC 6238) and one-time backup codes; the model leaves room for WebAuthn.
///
/// TOTP seeds are 160-bit (RFC 4226 §4 R6 recommends 160), sealed with ``MasterKey`` (aad = factor id). A factor is
/// `pending` until the first correct code. A code is accepted once: the accepted time step is recorded atomically and
/// a code for the same or an older step is refused (RFC 6238 §5.2).
public struct FactorService: Sendable {
    public let store: any BrokerStore
    public let masterKey: MasterKey
    public let clock: BrokerClock
    public let audit: any AuditSink
    public let issuer: String

    /// Number of backup codes per set.
    public static let backupCodeCount = 10

    public init(
        store: any BrokerStore,
        masterKey: MasterKey,
        clock: BrokerClock,
        audit: any AuditSink,
        issuer: String = "Stagepass"
    ) {
        self.store = store
        self.masterKey = masterKey
        self.clock = clock
        self.audit = audit
        self.issuer = issuer
    }

    func userRecord(_ name: String) async throws -> UserRecord {
        guard let u = try await store.user(named: name) else { throw BrokerError.notFound("no user named \(name)") }
        return u
    }

    /// The user's factors, without secrets.
    public func list(userId: String) async throws -> [FactorInfo] {
        try await store.factors(ofUser: userId).map {
            FactorInfo(id: $0.id, kind: $0.kind, state: $0.state, createdAt: $0.createdAt, lastUsedAt: $0.lastUsedAt)
        }
    }

    /// True when the user has an active factor of one of `kinds`.
    public func hasActiveFactor(userId: String, kinds: Set<FactorKind>) async throws -> Bool {
        try await store.factors(ofUser: userId).contains { $0.state == .active && kinds.contains($0.kind) }
    }

    // MARK: TOTP

    /// Starts a TOTP enrolment for `userName`: a new pending factor (replacing any earlier pending TOTP factor).
    /// A user changing their own factors must be authorised first
    /// (``SessionService/authorizeFactorChange(token:)``); `authorisedBy` names what authorised it in the audit
    /// record (an administrator's command passes nil: the actor is the authority).
    /// - Throws: ``BrokerError/notFound(_:)`` for an unknown user.
    public func enrolTOTP(userName: String, actor: String, authorisedBy: String? = nil) async throws -> TOTPEnrolment {
        let user = try await userRecord(userName)
        let secret = try Crypto.randomBytes(20)
        let id = "f_" + Base64URL.encode(try Crypto.randomBytes(12))
        let box = try masterKey.seal(secret, factorId: id)
        try await store.deletePendingFactors(userId: user.id, kind: .totp)
        try await store.insertFactor(
            FactorRecord(
                id: id,
                userId: user.id,
                kind: .totp,
                state: .pending,
                secretBox: box,
                createdAt: clock.now()
            )
        )
        try await audit.record(
            AuditEvent(
                action: "factor.enrol",
                actor: actor,
                subject: userName,
                factors: ["otp"],
                details: Self.authorised(["factor_id": id, "method": "totp", "state": "pending"], by: authorisedBy)
            )
        )
        let uri = OTP.otpauthURI(secret: secret, account: userName, issuer: issuer)
        let qr = try QRCode.encode(Array(uri.utf8))
        return TOTPEnrolment(factorId: id, secret: Base32.encode(secret), uri: uri, qr: qr)
    }

    /// Normalises a typed TOTP code (spaces removed) and checks it is exactly 6 digits.
    static func normalizeTOTP(_ code: String) throws -> String {
        let c = String(code.filter { $0 != " " })
        guard c.utf8.count == 6, c.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else {
            throw BrokerError.invalidRequest("a TOTP code is 6 digits")
        }
        return c
    }

    /// Confirms a pending TOTP enrolment with its first correct code, which activates it.
    /// - Throws: ``BrokerError/invalidFactor`` for a wrong code, ``BrokerError/noFactor(_:)`` when nothing is pending.
    @discardableResult
    public func confirmTOTP(
        userId: String,
        code: String,
        actor: String,
        authorisedBy: String? = nil
    ) async throws
        -> FactorInfo
    {
        let c = try Self.normalizeTOTP(code)
        let pending = try await store.factors(ofUser: userId).filter { $0.kind == .totp && $0.state == .pending }
        guard !pending.isEmpty else { throw BrokerError.noFactor("no TOTP enrolment is waiting for confirmation") }
        let f = try await verifyTOTP(candidates: pending, code: c)
        try await store.setFactorState(id: f.id, .active)
        let now = clock.now()
        try await store.touchFactor(id: f.id, at: now)
        let name = try await store.user(id: userId)?.name
        try await audit.record(
            AuditEvent(
                action: "factor.confirm",
                actor: actor,
                subject: name,
                factors: ["otp"],
                details: Self.authorised(["factor_id": f.id, "method": "totp"], by: authorisedBy)
            )
        )
        return FactorInfo(id: f.id, kind: .totp, state: .active, createdAt: f.createdAt, lastUsedAt: now)
    }

    /// Verifies a TOTP code against the user's TOTP factors (active ones; pending ones too when `allowPending`,
    /// which then become active: the first correct code activates a factor). Returns the factor used.
    /// - Throws: ``BrokerError/invalidFactor``, ``BrokerError/factorReplay``, ``BrokerError/noFactor(_:)``.
    public func verifyTOTP(userId: String, code: String, allowPending: Bool) async throws -> FactorRecord {
        let c = try Self.normalizeTOTP(code)
        let candidates = try await store.factors(ofUser: userId).filter {
            $0.kind == .totp && ($0.state == .active || allowPending)
        }
        guard !candidates.isEmpty else { throw BrokerError.noFactor("no TOTP factor is enrolled") }
        let f = try await verifyTOTP(candidates: candidates, code: c)
        if f.state == .pending { try await store.setFactorState(id: f.id, .active) }
        return f
    }

    private func verifyTOTP(candidates: [FactorRecord], code: String) async throws -> FactorRecord {
        let now = clock.now()
        for f in candidates {
            guard let box = f.secretBox else { continue }
            let secret = try masterKey.open(box, factorId: f.id)
            guard let step = OTP.matchingStep(secret: secret, code: code, unixTime: now) else { continue }
            guard try await store.claimTOTPStep(factorId: f.id, step: step) else { throw BrokerError.factorReplay }
            return f
        }
        throw BrokerError.invalidFactor
    }

    /// Removes a factor of the user; proofs made with it stop counting in every session.
    public func remove(userId: String, factorId: String, actor: String, authorisedBy: String? = nil) async throws {
        guard let f = try await store.factor(id: factorId), f.userId == userId else {
            throw BrokerError.notFound("no such factor")
        }
        try await store.deleteFactor(id: factorId)
        if f.kind == .backup { try await store.replaceBackupCodes(userId: userId, hashes: []) }
        try await store.forgetProofs(userId: userId, credentials: [factorId])
        try await audit.record(
            AuditEvent(
                action: "factor.remove",
                actor: actor,
                subject: try await store.user(id: userId)?.name,
                details: Self.authorised(["factor_id": factorId, "method": f.kind.rawValue], by: authorisedBy)
            )
        )
    }

    static func authorised(_ details: [String: String], by: String?) -> [String: String] {
        var d = details
        if let by { d["authorised_by"] = by }
        return d
    }

    // MARK: backup codes

    /// Generates a fresh set of ``backupCodeCount`` one-time codes (`xxxxx-xxxxx`, 50 random bits each), replacing
    /// and invalidating any earlier set. The codes are returned once; only their hashes are stored.
    public func regenerateBackupCodes(
        userName: String,
        actor: String,
        authorisedBy: String? = nil
    ) async throws -> [String] {
        let user = try await userRecord(userName)
        var codes: [String] = []
        for _ in 0..<Self.backupCodeCount {
            let s = Base32.encode(try Crypto.randomBytes(7)).lowercased()
            let ten = String(s.prefix(10))
            codes.append(String(ten.prefix(5)) + "-" + String(ten.suffix(5)))
        }
        try await store.replaceBackupCodes(
            userId: user.id,
            hashes: codes.map { try Self.backupHash(userId: user.id, $0) }
        )
        let old = try await store.factors(ofUser: user.id).filter { $0.kind == .backup }.map(\.id)
        for id in old { try await store.deleteFactor(id: id) }
        try await store.forgetProofs(userId: user.id, credentials: Set(old))
        let id = "f_" + Base64URL.encode(try Crypto.randomBytes(12))
        try await store.insertFactor(
            FactorRecord(
                id: id,
                userId: user.id,
                kind: .backup,
                state: .active,
                secretBox: nil,
                createdAt: clock.now()
            )
        )
        try await audit.record(
            AuditEvent(
                action: "factor.enrol",
                actor: actor,
                subject: userName,
                factors: ["bkp"],
                details: Self.authorised(
                    ["factor_id": id, "method": "backup", "count": String(codes.count)],
                    by: authorisedBy
                )
            )
        )
        return codes
    }

    /// SHA-256 over a domain tag, the user id and the normalised code (lower case, no dashes or spaces).
    static func backupHash(userId: String, _ code: String) throws -> [UInt8] {
        let normal = String(code.lowercased().filter { $0 != "-" && $0 != " " })
        return try Crypto.sha256(Array("stagepass-backup-code\u{0}\(userId)\u{0}\(normal)".utf8))
    }

    /// Uses one backup code: compares against every unused code in constant time, then consumes the match atomically.
    /// - Returns: the id of the user's (active) backup-code factor.
    /// - Throws: ``BrokerError/invalidFactor`` for an unknown or already used code, ``BrokerError/noFactor(_:)``.
    @discardableResult
    public func useBackupCode(userId: String, code: String) async throws -> String {
        let trimmed = code.filter { $0 != " " }
        guard (10...11).contains(trimmed.utf8.count) else {
            throw BrokerError.invalidRequest("a backup code is xxxxx-xxxxx")
        }
        let unused = try await store.unusedBackupCodes(userId: userId)
        guard
            let factor = try await store.factors(ofUser: userId).first(where: {
                $0.kind == .backup && $0.state == .active
            })
        else {
            throw BrokerError.noFactor("no backup codes were generated")
        }
        let h = try Self.backupHash(userId: userId, trimmed)
        var match: Int64?
        for r in unused where Crypto.constantTimeEqual(r.codeHash, h) && match == nil { match = r.id }
        guard let match, try await store.consumeBackupCode(id: match, at: clock.now()) else {
            throw BrokerError.invalidFactor
        }
        return factor.id
    }

    /// Unused backup codes left.
    public func backupCodesLeft(userId: String) async throws -> Int {
        try await store.unusedBackupCodes(userId: userId).count
    }

    // MARK: master-key rotation

    /// Re-encrypts every stored factor secret from this service's master key to `newKey`, in one transaction: if any
    /// secret does not open under the current key nothing changes. Returns the number of secrets re-encrypted.
    /// - Throws: ``BrokerError/masterKey(_:)``.
    public func rotateMasterKey(to newKey: MasterKey, actor: String) async throws -> Int {
        var boxes: [String: [UInt8]] = [:]
        for kind in FactorKind.allCases {
            for f in try await store.factors(kind: kind) {
                guard let box = f.secretBox else { continue }
                let secret = try masterKey.open(box, factorId: f.id)
                boxes[f.id] = try newKey.seal(secret, factorId: f.id)
            }
        }
        try await store.replaceSecretBoxes(boxes)
        try await audit.record(
            AuditEvent(
                action: "masterkey.rotate",
                actor: actor,
                details: [
                    "secrets": String(boxes.count), "from": masterKey.fingerprint,
                    "to": newKey.fingerprint,
                ]
            )
        )
        return boxes.count
    }
}
