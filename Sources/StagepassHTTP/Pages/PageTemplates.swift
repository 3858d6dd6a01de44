import Foundation

/// The pages' Mustache templates, CSS and JavaScript: resource files in `Templates/` (no build step, no CDN).
/// `{{x}}` escapes HTML; `{{{body}}}` only ever receives another rendered template.
struct PageTemplates: Sendable {
    /// The template names, one `Templates/<name>.mustache` each.
    static let names = [
        "layout", "signin", "factor", "home", "factors", "approvals", "approve", "delegations", "keys", "revocations",
        "audit", "stepup", "message",
    ]

    /// Template text by name.
    let templates: [String: String]
    /// `/static/app.css`.
    let css: String
    /// `/static/app.js`: the only script, the WebAuthn ceremonies (W3C WebAuthn Level 2 §5.1.3, §5.1.4) behind the
    /// security-key buttons (the CSP allows no inline script). Every POST carries the page's CSRF token in
    /// `X-CSRF-Token`; the server answers `{"redirect": …}` or a refusal with `detail`.
    let script: String

    /// Reads the resource files shipped with the module.
    /// - Throws: ``PageTemplateError`` when a file is missing or not UTF-8.
    init() throws {
        var templates: [String: String] = [:]
        for name in Self.names { templates[name] = try Self.read(name, "mustache") }
        self.templates = templates
        css = try Self.read("app", "css")
        script = try Self.read("app", "js")
    }

    static func read(_ name: String, _ ext: String) throws -> String {
        guard let url = Bundle.module.url(forResource: name, withExtension: ext, subdirectory: "Templates"),
            let data = try? Data(contentsOf: url), var text = String(data: data, encoding: .utf8)
        else { throw PageTemplateError(file: "\(name).\(ext)") }
        // The files end with a newline; the rendered text does not.
        if text.hasSuffix("\n") { text.removeLast() }
        return text
    }
}

/// A page resource file that is missing from the module's bundle or unreadable.
struct PageTemplateError: Error, CustomStringConvertible {
    var file: String
    var description: String { "page resource Templates/\(file) is missing or unreadable" }
}
