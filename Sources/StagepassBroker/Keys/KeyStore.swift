import Foundation
public import Logging
public import StagepassJOSE

/// Everything a ``KeyStore`` needs: where the keys live, how they are protected, the schedule, and its collaborators.
public struct KeyStoreConfiguration: Sendable {
    /// The store directory (default `Keys`).
    public var directory: String
    /// The passphrase protecting the key files (see ``KeyPassphrase/resolve(passphraseFile:environment:insecureDev:)``).
    public var passphrase: KeyPassphrase
    /// Rotation and retirement timing.
    public var schedule: KeySchedule
    /// The source of "now" for actions that take no explicit time.
    public var clock: BrokerClock
    /// Where every admin key action is recorded (`key.generate`, `key.rotate`, `key.import`, `key.compromise`,
    /// `key.retire`).
    public var audit: any AuditSink
    /// Who performs the actions (an admin's user name, `schedule` for the broker's loop); goes into audit events.
    public var actor: String?
    public var logger: Logger
    /// RSA modulus size for generated RS256/PS256 keys (3072 by default; at least 2048).
    public var rsaBits: Int32
    /// The algorithm of the first keys of an empty store when none is named.
    public var defaultAlgorithm: JWSAlgorithm
    /// Where the keyring lives when brokers share a database (``KeyringDatabase``); nil: in ``directory`` (files).
    /// With a database, ``directory`` holds no keys.
    public var database: (any KeyringDatabase)?

    public init(
        directory: String = "Keys",
        passphrase: KeyPassphrase,
        schedule: KeySchedule = .standard,
        clock: BrokerClock = .system,
        audit: any AuditSink = MemoryAuditSink(),
        actor: String? = nil,
        logger: Logger = Logger(label: "stagepass.keys"),
        rsaBits: Int32 = 3072,
        defaultAlgorithm: JWSAlgorithm = .ES256,
        database: (any KeyringDatabase)? = nil
    ) {
        self.database = database
        self.directory = directory
        self.passphrase = passphrase
        self.schedule = schedule
        self.clock = clock
        self.audit = audit
        self.actor = actor
        self.logger = logger
        self.rsaBits = rsaBits
        self.defaultAlgorithm = defaultAlgorithm
    }
}

/// What ``KeyStore/tick(now:)`` did.
public struct TickResult: Sendable, Hashable {
    /// The rotation performed, if one was due.
    public var rotation: RotationResult?
    /// Kids that moved from `retiring` to `retired`.
    public var retired: [String] = []
    /// Kids generated to fill a missing `next` slot (rotation's own `next` is in ``rotation``).
    public var generated: [String] = []
}

