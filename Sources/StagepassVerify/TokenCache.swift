import Synchronization

/// A bounded map from token text to its verified form, so a token presented again skips parsing and the
/// signature (time, requirements and status are still checked on every call). FIFO eviction.
final class TokenCache: Sendable {
    private struct State {
        var map: [String: VerifiedToken] = [:]
        var order: [String] = []
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
        return state.withLock { $0.map[token] }
    }

    func insert(_ token: String, _ verified: VerifiedToken) {
        guard capacity > 0 else { return }
        state.withLock { s in
            guard s.map[token] == nil else { return }
            if s.order.count < capacity {
                s.order.append(token)
            } else {
                s.map[s.order[s.next]] = nil
                s.order[s.next] = token
                s.next = (s.next + 1) % capacity
            }
            s.map[token] = verified
        }
    }
}
