public import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An error reading or writing a secret file: the stable `code` is `insecure_permissions`, `not_a_regular_file`,
/// `exists` or `io_failure`; `detail` names the path and what to do, never the file's contents.
public struct SecretFileError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Code: String, Sendable {
        case insecurePermissions = "insecure_permissions"
        case notARegularFile = "not_a_regular_file"
        case exists = "exists"
        case ioFailure = "io_failure"
    }

    private let _code: Code
    /// What went wrong, with the path; never secret material.
    public let detail: String

    private init(_ code: Code, _ detail: String) {
        _code = code
        self.detail = detail
    }

    public var code: String { _code.rawValue }
    public var description: String { detail }

    public static func == (l: SecretFileError, r: SecretFileError) -> Bool { l._code == r._code }
    public func hash(into hasher: inout Hasher) { hasher.combine(_code) }

    /// The file can be read (or written) by group or others.
    public static let insecurePermissions = SecretFileError(.insecurePermissions, "")
    /// The path is a directory, a device, a pipe, or (where links are refused) a symbolic link.
    public static let notARegularFile = SecretFileError(.notARegularFile, "")
    /// A create-only write found the file already there.
    public static let exists = SecretFileError(.exists, "")
    /// A system call failed.
    public static let ioFailure = SecretFileError(.ioFailure, "")

    static func insecurePermissions(_ d: String) -> SecretFileError { .init(.insecurePermissions, d) }
    static func notARegularFile(_ d: String) -> SecretFileError { .init(.notARegularFile, d) }
    static func exists(_ d: String) -> SecretFileError { .init(.exists, d) }
    static func ioFailure(_ d: String) -> SecretFileError { .init(.ioFailure, d) }
}

/// The one way Stagepass writes and reads files holding secrets: the master key, the generated key passphrase,
/// signing key files and the keyring, the CLI session file; and the data directory and database files that hold
/// password hashes, sealed factor secrets and session hashes.
///
/// - A secret file is mode `0600` from its first byte: it is created under a temporary name with
///   `open(O_CREAT|O_EXCL|O_WRONLY|O_NOFOLLOW, 0600)` (then `fchmod` to exactly 0600, since the umask filters the
///   mode given to `open`), written, fsynced, renamed into place and the directory fsynced. No moment exists in which
///   the content sits in a file others may read.
/// - Reading refuses a file that group or others can read or write (`insecure_permissions`) and anything that is not
///   a regular file (a symbolic link is followed and the file it names is checked); the mode is checked on the
///   descriptor that is then read, so the check and the read see the same file. Nothing is fixed silently: the error
///   says which `chmod` to run.
/// - ``ensurePrivateDirectory(_:)`` creates a directory `0700`, and tightens an existing one that group or others
///   can enter to `0700` when this user owns it (refusing otherwise); ``ensurePrivateFile(_:)`` does the same for a
///   file that another program (SQLite) then opens, so it and the files SQLite derives from it are `0600`.
///
/// ```swift
/// try SecretFile.write(Array("s3cret\n".utf8), to: "data/master.key", replace: false)
/// let bytes = try SecretFile.read("data/master.key")   // nil when absent
/// ```
public enum SecretFile {
    /// The mode of every secret file.
    public static let fileMode: mode_t = 0o600
    /// The mode of a directory holding secret files.
    public static let directoryMode: mode_t = 0o700

    /// Writes `bytes` to `path` with mode 0600, durably: temp file (0600 from creation) → write → fsync → rename
    /// (or, with `replace: false`, link, which fails if `path` exists) → fsync of the directory.
    ///
    /// A relative `path` is relative to the current directory (a bare file name included).
    /// - Parameters:
    ///   - replace: false to refuse an existing file (``SecretFileError/exists``), e.g. a master key must never be
    ///     overwritten by a fresh one.
    ///   - stepPrefix: names crash points for tests (``CrashPoint``); nil for none.
    /// - Throws: ``SecretFileError`` (`exists`, `io_failure`).
    public static func write(_ bytes: [UInt8], to path: String, replace: Bool = true) throws {
        try write(bytes, to: path, replace: replace, stepPrefix: nil)
    }