/// The signing-key store: a directory of encrypted PKCS#8 PEM private keys plus a keyring file, and the key
/// lifecycle `next` → `active` → `retiring` → `retired` (or `compromised`).
///
/// Layout (Keys/README.md): `<kid>.pem` per private key (mode 0600, encrypted PKCS#8 unless insecure development
/// keys were requested), `keyring.json` (every key's kid, alg, state, timestamps), `.lock` (an advisory lock that
/// serialises writers across processes).
///
/// Crash safety: a change writes new key files first, then the keyring that names them (each write: temp file,
/// fsync, rename, fsync of the directory), and destroys unpublished key files only after the keyring no longer
/// needs them. A crash at any point therefore leaves either the old keyring or the new one, each with exactly one
/// active key and every key file it names; leftovers (orphaned key files, temp files, files of retired keys) are
/// cleaned by ``reconcile()`` at the next start or change. Every change is audited before it takes effect (an intent
/// record, then the effect, then the completion records), and ``reconcile()`` records any key state the audit log
/// lacks.
///
/// With a ``KeyStoreConfiguration/database`` (brokers sharing PostgreSQL) the same keyring and the same encrypted PEMs
/// live in the database instead (``KeyringDatabase``): a change and its audit records commit in one transaction, a
/// compare-and-set on the keyring version, and every request compares that version instead of stat-ing a file.
///
/// ```swift
/// let store = try KeyStore(configuration: .init(passphrase: .passphrase(secret)))
/// try await store.rotate()                 // first call creates the active and next keys
/// let key = try await store.signingKey()   // sign with key.privateKey, header kid = key.kid
/// let doc = try await store.jwks().serialized()
/// ```
public actor KeyStore {
    /// The configuration the store was opened with.
    public nonisolated let configuration: KeyStoreConfiguration

    /// Every method runs on ``BrokerExecutor/keys``, off the cooperative pool: key generation (an RSA key takes
    /// tens to hundreds of milliseconds) and keyring writes (fsync) block their thread.
    public nonisolated var unownedExecutor: UnownedSerialExecutor { BrokerExecutor.keys.asUnownedSerialExecutor() }

    private var ring: Keyring
    private var privateKeys: [String: PrivateKey]
    private var publicJWKs: [String: JWK] = [:]
    private var loadedKeyringBytes: [UInt8]?
    /// What the keyring file looked like (stat) just before it was last read; nil: absent, or unknown after a failed
    /// reload (the next check reads the file again).
    private var keyringStamp: FileStamp?
    /// Whether `keyringStamp` is recent enough that a change within the same file-system timestamp tick could leave it
    /// unchanged; while true, each check compares the file's bytes as well.
    private var stampIsRacy = true
    /// False after a failed reload: nothing signs or is published until a reload succeeds (fail closed).
    private var stampValid = false
    /// The longest lifetime of anything signed with this store since it was opened (at least the schedule's
    /// ``KeySchedule/maxTokenLifetime``); a demoted key stays published this long plus leeway.
    private var coveredLifetime: Int64
    /// The database keyring's version when it was last read or written (database keyrings only).
    private var loadedVersion: Int64?
    /// When the last database version check that found the keyring unchanged began (database keyrings only).
    private var versionCheckedAt: ContinuousClock.Instant?

    static let keyringFileName = "keyring.json"

    /// Opens the store, loading and checking the keyring and every published key (an absent keyring is an empty,
    /// uninitialized store; nothing is written until the first change).
    /// - Throws: ``KeyStoreError``: `corrupt_keyring`, `no_active_key`, `missing_key_file`, `insecure_permissions`,
    ///   `wrong_passphrase`, `corrupt_key_file`, `unsupported_key`, `io_failure`.
    public init(configuration: KeyStoreConfiguration) throws {
        self.configuration = configuration
        coveredLifetime = configuration.schedule.maxTokenLifetime
        if !configuration.passphrase.encrypts {
            configuration.logger.critical(
                "INSECURE: signing keys in \(configuration.directory) are stored UNENCRYPTED (--insecure-dev-keys). Never use this outside development."
            )
        }
        let loaded = try Self.load(configuration)
        ring = loaded.ring
        privateKeys = loaded.keys
        loadedKeyringBytes = loaded.bytes
        keyringStamp = loaded.stamp
        stampIsRacy = loaded.racy
        loadedVersion = loaded.version
        stampValid = true
    }

    // MARK: Reading

    /// The JWKS `Cache-Control: max-age` to serve (seconds), strictly shorter than the pre-publication window.
    public nonisolated var jwksMaxAge: Int64 { configuration.schedule.jwksMaxAge }

    /// Whether the keyring exists (false for a fresh directory).
    public var isInitialized: Bool { !ring.keys.isEmpty }

    /// Every key in the keyring with planned times filled in, in keyring order (oldest first).
    public func keys() -> [KeyInfo] {
        // A failed re-read keeps the last view for listing; signing and the JWKS fail closed instead.
        try? refreshFromDisk()
        let s = configuration.schedule
        let active = ring.active.first
        return ring.keys.map { r in
            var info = KeyInfo(
                kid: r.kid,
                alg: r.alg,
                state: r.state,
                created: r.created,
                activates: r.activated,
                retires: nil
            )
            switch r.state {
            case .next:
                let earliest = r.created + s.prePublication
                info.activates = max(earliest, (active?.activated ?? earliest) + s.rotationPeriod)
            case .active:
                info.retires = (r.activated ?? r.created) + s.rotationPeriod
            case .retiring:
                info.retires = retireTime(r)
            case .retired, .compromised:
                info.retires = r.retired
            }
            return info
        }
    }

    /// The public JWKS document (RFC 7517 §5): the `next`, `active` and `retiring` keys, each with `kid` (the
    /// RFC 7638 §3 thumbprint), `alg` and `use: "sig"`. Retired and compromised keys never appear.
    /// - Throws: ``KeyStoreError/cryptoFailure`` if a public key cannot be exported.
    public func jwks() throws -> JWKS {
        try refreshFromDisk()
        let order: [KeyState] = [.active, .next, .retiring]
        var out: [JWK] = []
        for state in order {
            for r in ring.keys where r.state == state {
                out.append(try publicJWK(r))
            }
        }
        return JWKS(keys: out)
    }

    /// The active key: the only key that signs.
    /// - Throws: ``KeyStoreError/notInitialized`` for an empty store, ``KeyStoreError/noActiveKey`` otherwise.
    public func signingKey() throws -> SigningKey {
        try refreshFromDisk()
        return try activeKey()
    }

    /// The active key as loaded (no check of the keyring on disk or in the database).
    private func activeKey() throws -> SigningKey {
        guard isInitialized else { throw KeyStoreError.notInitialized("no keyring in \(configuration.directory)") }
        guard let r = ring.active.first, let alg = r.algorithm, let key = privateKeys[r.kid] else {
            throw KeyStoreError.noActiveKey("the keyring has no usable active key")
        }
        return SigningKey(kid: r.kid, alg: alg, privateKey: key)
    }

    /// The active key, for signing something that lives `lifetime` seconds (a token, a status list): the retiring
    /// window of every key grows to cover it, so the key stays published until that object has expired.
    ///
    /// With a database keyring, `requestedAt` (when the caller asked, taken before it awaited this actor) lets
    /// concurrent requests share one version check: a check that began after the request was made has seen every
    /// key change committed before it, so the request is served from it without a round trip of its own. Without it
    /// (nil), the keyring is checked now.
    /// - Throws: ``KeyStoreError/invalidSchedule`` when `lifetime` exceeds
    ///   ``KeySchedule/longestCoverableLifetime`` (nothing is signed); otherwise as ``signingKey()``.
    public func signingKey(
        coveringLifetime lifetime: Int64,
        requestedAt: ContinuousClock.Instant? = nil
    ) throws -> SigningKey {
        try cover(lifetime: lifetime)
        if let requestedAt, configuration.database != nil, stampValid, let checked = versionCheckedAt,
            checked > requestedAt
        {
            return try activeKey()
        }
        return try signingKey()
    }

    /// Makes the retiring window cover objects signed to live `lifetime` seconds (e.g. after a policy reload raised
    /// a stage's `max_ttl`). The window never shrinks while the store is open.
    /// - Throws: ``KeyStoreError/invalidSchedule`` when `lifetime` exceeds ``KeySchedule/longestCoverableLifetime``.
    public func cover(lifetime: Int64) throws {
        let s = configuration.schedule
        guard lifetime <= s.longestCoverableLifetime else {
            throw KeyStoreError.invalidSchedule(
                "refusing to sign something living \(lifetime) s: the key schedule covers at most "
                    + "\(s.longestCoverableLifetime) s (one rotation period)"
            )
        }
        coveredLifetime = max(coveredLifetime, lifetime)
    }

    /// How long a demoted key stays published now: the longest lifetime covered, plus leeway.
    public var retiringPeriod: Int64 { coveredLifetime + configuration.schedule.leeway }

    /// When a `retiring` key may be retired: after its recorded ``KeyRecord/retireAfter`` and after
    /// `retiringSince` + the current ``retiringPeriod``, whichever is later.
    private func retireTime(_ r: KeyRecord) -> Int64 {
        max(r.retireAfter ?? 0, (r.retiringSince ?? r.created) + retiringPeriod)
    }

    /// Re-reads the keyring and keys from disk (another process, e.g. the CLI, may have changed them), under a shared
    /// lock of the store directory so a concurrent change is seen whole.
    /// - Throws: as ``init(configuration:)``; on failure the store signs nothing and publishes nothing until a
    ///   re-read succeeds.
    public func reload() throws {
        if configuration.database != nil {
            do { install(try Self.load(configuration)) } catch {
                stampValid = false
                throw error
            }
            return
        }
        do {
            // No directory yet: nothing to lock, and nothing to read.
            let lock =
                FileManager.default.fileExists(atPath: configuration.directory)
                ? try DirectoryLock(directory: configuration.directory, shared: true) : nil
            defer { withExtendedLifetime(lock) {} }
            install(try Self.load(configuration))
        } catch {
            stampValid = false
            throw error
        }
    }

    /// Notices a keyring another process changed, cheaply: one `stat` of the keyring file, compared with the one taken
    /// when it was last read (device, inode, size, modification and change times; every write is a rename, so a new
    /// inode). Only when that stat is younger than two seconds at the time of the read (a second change within the
    /// same timestamp tick could then keep it equal) are the bytes compared as well. A changed keyring is re-read
    /// before this returns.
    ///
    /// Called at the start of every signing and JWKS request, so a key compromised or rotated by the CLI never signs
    /// or is published again once the change is on disk.
    /// - Throws: as ``reload()``; the store then fails closed.
    public func refreshFromDisk() throws {
        if let database = configuration.database {
            // One single-row read: the version every committed change increases.
            let started = ContinuousClock.now
            if stampValid, try database.keyringVersion() == loadedVersion {
                versionCheckedAt = started
                return
            }
            versionCheckedAt = nil
            try reload()
            return
        }
        let path = "\(configuration.directory)/\(Self.keyringFileName)"
        let stamp = try FileStamp.of(path)
        if stampValid, stamp == keyringStamp, !stampIsRacy { return }
        if stampValid {
            let readAt = FileStamp.wallClock()
            let bytes = try DurableFiles.read(path)
            if bytes == loadedKeyringBytes {
                keyringStamp = stamp
                stampIsRacy = stamp?.isRacy(readAt: readAt) ?? false
                return
            }
        }
        try reload()
    }

    // MARK: Actions

    /// Rotates: the `next` key becomes `active` (one is generated if there is none), the `active` key becomes
    /// `retiring`, and a new `next` key is generated with `alg` (an algorithm change is a rotation: the new algorithm
    /// starts signing at the rotation after this one, once its key has been pre-published).
    ///
    /// On an empty store this creates the first `active` and `next` keys.
    /// - Parameters:
    ///   - alg: the algorithm of the new `next` key (default: the promoted key's).
    ///   - force: promote a `next` key published for less than the pre-publication window. Verifiers whose cached
    ///     JWKS predates it reject the new key's tokens (fail closed) for up to ``jwksMaxAge`` seconds.
    /// - Throws: ``KeyStoreError/nextNotPrePublished`` (without `force`), I/O, crypto and audit errors.
    @discardableResult
    public func rotate(alg: JWSAlgorithm? = nil, force: Bool = false) throws -> RotationResult {
        let now = configuration.clock.now()
        return try mutate { ring, plan in
            try rotateLocked(&ring, &plan, now: now, alg: alg, force: force)
        }
    }

    /// Imports a private key made elsewhere (e.g. `openssl genpkey`) as the new `next` key, re-written as PKCS#8
    /// encrypted with the store passphrase. An existing `next` key (which never signed) is retired. On an empty store
    /// the imported key becomes `active` and a `next` key is generated.
    /// - Parameters:
    ///   - pem: a PKCS#8 or traditional PEM, unencrypted or encrypted with the store passphrase.
    ///   - alg: required choice for RSA keys between RS256 (default) and PS256; must fit the key type otherwise.
    /// - Returns: the imported key's kid.
    /// - Throws: ``KeyStoreError``: `wrong_passphrase`, `corrupt_key_file`, `unsupported_key`, `duplicate_key`, …
    @discardableResult
    public func importKey(pem: String, alg: JWSAlgorithm? = nil) throws -> String {
        let key = try Self.parsePrivateKey(pem: pem, passphrase: configuration.passphrase, what: "the imported key")
        let chosen: JWSAlgorithm
        switch key.type {
        case .ecP256: chosen = .ES256
        case .ed25519: chosen = .EdDSA
        case .rsa: chosen = alg ?? .RS256
        }
        if let alg, alg != chosen || alg.keyType != key.type {
            throw KeyStoreError.unsupportedKey("a \(key.type.rawValue) key cannot sign \(alg.rawValue)")
        }
        let now = configuration.clock.now()
        return try mutate { ring, plan in
            let kid = try Self.kid(of: key, alg: chosen)
            if ring.index(of: kid) != nil {
                throw KeyStoreError.duplicateKey("key \(kid) is already in the keyring")
            }
            var replaced: String?
            let bootstrapping = ring.keys.isEmpty
            if !bootstrapping, let i = ring.keys.lastIndex(where: { $0.state == .next }) {
                ring.keys[i].state = .retired
                ring.keys[i].retired = now
                replaced = ring.keys[i].kid
                plan.audit(
                    .init(
                        action: "key.retire",
                        actor: configuration.actor,
                        subject: ring.keys[i].kid,
                        details: ["reason": "replaced by imported next key"]
                    )
                )
            }
            var rec = KeyRecord(
                kid: kid,
                alg: chosen.rawValue,
                state: bootstrapping ? .active : .next,
                created: now,
                origin: "imported"
            )
            if bootstrapping { rec.activated = now }
            try plan.addKey(rec, key, passphrase: configuration.passphrase)
            ring.keys.append(rec)
            var details = ["kid": kid, "alg": chosen.rawValue, "state": rec.state.rawValue]
            if let replaced { details["replaced_next"] = replaced }
            plan.audit(.init(action: "key.import", actor: configuration.actor, subject: kid, details: details))
            if bootstrapping {
                _ = try generateLocked(&ring, &plan, alg: chosen, state: .next, now: now, reason: "bootstrap")
            }
            return kid
        }
    }

    /// Marks a key compromised: it leaves the JWKS at once and its private key file is destroyed. If it was the
    /// active key, `next` is promoted immediately (or a key generated) so exactly one active key remains, and a new
    /// `next` is generated; if it was `next`, a new `next` is generated.
    ///
    /// The result names the kid so revocation can revoke every token it signed.
    /// - Throws: ``KeyStoreError/unknownKid``, ``KeyStoreError/invalidState`` (already compromised), I/O, crypto
    ///   and audit errors.
    @discardableResult
    public func compromise(kid: String) throws -> CompromiseResult {
        let now = configuration.clock.now()
        return try mutate { ring, plan in
            guard let i = ring.index(of: kid) else { throw KeyStoreError.unknownKid("no key \(kid) in the keyring") }
            let previous = ring.keys[i].state
            guard previous != .compromised else {
                throw KeyStoreError.invalidState("key \(kid) is already compromised")
            }
            ring.keys[i].state = .compromised
            ring.keys[i].retired = now
            let alg = ring.keys[i].algorithm ?? configuration.defaultAlgorithm
            if previous == .active {
                if let n = ring.keys.lastIndex(where: { $0.state == .next }) {
                    ring.keys[n].state = .active
                    ring.keys[n].activated = now
                } else {
                    _ = try generateLocked(
                        &ring,
                        &plan,
                        alg: alg,
                        state: .active,
                        now: now,
                        reason: "replace compromised"
                    )
                }
            }
            if ring.next == nil {
                let nextAlg = ring.active.first?.algorithm ?? alg
                _ = try generateLocked(
                    &ring,
                    &plan,
                    alg: nextAlg,
                    state: .next,
                    now: now,
                    reason: "replace compromised"
                )
            }
            guard let active = ring.active.first else {
                throw KeyStoreError.noActiveKey("compromise would leave no active key")
            }
            plan.audit(
                .init(
                    action: "key.compromise",
                    actor: configuration.actor,
                    subject: kid,
                    details: ["kid": kid, "previous_state": previous.rawValue, "active": active.kid]
                )
            )
            configuration.logger.critical(
                "signing key compromised; revoke every token it signed",
                metadata: ["kid": "\(kid)", "previous_state": "\(previous.rawValue)", "active": "\(active.kid)"]
            )
            return CompromiseResult(kid: kid, previousState: previous, activeKid: active.kid, nextKid: ring.next?.kid)
        }
    }

    /// Performs whatever the schedule says is due at `now`: retires `retiring` keys whose tokens have all expired
    /// (plus leeway), rotates when the active key has served ``KeySchedule/rotationPeriod`` and the `next` key has
    /// been published for ``KeySchedule/prePublication``, fills a missing `next`, and creates the first keys of an
    /// empty store. Cheap when nothing is due (no lock, no write). Picks up changes other processes made.
    /// - Throws: I/O, crypto and audit errors (the broker logs them and tries again on the next tick).
    @discardableResult
    public func tick(now: Int64) throws -> TickResult {
        try refreshFromDisk()
        guard isDue(ring, now: now) else { return TickResult() }
        return try mutate { ring, plan in
            var result = TickResult()
            guard !ring.keys.isEmpty else {
                result.rotation = try rotateLocked(&ring, &plan, now: now, alg: nil, force: false)
                return result
            }
            for i in ring.keys.indices where ring.keys[i].state == .retiring {
                let since = ring.keys[i].retiringSince ?? ring.keys[i].created
                if now > retireTime(ring.keys[i]) {
                    ring.keys[i].state = .retired
                    ring.keys[i].retired = now
                    result.retired.append(ring.keys[i].kid)
                    plan.audit(
                        .init(
                            action: "key.retire",
                            actor: configuration.actor,
                            subject: ring.keys[i].kid,
                            details: ["kid": ring.keys[i].kid, "retiring_since": "\(since)"]
                        )
                    )
                }
            }
            if rotationDue(ring, now: now) {
                result.rotation = try rotateLocked(&ring, &plan, now: now, alg: nil, force: false)
            } else if ring.next == nil, let alg = ring.active.first?.algorithm {
                result.generated.append(
                    try generateLocked(
                        &ring,
                        &plan,
                        alg: alg,
                        state: .next,
                        now: now,
                        reason: "missing next"
                    )
                )
            }
            return result
        }
    }

    /// Runs ``tick(now:)`` every `interval` until the task is cancelled; errors are logged and retried.
    public func runSchedule(every interval: Duration) async {
        while !Task.isCancelled {
            do {
                try tick(now: configuration.clock.now())
            } catch {
                configuration.logger.error("key schedule tick failed", metadata: ["error": "\(error)"])
            }
            do {
                try await Task.sleep(for: interval)
            } catch {
                return
            }
        }
    }

    // MARK: Lifecycle internals

    private func isDue(_ ring: Keyring, now: Int64) -> Bool {
        if ring.keys.isEmpty { return true }
        if ring.next == nil { return true }
        if ring.keys.contains(where: { $0.state == .retiring && now > retireTime($0) }) {
            return true
        }
        return rotationDue(ring, now: now)
    }

    private func rotationDue(_ ring: Keyring, now: Int64) -> Bool {
        let s = configuration.schedule
        guard let active = ring.active.first, let next = ring.next else { return false }
        return now >= (active.activated ?? active.created) + s.rotationPeriod && now - next.created >= s.prePublication
    }

    private func rotateLocked(
        _ ring: inout Keyring,
        _ plan: inout ChangePlan,
        now: Int64,
        alg: JWSAlgorithm?,
        force: Bool
    ) throws -> RotationResult {
        let s = configuration.schedule
        let oldActive = ring.keys.firstIndex { $0.state == .active }
        let promotedKid: String
        if let n = ring.keys.lastIndex(where: { $0.state == .next }) {
            let age = now - ring.keys[n].created
            if oldActive != nil, !force, age < s.prePublication {
                let safeAfter = ring.keys[n].created + s.prePublication
                throw KeyStoreError.nextNotPrePublished(
                    "next key \(ring.keys[n].kid) has been published for \(age) s; the pre-publication window is "
                        + "\(s.prePublication) s (verifiers may cache the JWKS for \(s.jwksMaxAge) s). Rotate after "
                        + "\(Date(timeIntervalSince1970: TimeInterval(safeAfter)).ISO8601Format()) "
                        + "or force it (--force)",
                    safeAfter: safeAfter
                )
            }
            ring.keys[n].state = .active
            ring.keys[n].activated = now
            promotedKid = ring.keys[n].kid
        } else {
            let a = alg ?? oldActive.flatMap { ring.keys[$0].algorithm } ?? configuration.defaultAlgorithm
            promotedKid = try generateLocked(&ring, &plan, alg: a, state: .active, now: now, reason: "rotation")
        }
        var retiringKid: String?
        if let o = oldActive {
            ring.keys[o].state = .retiring
            ring.keys[o].retiringSince = now
            ring.keys[o].retireAfter = now + retiringPeriod
            retiringKid = ring.keys[o].kid
        }
        let promotedAlg = ring.index(of: promotedKid).flatMap { ring.keys[$0].algorithm }
        let nextAlg = alg ?? promotedAlg ?? configuration.defaultAlgorithm
        let nextKid = try generateLocked(&ring, &plan, alg: nextAlg, state: .next, now: now, reason: "rotation")
        var details = ["active": promotedKid, "next": nextKid, "next_alg": nextAlg.rawValue]
        if let retiringKid { details["retiring"] = retiringKid }
        if force { details["forced"] = "true" }
        plan.audit(.init(action: "key.rotate", actor: configuration.actor, subject: promotedKid, details: details))
        return RotationResult(activeKid: promotedKid, retiringKid: retiringKid, nextKid: nextKid)
    }

    /// Generates a key through OpenSSL and adds it to `ring` and `plan` in `state`; returns its kid.
    private func generateLocked(
        _ ring: inout Keyring,
        _ plan: inout ChangePlan,
        alg: JWSAlgorithm,
        state: KeyState,
        now: Int64,
        reason: String
    ) throws -> String {
        let key: PrivateKey
        do {
            key = try PrivateKey.generate(for: alg, rsaBits: configuration.rsaBits)
        } catch {
            throw KeyStoreError.cryptoFailure("generating a \(alg.rawValue) key: \(error.code)")
        }
        let kid = try Self.kid(of: key, alg: alg)
        var rec = KeyRecord(kid: kid, alg: alg.rawValue, state: state, created: now, origin: "generated")
        if state == .active { rec.activated = now }
        try plan.addKey(rec, key, passphrase: configuration.passphrase)
        ring.keys.append(rec)
        plan.audit(
            .init(
                action: "key.generate",
                actor: configuration.actor,
                subject: kid,
                details: ["kid": kid, "alg": alg.rawValue, "state": state.rawValue, "reason": reason]
            )
        )
        return kid
    }

    private func publicJWK(_ r: KeyRecord) throws -> JWK {
        if let cached = publicJWKs[r.kid] { return cached }
        guard let key = privateKeys[r.kid] else {
            throw KeyStoreError.missingKeyFile("no private key loaded for published key \(r.kid)")
        }
        do {
            var jwk = try JWK(publicKey: key.publicKey(), alg: r.algorithm, use: "sig")
            jwk.kid = r.kid
            publicJWKs[r.kid] = jwk
            return jwk
        } catch {
            throw KeyStoreError.cryptoFailure("exporting public key \(r.kid): \(error.code)")
        }
    }

    // MARK: Committing changes

    /// Runs `body` on the freshly re-read keyring under the directory lock, then commits, audit before effect:
    ///
    /// 1. reconcile the keyring on disk with the audit log (``reconcile()``: a change an earlier process left
    ///    half-audited is recorded before anything new happens);
    /// 2. the intent record (`<action>.intent`: a change id and each key's `from->to` state); if the audit log refuses
    ///    it, nothing is changed;
    /// 3. the effect: new key files, then the keyring (the single atomic switch), then destruction of files no longer
    ///    needed;
    /// 4. the completion records (`key.generate`, `key.rotate`, …), each carrying the change id.
    ///
    /// A crash between 2 and 4 leaves an intent without completion: the next ``reconcile()`` records `key.recovered`
    /// for every key whose state has no record, or `key.abandoned` when the keyring was never switched.
    private func mutate<T>(_ body: (inout Keyring, inout ChangePlan) throws -> T) throws -> T {
        if let database = configuration.database { return try mutate(in: database, body) }
        let dir = configuration.directory
        try DurableFiles.ensureDirectory(dir)
        let lock = try DirectoryLock(directory: dir)
        defer { withExtendedLifetime(lock) {} }
        // Another process may have changed the keyring since we read it: work on what is on disk now.
        let loaded = try Self.load(configuration)
        install(loaded)
        try reconcileLocked(loaded.ring)
        var newRing = loaded.ring
        var plan = ChangePlan()
        let result = try body(&newRing, &plan)
        guard newRing.active.count == 1 else {
            throw KeyStoreError.noActiveKey("refusing to write a keyring without exactly one active key")
        }
        var events = plan.events
        if newRing != loaded.ring {
            // 2. Audit before effect: the intent is durable before any file changes.
            let change = try Self.changeID()
            let intent = KeyChange.intent(
                from: loaded.ring,
                to: newRing,
                change: change,
                events: plan.events,
                actor: configuration.actor
            )
            do {
                try configuration.audit.recordBlocking(intent)
            } catch {
                throw KeyStoreError.auditFailure(
                    "the audit log refused the intent record \(intent.action); nothing was changed: \(error)"
                )
            }
            CrashPoint.reach("audit-intent-recorded")
            events = events.map { e in
                var e = e
                e.details[KeyChange.changeDetail] = change
                return e
            }
            // 3a. New key files first: a crash after this leaves only orphans the old keyring does not name.
            for (name, bytes) in plan.files {
                try DurableFiles.write(bytes, to: name, in: dir, stepPrefix: "key")
            }
            // 3b. The keyring: the single atomic switch from the old state to the new one.
            let bytes = try Self.encode(newRing)
            try DurableFiles.write(bytes, to: Self.keyringFileName, in: dir, stepPrefix: "keyring")
            loadedKeyringBytes = bytes
            keyringStamp = try FileStamp.of("\(dir)/\(Self.keyringFileName)")
            stampIsRacy = true
            stampValid = true
            ring = newRing
            for (kid, key) in plan.keys { privateKeys[kid] = key }
            for r in newRing.keys where !r.state.isPublished {
                privateKeys[r.kid] = nil
                publicJWKs[r.kid] = nil
            }
        }
        // 3c. Only now destroy what the committed keyring no longer needs (also leftovers of earlier crashes).
        _ = try cleanUp(newRing)
        // 4. Completion: the action is durable; record it.
        try recordCommitted(events)
        return result
    }

    /// Records audit events of a committed change (those not already committed with it).
    private func recordCommitted(_ events: [AuditEvent]) throws {
        var failures: [String] = []
        for (i, event) in events.enumerated() {
            do {
                try configuration.audit.recordBlocking(event)
            } catch {
                failures.append(event.action)
            }
            if i == 0, events.count > 1 { CrashPoint.reach("audit-completion-started") }
        }
        if !failures.isEmpty {
            throw KeyStoreError.auditFailure(
                "the key change was committed but the audit sink refused: \(failures.joined(separator: ", ")); "
                    + "the next start records the keys' states as key.recovered"
            )
        }
    }

    /// ``mutate(_:)`` on a database keyring: `body` runs on the freshly read keyring; the new records, the new keys'
    /// encrypted PEMs and the audit records (when the audit sink chains into the same database) then commit in one
    /// transaction, if no other writer committed since the read; otherwise the change is computed again on the
    /// newer keyring.
    private func mutate<T>(
        in database: any KeyringDatabase,
        _ body: (inout Keyring, inout ChangePlan) throws -> T
    ) throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            let loaded = try Self.load(configuration)
            install(loaded)
            var newRing = loaded.ring
            var plan = ChangePlan()
            let result = try body(&newRing, &plan)
            guard newRing.active.count == 1 else {
                throw KeyStoreError.noActiveKey("refusing to write a keyring without exactly one active key")
            }
            guard newRing != loaded.ring else {
                try recordCommitted(plan.events)
                return result
            }
            // Audit before effect: the records are part of the change's transaction.
            var chained: [AuditAppend] = []
            var after: [AuditEvent] = []
            for event in plan.events {
                if let entry = try configuration.audit.chainedEntry(event) {
                    chained.append(entry)
                } else {
                    after.append(event)
                }
            }
            let change = KeyringChange(
                expectedVersion: loaded.version ?? 0,
                keys: newRing.keys,
                newPEMs: plan.pems,
                audit: chained
            )
            guard let version = try database.commitKeyring(change) else {
                if attempt < 5 { continue }
                throw KeyStoreError.ioFailure("the database keyring changed under this change five times; try again")
            }
            ring = newRing
            loadedVersion = version
            stampValid = true
            for (kid, key) in plan.keys { privateKeys[kid] = key }
            for r in newRing.keys where !r.state.isPublished {
                privateKeys[r.kid] = nil
                publicJWKs[r.kid] = nil
            }
            try recordCommitted(after)
            return result
        }
    }

    /// A fresh random change id (16 hex digits) tying an intent record to its completion records.
    private static func changeID() throws -> String {
        do {
            return try Crypto.randomBytes(8).map { String(format: "%02x", $0) }.joined()
        } catch {
            throw KeyStoreError.cryptoFailure("cannot draw a change id: \(error.code)")
        }
    }

    // MARK: Reconciling with the audit log

    /// Reconciles the store with the audit log, under the exclusive directory lock; run at every start (the server
    /// and each `stagepass keys` command) and before every change.
    ///
    /// - Removes leftover temp files (`.<name>.<random>.tmp`) and destroys key files the keyring does not need
    ///   (orphans of a change that stopped before its keyring write, files of retired keys): logged as warnings.
    /// - Every key in the keyring whose current state has no audit record (read back through
    ///   ``AuditSink/keyEvents()``) is recorded as `key.recovered` (actor `broker`; details `kid`, `state`,
    ///   `missing`), and logged as an error.
    /// - An intent record (`key.….intent`) with no completion is resolved: if the keyring shows its effect, the keys it
    ///   changed are recorded as `key.recovered` with its change id; if not, `key.abandoned` records that the change
    ///   never took effect.
    ///
    /// With a sink that cannot read back (``LogAuditSink``) only the files are cleaned. A store directory that does not
    /// exist yet is left alone.
    /// - Returns: what was repaired.
    /// - Throws: ``KeyStoreError``: `io_failure`, `locked`, the load errors of ``init(configuration:)``, and
    ///   `audit_failure` when the audit log cannot be read or refuses a record.
    @discardableResult
    public func reconcile() throws -> KeyReconciliation {
        // A database keyring commits each change with its audit records in one transaction: nothing to reconcile,
        // and the directory's files are not its keys.
        if configuration.database != nil { return KeyReconciliation() }
        let dir = configuration.directory
        guard FileManager.default.fileExists(atPath: dir) else { return KeyReconciliation() }
        let lock = try DirectoryLock(directory: dir)
        defer { withExtendedLifetime(lock) {} }
        let loaded = try Self.load(configuration)
        install(loaded)
        var report = try reconcileLocked(loaded.ring)
        let files = try cleanUp(loaded.ring)
        report.removedTempFiles = files.temp
        report.destroyedKeyFiles = files.destroyed
        return report
    }

    /// The audit part of ``reconcile()``; the caller holds the exclusive lock and `ring` is what is on disk.
    @discardableResult
    private func reconcileLocked(_ ring: Keyring) throws -> KeyReconciliation {
        var report = KeyReconciliation()
        let history: [AuditEvent]?
        do {
            history = try configuration.audit.keyEvents()
        } catch {
            throw KeyStoreError.auditFailure("cannot read the key records of the audit log: \(error)")
        }
        guard let history else { return report }
        report.checked = true
        let repairs = KeyChange.repairs(ring: ring, history: history)
        for event in repairs {
            var metadata: Logger.Metadata = ["action": "\(event.action)"]
            for (k, v) in event.details { metadata[k] = "\(v)" }
            if event.action == KeyChange.abandonedAction {
                configuration.logger.error(
                    "a key change was started but never took effect; recording it as abandoned",
                    metadata: metadata
                )
                report.abandoned.append(event.details[KeyChange.changeDetail] ?? "")
            } else {
                configuration.logger.error(
                    "AUDIT GAP: a signing key's state has no audit record; recording it as recovered",
                    metadata: metadata
                )
                report.recovered.append(event.details["kid"] ?? "")
            }
            do {
                try configuration.audit.recordBlocking(event)
            } catch {
                throw KeyStoreError.auditFailure("the audit log refused \(event.action): \(error)")
            }
        }
        return report
    }

    /// Destroys the files of retired/compromised keys and orphaned key files, and removes stale temp files (the
    /// caller holds the exclusive lock, so no writer of this store is between its temp file and its rename).
    /// - Returns: the names removed.
    private func cleanUp(_ ring: Keyring) throws -> (temp: [String], destroyed: [String]) {
        let dir = configuration.directory
        let needed = Set(ring.keys.filter { $0.state.isPublished }.map(\.fileName))
        var temp: [String] = []
        var destroyed: [String] = []
        for name in try DurableFiles.list(dir).sorted() {
            if name.hasPrefix("."), name.hasSuffix(".tmp") {
                DurableFiles.removeTemp(name, in: dir)
                temp.append(name)
                configuration.logger.warning(
                    "removed a leftover temp file of an interrupted write",
                    metadata: ["file": "\(dir)/\(name)"]
                )
            } else if Self.isKeyFileName(name), !needed.contains(name) {
                try DurableFiles.destroy(name, in: dir)
                destroyed.append(name)
                if !ring.keys.contains(where: { $0.fileName == name }) {
                    configuration.logger.warning(
                        "destroyed an orphaned key file the keyring does not name (an interrupted change)",
                        metadata: ["file": "\(dir)/\(name)"]
                    )
                }
            }
        }
        return (temp, destroyed)
    }

    private func install(_ loaded: Loaded) {
        ring = loaded.ring
        privateKeys = loaded.keys
        loadedKeyringBytes = loaded.bytes
        keyringStamp = loaded.stamp
        stampIsRacy = loaded.racy
        loadedVersion = loaded.version
        stampValid = true
        publicJWKs = publicJWKs.filter { loaded.keys[$0.key] != nil }
    }

    // MARK: Loading

    struct Loaded {
        var ring: Keyring
        var keys: [String: PrivateKey]
        var bytes: [UInt8]?
        /// The keyring file's stat taken just before its bytes were read.
        var stamp: FileStamp?
        var racy: Bool
        /// The database keyring's version (database keyrings only).
        var version: Int64? = nil
    }

    /// Reads and checks the keyring and every published key, from the database or the directory; never writes.
    static func load(_ c: KeyStoreConfiguration) throws -> Loaded {
        guard let database = c.database else { return try loadFiles(c) }
        let stored = try database.loadKeyring()
        let ring = Keyring(keys: stored.keys.map(\.record))
        guard !ring.keys.isEmpty else {
            return Loaded(ring: ring, keys: [:], bytes: nil, stamp: nil, racy: false, version: stored.version)
        }
        try check(ring, source: "the database keyring")
        var keys: [String: PrivateKey] = [:]
        for entry in stored.keys where entry.record.state.isPublished {
            let r = entry.record
            guard let pem = entry.pem else {
                throw KeyStoreError.missingKeyFile(
                    "the database keyring has no private key for \(r.state.rawValue) key \(r.kid)"
                )
            }
            keys[r.kid] = try checkedKey(r, pem: pem, c, what: "key \(r.kid) in the database keyring")
        }
        return Loaded(ring: ring, keys: keys, bytes: nil, stamp: nil, racy: false, version: stored.version)
    }

    /// Checks a keyring's entries (distinct kids, known algorithms) and that exactly one key is active.
    static func check(_ ring: Keyring, source: String) throws {
        var seen = Set<String>()
        for r in ring.keys {
            guard isKeyFileName(r.fileName), seen.insert(r.kid).inserted, r.algorithm != nil else {
                throw KeyStoreError.corruptKeyring("\(source): bad or duplicate entry for kid \(r.kid)")
            }
        }
        let actives = ring.active.count
        guard actives == 1 else {
            throw KeyStoreError.noActiveKey("the keyring has \(actives) active keys; exactly one is required")
        }
    }

    /// Decrypts a published key's PEM and checks that it is the key its record names.
    static func checkedKey(_ r: KeyRecord, pem: String, _ c: KeyStoreConfiguration, what: String) throws -> PrivateKey {
        let key = try parsePrivateKey(pem: pem, passphrase: c.passphrase, what: what)
        if c.passphrase.encrypts, !pem.contains("BEGIN ENCRYPTED PRIVATE KEY") {
            c.logger.warning(
                "key file is not encrypted; it will stay so until the key is replaced",
                metadata: ["kid": "\(r.kid)"]
            )
        }
        guard let alg = r.algorithm, alg.keyType == key.type, try kid(of: key, alg: alg) == r.kid else {
            throw KeyStoreError.corruptKeyFile("\(what) does not hold the \(r.alg) key with thumbprint \(r.kid)")
        }
        return key
    }

    /// A key store directory's keyring as a database keyring holds it: every record in keyring order with its
    /// encrypted PEM text exactly as stored (never decrypted here; the broker that loads it checks each key with its
    /// passphrase). Used to move an embedded broker's keys into a shared database (`stagepass db copy`).
    /// - Returns: nil when the directory has no keyring.
    /// - Throws: ``KeyStoreError`` when the keyring is unreadable or corrupt, or a published key's file is missing or
    ///   readable by others.
    public static func exportDirectoryKeyring(_ directory: String) throws -> StoredKeyring? {
        let path = "\(directory)/\(keyringFileName)"
        guard let bytes = try DurableFiles.read(path) else { return nil }
        let ring: Keyring
        do {
            ring = try JSONDecoder().decode(Keyring.self, from: Data(bytes))
        } catch {
            throw KeyStoreError.corruptKeyring("\(path) is not a valid keyring")
        }
        guard ring.format == Keyring.currentFormat else {
            throw KeyStoreError.corruptKeyring("unknown keyring format \(ring.format)")
        }
        try check(ring, source: path)
        var keys: [StoredKey] = []
        for r in ring.keys {
            guard r.state.isPublished else {
                keys.append(StoredKey(record: r, pem: nil))
                continue
            }
            let file = "\(directory)/\(r.fileName)"
            guard let mode = try DurableFiles.mode(file), let pem = try DurableFiles.read(file) else {
                throw KeyStoreError.missingKeyFile(
                    "the keyring names \(r.state.rawValue) key \(r.kid) but \(file) is missing"
                )
            }
            guard mode & 0o077 == 0 else {
                throw KeyStoreError.insecurePermissions(
                    "\(file) has mode \(String(mode, radix: 8)); key files must be 0600"
                )
            }
            keys.append(StoredKey(record: r, pem: String(decoding: pem, as: UTF8.self)))
        }
        return StoredKeyring(version: 0, keys: keys)
    }

    /// Reads and checks `keyring.json` and every published key file; never writes.
    static func loadFiles(_ c: KeyStoreConfiguration) throws -> Loaded {
        let dir = c.directory
        let path = "\(dir)/\(keyringFileName)"
        let stamp = try FileStamp.of(path)
        let readAt = FileStamp.wallClock()
        guard let bytes = try DurableFiles.read(path) else {
            return Loaded(ring: Keyring(), keys: [:], bytes: nil, stamp: nil, racy: false)
        }
        let ring: Keyring
        do {
            ring = try JSONDecoder().decode(Keyring.self, from: Data(bytes))
        } catch {
            throw KeyStoreError.corruptKeyring("\(dir)/\(keyringFileName) is not a valid keyring")
        }
        guard ring.format == Keyring.currentFormat else {
            throw KeyStoreError.corruptKeyring("unknown keyring format \(ring.format)")
        }
        try check(ring, source: path)
        var keys: [String: PrivateKey] = [:]
        for r in ring.keys where r.state.isPublished {
            let path = "\(dir)/\(r.fileName)"
            guard let mode = try DurableFiles.mode(path) else {
                throw KeyStoreError.missingKeyFile(
                    "the keyring names \(r.state.rawValue) key \(r.kid) but \(path) is missing"
                )
            }
            guard mode & 0o077 == 0 else {
                throw KeyStoreError.insecurePermissions(
                    "\(path) has mode \(String(mode, radix: 8)); key files must be 0600 (chmod 600 \(path))"
                )
            }
            guard let pemBytes = try DurableFiles.read(path) else {
                throw KeyStoreError.missingKeyFile("\(path) is missing")
            }
            let pem = String(decoding: pemBytes, as: UTF8.self)
            keys[r.kid] = try checkedKey(r, pem: pem, c, what: path)
        }
        return Loaded(
            ring: ring,
            keys: keys,
            bytes: bytes,
            stamp: stamp,
            racy: stamp?.isRacy(readAt: readAt) ?? true
        )
    }

    /// Parses a private key PEM, mapping JOSE errors to store errors; refuses truncated PEMs before OpenSSL sees them.
    static func parsePrivateKey(pem: String, passphrase: KeyPassphrase, what: String) throws -> PrivateKey {
        guard let begin = pem.range(of: "-----BEGIN "), let end = pem.range(of: "-----END "),
            begin.lowerBound < end.lowerBound, pem[end.upperBound...].contains("-----")
        else {
            throw KeyStoreError.corruptKeyFile("\(what) is not a complete PEM (truncated?)")
        }
        do {
            return try PrivateKey(pem: pem, passphrase: passphrase.secret)
        } catch {
            if error == .wrongPassphrase {
                throw KeyStoreError.wrongPassphrase(
                    passphrase.encrypts
                        ? "the key passphrase does not decrypt \(what)"
                        : "\(what) is encrypted and no passphrase was given"
                )
            }
            if error == .weakKey || error == .invalidKey {
                throw KeyStoreError.unsupportedKey("\(what): \(error.detail)")
            }
            throw KeyStoreError.corruptKeyFile("\(what) is not a readable private key PEM")
        }
    }

    /// The RFC 7638 §3 thumbprint of the key's public JWK.
    static func kid(of key: PrivateKey, alg: JWSAlgorithm) throws -> String {
        do {
            return try JWK(publicKey: key.publicKey(), alg: alg).thumbprint()
        } catch {
            throw KeyStoreError.cryptoFailure("computing the key thumbprint: \(error.code)")
        }
    }

    static func encode(_ ring: Keyring) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            return Array(try encoder.encode(ring)) + [0x0A]
        } catch {
            throw KeyStoreError.ioFailure("cannot encode the keyring")
        }
    }

    /// `<43 base64url chars>.pem`: the name of a key file (a SHA-256 thumbprint is 43 base64url characters).
    static func isKeyFileName(_ name: String) -> Bool {
        guard name.hasSuffix(".pem") else { return false }
        let stem = name.dropLast(4)
        return stem.count == 43
            && stem.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
    }
}

/// The files and audit events one change produces, committed by `KeyStore.mutate`.
struct ChangePlan {
    var files: [(String, [UInt8])] = []
    var keys: [(String, PrivateKey)] = []
    var events: [AuditEvent] = []
    /// The new keys' encrypted PEMs by kid (a database keyring stores them in its rows).
    var pems: [String: String] = [:]

    mutating func addKey(_ rec: KeyRecord, _ key: PrivateKey, passphrase: KeyPassphrase) throws {
        let pem: String
        do {
            pem = try key.pkcs8PEM(passphrase: passphrase.secret)
        } catch {
            throw KeyStoreError.cryptoFailure("serializing key \(rec.kid): \(error.code)")
        }
        files.append((rec.fileName, Array(pem.utf8)))
        pems[rec.kid] = pem
        keys.append((rec.kid, key))
    }

    mutating func audit(_ event: AuditEvent) { events.append(event) }
}
