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

    /// The resource files, compiled into the module (`.embedInCode`): a `stagepass` binary copied on its own still
    /// serves its pages.
    static let files: [String: [UInt8]] = [
        "app.css": PackageResources.app_css,
        "app.js": PackageResources.app_js,
        "approvals.mustache": PackageResources.approvals_mustache,
        "approve.mustache": PackageResources.approve_mustache,
        "audit.mustache": PackageResources.audit_mustache,
        "delegations.mustache": PackageResources.delegations_mustache,
        "factor.mustache": PackageResources.factor_mustache,
        "factors.mustache": PackageResources.factors_mustache,
        "home.mustache": PackageResources.home_mustache,
        "keys.mustache": PackageResources.keys_mustache,
        "layout.mustache": PackageResources.layout_mustache,
        "message.mustache": PackageResources.message_mustache,
        "revocations.mustache": PackageResources.revocations_mustache,
        "signin.mustache": PackageResources.signin_mustache,
        "stepup.mustache": PackageResources.stepup_mustache,
    ]

    /// Decodes the embedded resource files.
    /// - Throws: ``PageTemplateError`` when a file is missing or not UTF-8.
    init() throws {
        var templates: [String: String] = [:]
        for name in Self.names { templates[name] = try Self.read(name, "mustache") }
        self.templates = templates
        css = try Self.read("app", "css")
        script = try Self.read("app", "js")
    }

    static func read(_ name: String, _ ext: String) throws -> String {
        guard let bytes = files["\(name).\(ext)"], var text = String(validating: bytes, as: UTF8.self) else {
            throw PageTemplateError(file: "\(name).\(ext)")
        }
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