    static func write(_ bytes: [UInt8], to path: String, replace: Bool, stepPrefix: String?) throws {
        let (directory, name) = split(path)
        let temp = "\(directory)/.\(name).\(tempSuffix()).tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, fileMode)
        guard fd >= 0 else { throw SecretFileError.ioFailure("cannot create \(temp): \(errnoText())") }
        var placed = false
        defer {
            if !placed { _ = unlink(temp) }
        }
        do {
            defer { close(fd) }
            // The umask may have removed bits from 0600 (never added any); set exactly 0600.
            guard fchmod(fd, fileMode) == 0 else { throw SecretFileError.ioFailure("chmod \(temp): \(errnoText())") }
            try writeAll(fd, bytes, path: temp)
            guard fsync(fd) == 0 else { throw SecretFileError.ioFailure("fsync \(temp): \(errnoText())") }
        }
        if let stepPrefix { CrashPoint.reach("\(stepPrefix)-temp-written") }
        if replace {
            guard rename(temp, path) == 0 else {
                throw SecretFileError.ioFailure("rename to \(path): \(errnoText())")
            }
            placed = true
        } else {
            guard link(temp, path) == 0 else {
                if errno == EEXIST { throw SecretFileError.exists("\(path) already exists; it is not replaced") }
                throw SecretFileError.ioFailure("cannot create \(path): \(errnoText())")
            }
            _ = unlink(temp)
            placed = true
        }
        if let stepPrefix { CrashPoint.reach("\(stepPrefix)-renamed") }
        try syncDirectory(directory)
        if let stepPrefix { CrashPoint.reach("\(stepPrefix)-committed") }
    }

