#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The process's open-file limit (RLIMIT_NOFILE), which bounds how many connections the server can hold.
public struct OpenFileLimit: Sendable, Equatable {
    public var soft: UInt64
    public var hard: UInt64

    /// The limit in force now; nil if it cannot be read.
    public static func current() -> OpenFileLimit? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        return OpenFileLimit(soft: UInt64(limit.rlim_cur), hard: UInt64(limit.rlim_max))
    }

    /// Raises the soft limit to the hard one (an unlimited hard limit: to 1,048,576, the kernel's usual `nr_open`).
    /// Returns the limit before and after; `after` equals `before` if the kernel refused the change.
    public static func raiseSoftToHard() -> (before: OpenFileLimit, after: OpenFileLimit)? {
        guard let before = current() else { return nil }
        let target = before.hard == UInt64(rlim_t.max) ? min(before.hard, 1 << 20) : before.hard
        guard target > before.soft else { return (before, before) }
        var limit = rlimit(rlim_cur: rlim_t(target), rlim_max: rlim_t(before.hard))
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, let after = current() else {
            return (before, before)
        }
        return (before, after)
    }
}
