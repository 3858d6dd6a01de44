import Testing
@testable import StagepassJOSE
@Test func smoke() throws { let k = try PrivateKey.generate(for: .ES256); let t = try JWS.sign(payload: [1], header: [:], key: k, alg: .ES256); #expect(t.split(separator: ".").count == 3) }
