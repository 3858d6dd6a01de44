extension AccessPolicy {
    /// The shipped example policy (``exampleYAML``), which `stagepass serve` uses without `--policy`.
    /// - Throws: ``PolicyError``; never in practice, a test loads it.
    public static func example() throws -> AccessPolicy {
        try load(yaml: exampleText(), source: exampleSource)
    }

    /// The shipped example policy's YAML text (`stagepass policy example` prints it): the resource file
    /// `Resources/example-policy.yaml`, compiled into the module.
    ///
    /// Groups `developers` (role `builder`: stages `build` and `staging`) and `release-managers` (role `deployer`:
    /// `staging` and `production`), the audience `deploy-api`; `production` needs a per-run approval for pipelines,
    /// a factor proved at most 5 minutes ago, and gives tokens of at most 5 minutes. Members of `admins` (the account
    /// created on first start) are administrators.
    ///
    /// Empty only if the compiled-in resource were not UTF-8, which a test rules out; ``example()`` reports that
    /// case as a ``PolicyError``.
    public static let exampleYAML: String = (try? exampleText()) ?? ""

    /// The name policy errors give the shipped example.
    static let exampleSource = "<example policy>"

    /// The example policy resource as text.
    ///
    /// The file is embedded in the binary (`.embedInCode` in `Package.swift`) rather than looked up in a resource
    /// bundle at run time: a `stagepass` binary copied on its own still has its default policy, and a missing bundle
    /// cannot stop the server (`Bundle.module` ends the process when its bundle is not found).
    /// - Throws: ``PolicyError`` when the embedded bytes are not UTF-8.
    static func exampleText() throws -> String {
        guard let text = String(validating: PackageResources.example_policy_yaml, as: UTF8.self) else {
            throw PolicyError(
                file: exampleSource,
                line: nil,
                message: "the shipped example policy resource is not UTF-8 text"
            )
        }
        return text
    }
}