    /// Reads a secret file whole; nil when it does not exist.
    /// - Throws: ``SecretFileError``: `insecure_permissions` when group or others have any access (mode & 0o077),
    ///   `not_a_regular_file` for a directory, device or pipe, `io_failure` otherwise.
    public static func read(_ path: String) throws -> [UInt8]? {
        // A symbolic link is followed (mounted secrets often are links); the file it names is what is checked.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw SecretFileError.ioFailure("cannot read \(path): \(errnoText())")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SecretFileError.ioFailure("stat \(path): \(errnoText())") }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw SecretFileError.notARegularFile("\(path) is not a regular file")
        }
        let mode = st.st_mode & 0o7777
        guard mode & 0o077 == 0 else {
            throw SecretFileError.insecurePermissions(
                "\(path) has mode \(String(mode, radix: 8, uppercase: false)); group and others must have no access "
                    + "(chmod 600 \(path))"
            )
        }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { secretRead(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SecretFileError.ioFailure("read \(path): \(errnoText())")
            }
            if n == 0 { break }
            out.append(contentsOf: buffer[0..<n])
        }
        return out
    }

    /// Creates `directory` (and missing parents) with mode 0700; an existing directory that group or others can use
    /// is tightened to 0700 when this user owns it.
    /// - Throws: ``SecretFileError``: `insecure_permissions` for an open directory owned by someone else or a shared
    ///   one (writable by others, or sticky like `/tmp`), `not_a_regular_file` when the path is not a directory,
    ///   `io_failure`.
    public static func ensurePrivateDirectory(_ directory: String) throws {
        var st = stat()
        if stat(directory, &st) != 0 {
            guard errno == ENOENT else { throw SecretFileError.ioFailure("stat \(directory): \(errnoText())") }
            let parent = (directory as NSString).deletingLastPathComponent
            if !parent.isEmpty, parent != directory {
                var pst = stat()
                if stat(parent, &pst) != 0 {
                    // Parents are ordinary directories (mode per umask), only the last one holds secrets.
                    do {
                        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
                    } catch {
                        throw SecretFileError.ioFailure("cannot create \(parent)")
                    }
                }
            }
            guard mkdir(directory, directoryMode) == 0 || errno == EEXIST else {
                throw SecretFileError.ioFailure("cannot create \(directory): \(errnoText())")
            }
            guard stat(directory, &st) == 0 else {
                throw SecretFileError.ioFailure("stat \(directory): \(errnoText())")
            }
        }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            throw SecretFileError.notARegularFile("\(directory) is not a directory")
        }
        // A shared directory (world-writable or sticky, like /tmp) is never taken over and tightened.
        guard st.st_mode & (0o002 | mode_t(S_ISVTX)) == 0 else {
            throw SecretFileError.insecurePermissions(
                "\(directory) is shared (writable by others or sticky); give the broker a directory of its own"
            )
        }
        try tighten(directory, mode: st.st_mode, owner: st.st_uid, to: directoryMode)
    }

    /// Makes sure `path` exists as a regular file with mode 0600 without touching its content: creates it empty (0600
    /// from creation) when missing, tightens an existing one that group or others can use when this user owns it.
    ///
    /// Used for the broker database: SQLite gives its `-wal` and `-shm` files the mode of the database file.
    /// - Throws: ``SecretFileError``.
    public static func ensurePrivateFile(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, fileMode)
        guard fd >= 0 else {
            if errno == ELOOP { throw SecretFileError.notARegularFile("\(path) is a symbolic link") }
            throw SecretFileError.ioFailure("cannot open \(path): \(errnoText())")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SecretFileError.ioFailure("stat \(path): \(errnoText())") }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw SecretFileError.notARegularFile("\(path) is not a regular file")
        }
        if st.st_mode & 0o077 != 0 {
            guard st.st_uid == geteuid() else {
                throw SecretFileError.insecurePermissions(
                    "\(path) is readable by others and owned by another user; chmod 600 \(path)"
                )
            }
            guard fchmod(fd, fileMode) == 0 else { throw SecretFileError.ioFailure("chmod \(path): \(errnoText())") }
        }
    }

    /// Tightens an existing file (e.g. SQLite's `-wal`/`-shm`) to 0600 if group or others can use it; absent is fine.
    /// - Throws: ``SecretFileError``.
    public static func tightenIfPresent(_ path: String) throws {
        var st = stat()
        if lstat(path, &st) != 0 {
            if errno == ENOENT { return }
            throw SecretFileError.ioFailure("stat \(path): \(errnoText())")
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw SecretFileError.notARegularFile("\(path) is not a regular file")
        }
        try tighten(path, mode: st.st_mode, owner: st.st_uid, to: fileMode)
    }

    /// The permission bits of `path` (not following a final symbolic link); nil when absent.
    public static func mode(_ path: String) throws -> mode_t? {
        var st = stat()
        if lstat(path, &st) != 0 {
            if errno == ENOENT { return nil }
            throw SecretFileError.ioFailure("stat \(path): \(errnoText())")
        }
        return st.st_mode & 0o7777
    }

    /// fsyncs a directory so a rename, link or unlink inside it is durable.
    static func syncDirectory(_ directory: String) throws {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw SecretFileError.ioFailure("cannot open directory \(directory): \(errnoText())") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw SecretFileError.ioFailure("fsync directory \(directory): \(errnoText())") }
    }

    private static func tighten(_ path: String, mode: mode_t, owner: uid_t, to wanted: mode_t) throws {
        guard mode & 0o077 != 0 else { return }
        guard owner == geteuid() else {
            throw SecretFileError.insecurePermissions(
                "\(path) has mode \(String(mode & 0o7777, radix: 8)) and is owned by another user; "
                    + "chmod \(String(wanted, radix: 8)) \(path)"
            )
        }
        guard chmod(path, wanted) == 0 else { throw SecretFileError.ioFailure("chmod \(path): \(errnoText())") }
    }

    /// `dir/name` → (`dir`, `name`); a bare name is in the current directory (`.`).
    static func split(_ path: String) -> (String, String) {
        let ns = path as NSString
        let dir = ns.deletingLastPathComponent
        let name = ns.lastPathComponent
        if dir.isEmpty { return (".", name) }
        return (dir, name)
    }

    /// A random suffix so two writers of the same file never share a temp name.
    private static func tempSuffix() -> String {
        String(UInt64.random(in: 0...UInt64.max), radix: 36)
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { secretWrite(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SecretFileError.ioFailure("write \(path): \(errnoText())")
            }
            offset += n
        }
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}

// File-scope wrappers so the libc calls are not shadowed by `SecretFile.read`/`write`.
private func secretRead(_ fd: Int32, _ p: UnsafeMutableRawPointer?, _ n: Int) -> Int { read(fd, p, n) }
private func secretWrite(_ fd: Int32, _ p: UnsafeRawPointer?, _ n: Int) -> Int { write(fd, p, n) }
