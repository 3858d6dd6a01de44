import Foundation
import Hummingbird
import Testing

@testable import StagepassHTTP

@Suite struct PageSecurityTests {
    /// `next=` keeps only same-site absolute paths of safe characters; everything a browser could read as another
    /// host (tabs and newlines are dropped by browsers, backslashes read as slashes) becomes `/`.
    @Test(arguments: [
        ("/approve?code=BCDF-GHJK", "/approve?code=BCDF-GHJK"),
        ("/factors", "/factors"),
        ("/\t/evil.example", "/"),
        ("/\n/evil.example", "/"),
        ("/\r/evil.example", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("/a//b", "/"),
        ("https://evil.example", "/"),
        ("evil.example", "/"),
        ("/ space", "/"),
        ("/\u{0}", "/"),
        ("/é", "/"),
        ("", "/"),
    ])
    func safeNext(input: String, expected: String) {
        #expect(PagesAPI.safeNext(input) == expected)
    }

    @Test func safeNextBoundsLength() {
        #expect(PagesAPI.safeNext("/" + String(repeating: "a", count: 600)) == "/")
        #expect(PagesAPI.safeNext(nil) == "/")
    }

    /// Over HTTPS every cookie is `__Host-` prefixed and Secure with `Path=/` and no Domain (RFC 6265bis §4.1.3.2);
    /// on development loopback HTTP there is no prefix (browsers refuse it without Secure).
    @Test func hostPrefixedCookiesOverHTTPS() throws {
        let https = try PageSecurity(issuer: "https://stagepass.example")
        #expect(https.sessionCookie == "__Host-sp_session")
        #expect(https.pendingCookie == "__Host-sp_pending")
        #expect(https.csrfCookie == "__Host-sp_csrf")
        let c = https.setCookie(https.sessionCookie, "v").description
        #expect(c.contains("; Secure") && c.contains("Path=/") && !c.lowercased().contains("domain"))
        let dev = try PageSecurity(issuer: "http://127.0.0.1:8080")
        #expect(dev.sessionCookie == "sp_session" && !dev.setCookie("x", "v").description.contains("Secure"))
    }

    /// The CSRF token depends on what it is bound to: a token for one binding (a nonce the attacker planted, or
    /// another session) is not the token of another.
    @Test func csrfTokensAreBoundToTheirBinding() throws {
        let s = try PageSecurity(issuer: "https://stagepass.example")
        let a = try s.csrfToken(binding: "session:s_1")
        #expect(a == (try s.csrfToken(binding: "session:s_1")))
        #expect(a != (try s.csrfToken(binding: "session:s_2")))
        #expect(a != (try s.csrfToken(binding: "nonce:s_1")))
        #expect(a != (try PageSecurity(issuer: "https://stagepass.example").csrfToken(binding: "session:s_1")))
    }
}
