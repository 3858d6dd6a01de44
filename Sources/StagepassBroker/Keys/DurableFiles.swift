import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Named points inside the store's writes where a test can make the process die (`STAGEPASS_CRASH_AT=<name>`
/// makes the process `_exit(137)` when it reaches that point, as a `kill -9` would). Production never sets it.
///
/// The names, in the order a rotation reaches them:
/// `audit-intent-recorded` (the change's intent record is in the audit log, nothing else written), then
/// `key-temp-written`, `key-renamed`, `key-committed` (the new key file: temp file written and fsynced, renamed
/// into place, directory fsynced), then `keyring-temp-written`, `keyring-renamed`, `keyring-committed` (the keyring
/// likewise), then `audit-completion-started` (the first of several completion records written). Destroying a retired
/// or compromised key's file adds `destroy-overwritten` and `destroy-unlinked` (before the completion records).
public enum CrashPoint {
    /// Every step name, in order.
    public static let allSteps = [
        "audit-intent-recorded",
        "key-temp-written", "key-renamed", "key-committed",
        "keyring-temp-written", "keyring-renamed", "keyring-committed",
        "destroy-overwritten", "destroy-unlinked",
        "audit-completion-started",
    ]

    private static let target: String? = ProcessInfo.processInfo.environment["STAGEPASS_CRASH_AT"]

    /// Dies with exit status 137 if `STAGEPASS_CRASH_AT` names `step`.
    static func reach(_ step: String) {
        if let target, target == step {
            _exit(137)
        }
    }
}

/// Crash-safe file primitives: every write is temp file → fsync → rename → fsync(directory).
enum DurableFiles {
    /// Writes `bytes` to `directory/name` atomically with mode 0600 from the first byte (``SecretFile``), durable once
    /// this returns.
    ///
    /// `stepPrefix` names the crash points (`<prefix>-temp-written`, `<prefix>-renamed`, `<prefix>-committed`).
    static func write(_ bytes: [UInt8], to name: String, in directory: String, stepPrefix: String) throws {
        do {
            try SecretFile.write(bytes, to: "\(directory)/\(name)", replace: true, stepPrefix: stepPrefix)
        } catch let e as SecretFileError {
            throw KeyStoreError.ioFailure(e.detail)
        }
    }

    /// Overwrites a file's bytes with zeros, fsyncs, unlinks it and fsyncs the directory.
    ///
    /// Best effort against recovery from the disk: copy-on-write and journaling file systems or SSD wear levelling
    /// may keep old blocks, which is why the key files are also encrypted.
    static func destroy(_ name: String, in directory: String) throws {
        let path = "\(directory)/\(name)"
        let fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            if errno == ENOENT { return }
            throw KeyStoreError.ioFailure("cannot open \(path) to destroy it: \(errnoText())")
        }
        do {
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw KeyStoreError.ioFailure("fstat \(path): \(errnoText())") }
            try writeAll(fd, [UInt8](repeating: 0, count: Int(st.st_size)), path: path)
            guard fsync(fd) == 0 else { throw KeyStoreError.ioFailure("fsync \(path): \(errnoText())") }
        }
        CrashPoint.reach("destroy-overwritten")
        guard unlink(path) == 0 || errno == ENOENT else {
            throw KeyStoreError.ioFailure("unlink \(path): \(errnoText())")
        }
        CrashPoint.reach("destroy-unlinked")
        try syncDirectory(directory)
    }

    /// Removes a leftover temp file (never holds the only copy of anything: the rename did not happen).
    static func removeTemp(_ name: String, in directory: String) {
        _ = unlink("\(directory)/\(name)")
    }

    /// fsyncs a directory so a rename or unlink inside it is durable.
    static func syncDirectory(_ directory: String) throws {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw KeyStoreError.ioFailure("cannot open directory \(directory): \(errnoText())") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw KeyStoreError.ioFailure("fsync directory \(directory): \(errnoText())") }
    }

    /// Reads a whole file; nil when it does not exist.
    static func read(_ path: String) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw KeyStoreError.ioFailure("cannot read \(path): \(errnoText())")
        }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16_384)
        while true {
            let n = buffer.withUnsafeMutableBytes { sysRead(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw KeyStoreError.ioFailure("read \(path): \(errnoText())")
            }
            if n == 0 { break }
            out.append(contentsOf: buffer[0..<n])
        }
        return out
    }

    /// The permission bits of a file; nil when it does not exist.
    static func mode(_ path: String) throws -> mode_t? {
        var st = stat()
        if lstat(path, &st) != 0 {
            if errno == ENOENT { return nil }
            throw KeyStoreError.ioFailure("stat \(path): \(errnoText())")
        }
        return st.st_mode & 0o7777
    }

    /// Names of the entries of a directory.
    static func list(_ directory: String) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw KeyStoreError.ioFailure("cannot list \(directory)")
        }
    }

    /// Creates the directory (mode 0700) if missing.
    static func ensureDirectory(_ directory: String) throws {
        var st = stat()
        if stat(directory, &st) == 0 { return }
        guard mkdir(directory, 0o700) == 0 || errno == EEXIST else {
            throw KeyStoreError.ioFailure("cannot create \(directory): \(errnoText())")
        }
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { sysWrite(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw KeyStoreError.ioFailure("write \(path): \(errnoText())")
            }
            offset += n
        }
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}

