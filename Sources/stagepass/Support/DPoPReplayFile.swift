import Foundation
import StagepassBroker
import StagepassJOSE
import StagepassVerify

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a replay file could not be used: `stagepass verify` exits 2 (configuration), never 0.
struct DPoPReplayFileError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The DPoP replay record of `stagepass verify` across invocations (RFC 9449 §11.1): one file that every invocation
/// on a host shares, so a proof accepted by one run is `dpop_replayed` in the next.
///
/// Each line is `<expires-at> <base64url(thumbprint " " jti)>`: the same key and lifetime as the in-process
/// ``DPoPReplayCache`` (``DPoPProofClaims/replayExpiresAt``). An invocation takes an exclusive `flock` on the file
/// for the whole check, so two concurrent invocations with one proof cannot both pass; it loads the unexpired lines
/// into the verifier's cache, verifies, and on success appends the new line and fsyncs it before the verdict is
/// printed: a proof reported `ok` is on disk. A line cut short by a crash (no newline) was never reported `ok` and
/// is ignored; any other malformed line makes the file unusable (fail closed, exit 2) rather than skipped. Expired
/// lines are dropped by rewriting the file (temp file, fsync, rename) once they outnumber the live ones.
///
/// The file must be a regular file owned by the invoking user with no group or other access (it is created 0600):
/// whoever can write it can erase the record and replay a proof.
final class DPoPReplayFile {
    private let path: String
    private let handle: FileHandle
    private(set) var loaded: [String: Int64] = [:]
    private var expiredLines = 0
    /// The bytes up to the last newline: what a crash-cut fragment after it is truncated to before an append.
    private var completeLength: UInt64 = 0

    /// Opens (creating it 0600) and locks the file, waiting for another invocation to finish, then reads it.
    init(path: String) throws {
        self.path = path
        var attempts = 0
        while true {
            attempts += 1
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else { throw DPoPReplayFileError("cannot open \(path): \(Self.errnoText())") }
            let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw DPoPReplayFileError("fstat \(path): \(Self.errnoText())") }
            guard (st.st_mode & S_IFMT) == S_IFREG else { throw DPoPReplayFileError("\(path) is not a regular file") }
            guard st.st_uid == geteuid(), st.st_mode & 0o077 == 0 else {
                throw DPoPReplayFileError(
                    "\(path) must be owned by this user with no group or other access (chmod 600)"
                )
            }
            while flock(fd, LOCK_EX) != 0 {
                guard errno == EINTR else { throw DPoPReplayFileError("flock \(path): \(Self.errnoText())") }
            }
            // A compaction by another invocation may have renamed a new file over the one we locked: lock that one.
            var now = stat()
            if stat(path, &now) == 0, now.st_ino == st.st_ino, now.st_dev == st.st_dev {
                self.handle = handle
                break
            }
            guard attempts < 16 else { throw DPoPReplayFileError("\(path) keeps being replaced") }
        }
        try read()
    }

    private func read() throws {
        let data: Data
        do {
            try handle.seek(toOffset: 0)
            data = try handle.readToEnd() ?? Data()
        } catch {
            throw DPoPReplayFileError("cannot read \(path): \(error)")
        }
        var lines = data.split(separator: 0x0A, omittingEmptySubsequences: false)
        // The last element follows the last newline: empty, or a line a crash cut short (never acknowledged).
        let fragment = lines.removeLast()
        completeLength = UInt64(data.count - fragment.count)
        for (n, line) in lines.enumerated() {
            let fields = line.split(separator: 0x20)
            guard fields.count == 2, let expiresAt = Int64(String(decoding: fields[0], as: UTF8.self)),
                let key = try? Base64URL.decode(String(decoding: fields[1], as: UTF8.self))
            else {
                throw DPoPReplayFileError("\(path) line \(n + 1) is malformed: refusing to use the replay record")
            }
            loaded[String(decoding: key, as: UTF8.self)] = expiresAt
        }
    }

    /// Puts the record's unexpired entries into `cache`; counts the expired ones.
    func load(into cache: DPoPReplayCache, now: Int64) throws {
        for (key, expiresAt) in loaded {
            guard expiresAt > now else {
                expiredLines += 1
                continue
            }
            do {
                try cache.record(key, expiresAt: expiresAt, now: now)
            } catch {
                // Only dpop_replay_cache_full: more unexpired proofs than the cache holds.
                throw DPoPReplayFileError("\(path) holds more than \(cache.capacity) unexpired proofs")
            }
        }
    }

    /// Durably records the entries `cache` accepted since ``load(into:now:)``.
    func save(from cache: DPoPReplayCache, now: Int64) throws {
        let fresh = cache.entries(now: now).filter { loaded[$0.key] == nil }
        guard !fresh.isEmpty else { return }
        let live = loaded.count - expiredLines
        if expiredLines > 256, expiredLines > live {
            let kept = cache.entries(now: now)
            let text = kept.map { Self.line($0.key, $0.expiresAt) }.joined()
            do {
                try SecretFile.write(Array(text.utf8), to: path, replace: true)
            } catch {
                throw DPoPReplayFileError("cannot rewrite \(path): \(error)")
            }
            return
        }
        let text = fresh.map { Self.line($0.key, $0.expiresAt) }.joined()
        do {
            try handle.truncate(atOffset: completeLength)
            try handle.seek(toOffset: completeLength)
            try handle.write(contentsOf: Data(text.utf8))
            try handle.synchronize()
        } catch {
            throw DPoPReplayFileError("cannot record the proof in \(path): \(error)")
        }
    }

    private static func line(_ key: String, _ expiresAt: Int64) -> String {
        "\(expiresAt) \(Base64URL.encode(Array(key.utf8)))\n"
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }
}
