import Hummingbird
import StagepassBroker

extension PagesAPI {
    /// Security-key names by factor id (filled in by the WebAuthn integration).
    func webauthnNames(_ userId: String) throws -> [String: String] { [:] }

    /// The WebAuthn ceremony endpoints the page script calls.
    func registerWebAuthn(on router: Router<BrokerRequestContext>) {}
}