/// An advisory lock (`flock`) on `<dir>/.lock`, so the broker's schedule and an admin's CLI never interleave their
/// read-modify-write of the keyring (exclusive), and a reader never sees a change half done (shared: the keyring of a
/// change names key files that are already there, and the files it drops are destroyed only after it is written).
final class DirectoryLock {
    private let fd: Int32

    /// Takes the lock (exclusive, or `shared` for a reader), waiting for another holder.
    init(directory: String, shared: Bool = false) throws {
        let path = "\(directory)/.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw KeyStoreError.ioFailure("cannot open \(path): \(DurableFiles.errnoText())") }
        while flock(fd, shared ? LOCK_SH : LOCK_EX) != 0 {
            if errno == EINTR { continue }
            close(fd)
            throw KeyStoreError.locked("cannot lock \(path): \(DurableFiles.errnoText())")
        }
        self.fd = fd
    }

    deinit {
        _ = flock(fd, LOCK_UN)
        close(fd)
    }
}

/// What `stat(2)` says about a file, enough to notice that it was replaced or changed: device, inode, size,
/// modification and status-change times (nanoseconds).
struct FileStamp: Sendable, Hashable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modified: Int64
    var modifiedNanos: Int64
    var changed: Int64
    var changedNanos: Int64

    /// The stamp of `path`; nil when it does not exist.
    static func of(_ path: String) throws -> FileStamp? {
        var st = stat()
        if stat(path, &st) != 0 {
            if errno == ENOENT { return nil }
            throw KeyStoreError.ioFailure("stat \(path): \(DurableFiles.errnoText())")
        }
        #if canImport(Darwin)
        return FileStamp(
            device: UInt64(st.st_dev),
            inode: UInt64(st.st_ino),
            size: Int64(st.st_size),
            modified: Int64(st.st_mtimespec.tv_sec),
            modifiedNanos: Int64(st.st_mtimespec.tv_nsec),
            changed: Int64(st.st_ctimespec.tv_sec),
            changedNanos: Int64(st.st_ctimespec.tv_nsec)
        )
        #else
        return FileStamp(
            device: UInt64(st.st_dev),
            inode: UInt64(st.st_ino),
            size: Int64(st.st_size),
            modified: Int64(st.st_mtim.tv_sec),
            modifiedNanos: Int64(st.st_mtim.tv_nsec),
            changed: Int64(st.st_ctim.tv_sec),
            changedNanos: Int64(st.st_ctim.tv_nsec)
        )
        #endif
    }

    /// The real time now, in seconds (file times are real time, whatever clock the store was given).
    static func wallClock() -> Double { Date().timeIntervalSince1970 }

    /// True when a later change within the same file-system timestamp tick (coarse on most kernels) could leave this
    /// stamp equal: the file was modified or changed within two seconds of `readAt`, the moment its bytes were read.
    /// (The same reasoning as Git's "racily clean" index entries.)
    func isRacy(readAt: Double) -> Bool {
        let latest = max(Double(modified) + Double(modifiedNanos) / 1e9, Double(changed) + Double(changedNanos) / 1e9)
        return latest >= readAt - 2
    }
}

// File-scope wrappers so the libc calls are not shadowed by `DurableFiles.read`.
private func sysRead(_ fd: Int32, _ p: UnsafeMutableRawPointer?, _ n: Int) -> Int { read(fd, p, n) }
private func sysWrite(_ fd: Int32, _ p: UnsafeRawPointer?, _ n: Int) -> Int { write(fd, p, n) }
