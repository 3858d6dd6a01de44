import StagepassJOSE
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a verifier gets its keys. Implementations must be thread-safe and fast on ``current(now:)``
/// (it is called on every verification).
public protocol KeySource: Sendable {
    /// The key set to use now, or nil when none could be obtained (every token is then `unknown_key`).
    func current(now: Int64) -> KeySet?
    /// A token named a kid that ``current(now:)`` does not hold: re-read or re-fetch if allowed (rate-limited by
    /// the source) and return the new set, or nil to keep the current one. Never triggered by anything but the kid.
    func refreshForUnknownKey(now: Int64) -> KeySet?
}

/// A fixed, replaceable key set held in memory.
public final class StaticKeySource: KeySource {
    private let keys: Mutex<KeySet>
    public init(_ keys: KeySet) { self.keys = Mutex(keys) }
    public func current(now: Int64) -> KeySet? { keys.withLock { $0 } }
    public func refreshForUnknownKey(now: Int64) -> KeySet? { nil }
    /// Replaces the key set (e.g. after the embedding application re-fetched the JWKS itself).
    public func replace(_ new: KeySet) { keys.withLock { $0 = new } }
}

/// A JWKS file, re-read when its modification time or size changes (checked at most once a second, and at once
/// when a token names an unknown kid).
public final class FileKeySource: KeySource {
    private struct State {
        var keys: KeySet?
        var stamp: FileStamp?
        var checkedAt: Int64 = .min
    }
    public let path: String
    private let state: Mutex<State>

    /// Reads the file now.
    /// - Throws: ``JOSEError`` if the file cannot be read or is not a JWKS (a configuration error).
    public init(path: String) throws(JOSEError) {
        self.path = path
        guard let stamp = FileStamp(path: path), let bytes = readFile(path) else {
            throw .invalidJSON("cannot read JWKS file \(path)")
        }
        let keys = try KeySet(jwksJSON: bytes)
        state = Mutex(State(keys: keys, stamp: stamp, checkedAt: .min))
    }

    public func current(now: Int64) -> KeySet? { reload(now: now, force: false) }
    public func refreshForUnknownKey(now: Int64) -> KeySet? { reload(now: now, force: true) }

    private func reload(now: Int64, force: Bool) -> KeySet? {
        state.withLock { s in
            if !force && now == s.checkedAt { return s.keys }
            s.checkedAt = now
            guard let stamp = FileStamp(path: path), stamp != s.stamp else { return s.keys }
            // Keep the last good set if the new file is unreadable or half-written.
            if let bytes = readFile(path), let keys = try? KeySet(jwksJSON: bytes) {
                s.keys = keys
                s.stamp = stamp
            }
            return s.keys
        }
    }
}

/// A signed status list token (`statuslist+jwt`) as obtained from somewhere, with when it was obtained.
public struct StatusListDocument: Sendable, Hashable {
    public let jwt: String
    public let fetchedAt: Int64
    /// A fail-closed age limit for this document (the stricter of this and the verifier's `statusMaxAge` applies).
    public let maxAge: Int64?
    public init(jwt: String, fetchedAt: Int64, maxAge: Int64? = nil) {
        self.jwt = jwt
        self.fetchedAt = fetchedAt
        self.maxAge = maxAge
    }
}

/// Where a verifier gets status lists, polled on each verification. Every document not offered before goes through
/// the verifier's ``StatusListHolder`` (verified against the verifier's own key set, one list per `sub`, never
/// replaced by an older one); tokens are matched to lists by the list's `sub` (= the `uri` tokens carry).
/// `documents(now:)` must return at once: a source that fetches does so in the background.
public protocol StatusListSource: Sendable {
    func documents(now: Int64) -> [StatusListDocument]
}

/// Status lists held in memory, replaced by the application.
public final class StaticStatusListSource: StatusListSource {
    private let docs: Mutex<[StatusListDocument]>
    public init(_ docs: [StatusListDocument] = []) { self.docs = Mutex(docs) }
    public func documents(now: Int64) -> [StatusListDocument] { docs.withLock { $0 } }
    /// Replaces the documents offered (each is then installed under the holder's rules: an older list for a `sub`
    /// does not replace a newer one).
    public func replace(_ new: [StatusListDocument]) { docs.withLock { $0 = new } }
}

/// A status list token in a file (one compact JWT), re-read when the file changes; its age is the file's
/// modification time.
public final class FileStatusListSource: StatusListSource {
    public let path: String
    private let cache: Mutex<(FileStamp?, [StatusListDocument], Int64)>

    /// - Throws: ``JOSEError`` if the file cannot be read (a configuration error).
    public init(path: String) throws(JOSEError) {
        self.path = path
        guard FileStamp(path: path) != nil else { throw .invalidJSON("cannot read status list file \(path)") }
        cache = Mutex((nil, [], .min))
    }

    public func documents(now: Int64) -> [StatusListDocument] {
        cache.withLock { c in
            if c.2 == now { return c.1 }
            c.2 = now
            guard let stamp = FileStamp(path: path) else { return [] }
            if stamp == c.0 { return c.1 }
            guard let bytes = readFile(path) else { return [] }
            let text = String(decoding: bytes, as: UTF8.self).filter { !$0.isWhitespace }
            c.0 = stamp
            c.1 = [StatusListDocument(jwt: text, fetchedAt: stamp.mtime)]
            return c.1
        }
    }
}

/// Modification time + size + inode: enough to notice a replaced file.
struct FileStamp: Equatable, Sendable {
    let mtime: Int64
    let mtimeNanos: Int64
    let size: Int64
    let inode: UInt64

    init?(path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        mtime = Int64(st.st_mtim.tv_sec)
        mtimeNanos = Int64(st.st_mtim.tv_nsec)
        size = Int64(st.st_size)
        inode = UInt64(st.st_ino)
    }
}

/// Reads a whole file (up to 16 MiB) without Foundation.
public func readFile(_ path: String, limit: Int = 16 << 20) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { return nil }
        if n == 0 { break }
        out.append(contentsOf: buf[0..<n])
        if out.count > limit { return nil }
    }
    return out
}
