import ArgumentParser
import Foundation
import StagepassBroker
import StagepassJOSE

/// `stagepass policy …`: check a policy file without starting the broker, or print the shipped example.
/// The format is `Specs/policy.md`.
struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Check a policy file, or print the shipped example policy.",
        subcommands: [Check.self, Example.self, Explain.self]
    )

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a policy file: exit 0 printing a summary, or exit 1 printing FILE:LINE: message."
        )
        @Argument(help: "The policy YAML file (`-`: standard input).") var file: String

        func run() throws {
            let policy = try loadPolicyReporting(file: file)
            print("ok: \(policySummary(policy))")
        }
    }

    /// `stagepass policy explain`: which pipeline rule a CI token (or its claims) matches for a role, stage and
    /// audience, or for each rule the first claim that did not match and why.
    struct Explain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Explain which pipeline rule a CI token matches (exit 0), or why none does (exit 1).",
            discussion: """
                The token's claims are read without checking its signature or times (the broker checks those); \
                give --ci-token with a token file, or --claims with its claims as JSON (then --issuer names the \
                CI issuer when the claims have no iss).
                """
        )
        @Argument(help: "The policy YAML file (`-`: standard input).") var file: String
        @Option(name: .customLong("ci-token"), help: "A file holding the CI token.") var ciToken: String?
        @Option(help: "A file holding the token's claims as a JSON object.") var claims: String?
        @Option(help: "The ci_issuers name, when the claims carry no iss.") var issuer: String?
        @Option(help: "The role requested.") var role: String
        @Option(help: "The stage requested.") var stage: String
        @Option(help: "The audience requested (the deploy endpoint).") var audience: String
        @Option(help: "Only this pipeline's rule.") var pipeline: String?

        func validate() throws {
            guard (ciToken == nil) != (claims == nil) else { throw ValidationError("give one of --ci-token, --claims") }
        }

        func run() throws {
            let policy = try loadPolicyReporting(file: file)
            let raw = try readClaims()
            let chosen: CIIssuerPolicy?
            if let name = issuer {
                chosen = policy.ciIssuers[name]
                guard chosen != nil else { throw ValidationError("no CI issuer '\(name)' in the policy") }
            } else if let iss = raw["iss"]?.stringValue {
                chosen = policy.ciIssuers.values.first { $0.issuer == iss }
                guard chosen != nil else {
                    print("refused: '\(iss)' is not a trusted CI issuer (ci_issuers)")
                    throw ExitCode(1)
                }
            } else {
                throw ValidationError("the claims have no iss: name the CI issuer with --issuer")
            }
            guard let i = chosen else { throw ExitCode(1) }
            let identity = CIIdentity(
                issuerName: i.name,
                issuer: i.issuer,
                subject: raw["sub"]?.stringValue ?? "",
                replayKey: raw["jti"]?.stringValue ?? "",
                expiresAt: raw["exp"]?.intValue ?? 0,
                claims: CIIdentity.mapped(raw, i.mapping)
            )
            print("CI issuer: \(i.name) (\(i.issuer)), claims \(i.mapping.name)")
            for c in identity.claims.keys.sorted() { print("  \(c.rawValue) = \(identity.claims[c] ?? "")") }
            var audiences: [String] = []
            if let a = raw["aud"]?.stringValue { audiences = [a] }
            if let a = raw["aud"]?.arrayValue { audiences = a.compactMap(\.stringValue) }
            if !audiences.isEmpty && !audiences.contains(i.audience) {
                print("note: the token's aud \(audiences) does not contain '\(i.audience)': the broker refuses it")
            }
            let e = CIPolicyEvaluator.evaluate(
                identity,
                role: role,
                stage: stage,
                audience: audience,
                pipeline: pipeline,
                policy: policy
            )
            if let g = e.guardrail {
                print("refused by a guardrail: \(g.reason)")
                throw ExitCode(1)
            }
            for r in e.rules {
                print("pipeline '\(r.pipeline)': " + (r.mismatch.map { "no: \($0.reason)" } ?? "MATCH"))
            }
            if let m = e.matched {
                print("matched: pipeline '\(m)' for \(role)@\(stage) (\(audience))")
            } else {
                print("refused: \(e.explanation)")
                throw ExitCode(1)
            }
        }

        private func readClaims() throws -> JSONValue {
            let path = ciToken ?? claims ?? ""
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ValidationError("cannot read \(path)")
            }
            let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if ciToken != nil {
                let parts = text.split(separator: ".", omittingEmptySubsequences: false)
                guard parts.count == 3, let payload = try? Base64URL.decode(String(parts[1])),
                    let v = try? JSONValue.parse(payload), v.objectValue != nil
                else { throw ValidationError("\(path) does not hold a JWT") }
                return v
            }
            guard let v = try? JSONValue.parse(text), v.objectValue != nil else {
                throw ValidationError("\(path) does not hold a JSON object")
            }
            return v
        }
    }

    struct Example: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the shipped example policy (what `serve` uses without --policy)."
        )
        func run() throws { print(AccessPolicy.exampleYAML, terminator: "") }
    }
}

/// "2 roles, 3 stages, 1 audiences, 1 pipelines".
func policySummary(_ policy: AccessPolicy) -> String {
    "\(policy.roles.count) roles, \(policy.stages.count) stages, \(policy.audiences.count) audiences, "
        + "\(policy.pipelines.count) pipelines"
        + (policy.ciIssuers.isEmpty ? "" : ", \(policy.ciIssuers.count) CI issuers")
}

/// Loads a policy file (`-`: standard input); on a ``PolicyError`` prints `FILE:LINE: message` to stderr and exits 1.
func loadPolicyReporting(file: String) throws -> AccessPolicy {
    do {
        if file == "-" {
            let data = FileHandle.standardInput.readDataToEndOfFile()
            return try AccessPolicy.load(yaml: String(decoding: data, as: UTF8.self), source: "<stdin>")
        }
        return try AccessPolicy.load(file: file)
    } catch let error as PolicyError {
        FileHandle.standardError.write(Data("\(error)\n".utf8))
        throw ExitCode(1)
    }
}
