import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A bounded map from token text to its verified form, so a token presented again skips parsing and the
/// signature (time, requirements and status are still checked on every call). FIFO eviction.
///
/// A hit is only ever for the byte-identical token: keys compare their UTF-8 bytes, not `String` equality, which
/// is Unicode canonical equivalence (`"K"` and `"\u{212A}"` KELVIN SIGN are equal `String`s, so a byte-different,
/// malformed token would have hit the entry of a verified one).
final class TokenCache: Sendable {
    private struct State {
        var map: [Key: VerifiedToken] = [:]
        var order: [Key] = []
        var next = 0
    }
    private let capacity: Int
    private let state: Mutex<State>

    init(capacity: Int) {
        self.capacity = max(0, capacity)
        self.state = Mutex(State())
    }

    func lookup(_ token: String) -> VerifiedToken? {
        guard capacity > 0 else { return nil }
        let key = Key(token)
        return state.withLock { $0.map[key] }
    }

    func insert(_ token: String, _ verified: VerifiedToken) {
        guard capacity > 0 else { return }
        let key = Key(token)
        state.withLock { s in
            guard s.map[key] == nil else { return }
            if s.order.count < capacity {
                s.order.append(key)
            } else {
                s.map[s.order[s.next]] = nil
                s.order[s.next] = key
                s.next = (s.next + 1) % capacity
            }
            s.map[key] = verified
        }
    }

    /// The token text as a cache key.
    ///
    /// Hashing reads the length and the last ``hashedSuffix`` bytes only: for a stored (verified) token those are
    /// signature bytes, which differ between any two tokens an issuer signed, so the whole token need not be
    /// hashed (it was ~40 % of a cache hit). Equality compares every byte. Only verified tokens are stored, so
    /// crafted tokens sharing a stored token's suffix can cost at most one full comparison each, never a long
    /// probe chain.
    struct Key: Hashable, Sendable {
        static let hashedSuffix = 32
        let text: String

        init(_ text: String) { self.text = text }

        func hash(into hasher: inout Hasher) {
            var t = text
            t.withUTF8 { b in
                hasher.combine(b.count)
                hasher.combine(bytes: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: b.suffix(Key.hashedSuffix))))
            }
        }

        static func == (a: Key, b: Key) -> Bool {
            var x = a.text
            var y = b.text
            return x.withUTF8 { xb in
                y.withUTF8 { yb in
                    guard xb.count == yb.count else { return false }
                    guard let xp = xb.baseAddress, let yp = yb.baseAddress else { return true }
                    return memcmp(xp, yp, xb.count) == 0
                }
            }
        }
    }
}
