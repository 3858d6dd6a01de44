import Foundation
import StagepassJOSE
import Yams

// The `ci_issuers` and `ci_guardrails` sections, and a pipeline's `ci` rule.

extension PolicyReader {
    static let ciIssuerKeys = [
        "issuer", "audience", "claims", "jwks_file", "leeway", "max_token_lifetime", "fetch_timeout", "rsa_algorithm",
    ]
    static let ciGuardrailKeys = ["allowed_issuers", "untrusted_events", "protected_ref_stages"]

    /// `ci_issuers`: name → issuer URL, expected audience, claim vocabulary (a preset name or a mapping), optional
    /// pinned JWKS file and limits.
    func ciIssuers(_ section: Entry) throws -> [String: CIIssuerPolicy] {
        var result: [String: CIIssuerPolicy] = [:]
        var seen: [String: String] = [:]
        for i in try named(section, "CI issuer") {
            var issuer: String?
            var audience: String?
            var mapping: CIClaimMapping?
            var item = CIIssuerPolicy(name: i.key, issuer: "", audience: "", mapping: .github)
            for e in try entries(i.value, path: i.path, line: i.line, allowed: Self.ciIssuerKeys) {
                switch e.key {
                case "issuer":
                    let url = try string(e)
                    guard Self.acceptableIssuerURL(url) else {
                        throw fail(
                            e.valueLine,
                            "\(e.path): '\(url)' must be an https URL (http only on a loopback address)"
                        )
                    }
                    issuer = url
                case "audience":
                    let a = try string(e)
                    guard (1...512).contains(a.utf8.count) else { throw fail(e.valueLine, "\(e.path): 1-512 bytes") }
                    audience = a
                case "claims": mapping = try claimMapping(e)
                case "jwks_file": item.jwksFile = try string(e)
                case "leeway":
                    item.leeway = try duration(e)
                    guard item.leeway <= 300 else { throw fail(e.valueLine, "\(e.path): at most 5m") }
                case "max_token_lifetime":
                    item.maxTokenLifetime = try duration(e)
                    guard item.maxTokenLifetime <= 86_400 else { throw fail(e.valueLine, "\(e.path): at most 1d") }
                case "fetch_timeout":
                    item.fetchTimeout = try duration(e)
                    guard item.fetchTimeout <= 30 else { throw fail(e.valueLine, "\(e.path): at most 30s") }
                case "rsa_algorithm":
                    let name = try string(e)
                    guard let alg = JWSAlgorithm(rawValue: name), alg == .RS256 || alg == .PS256 else {
                        throw fail(e.valueLine, "\(e.path): RS256 or PS256, found '\(name)'")
                    }
                    item.rsaAlgorithm = alg
                default: break
                }
            }
            guard let issuer else { throw fail(i.line, "\(i.path): issuer is required") }
            guard let audience else {
                throw fail(i.line, "\(i.path): audience is required (the aud the CI platform puts in its tokens)")
            }
            guard let mapping else {
                throw fail(i.line, "\(i.path): claims is required (github, gitlab, buildkite, or a mapping)")
            }
            if let other = seen[issuer] {
                throw fail(i.line, "\(i.path): the issuer \(issuer) is already listed as '\(other)'")
            }
            seen[issuer] = i.key
            item.issuer = issuer
            item.audience = audience
            item.mapping = mapping
            result[i.key] = item
        }
        return result
    }

    /// https anywhere; http only to a loopback host (tests, a local mirror).
    static func acceptableIssuerURL(_ s: String) -> Bool {
        guard let u = URL(string: s), let host = u.host, !host.isEmpty, u.query == nil, u.fragment == nil else {
            return false
        }
        if u.scheme == "https" { return true }
        return u.scheme == "http" && ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host)
    }

    /// `claims: github` (a preset), or a mapping `{preset: github, ref: my_ref, …}` whose keys are Stagepass claim
    /// names and values the platform's claim names (a preset fills in what is not named; `required_ids` lists the
    /// immutable ids rules must pin).
    func claimMapping(_ e: Entry) throws -> CIClaimMapping {
        let presets = CIClaimMapping.presets.keys.sorted().joined(separator: ", ")
        if case .scalar = e.value, !isNull(e.value) {
            let name = try string(e)
            guard let preset = CIClaimMapping.presets[name] else {
                throw fail(e.valueLine, "\(e.path): unknown claim vocabulary '\(name)' (expected one of: \(presets))")
            }
            return preset
        }
        let vocabulary = CIClaim.allCases.map(\.rawValue)
        var mapping = CIClaimMapping(name: "custom", claims: [:], requiredIds: [])
        var requiredIds: [CIClaim]?
        for c in try entries(e.value, path: e.path, line: e.line, allowed: ["preset", "required_ids"] + vocabulary) {
            switch c.key {
            case "preset":
                let name = try string(c)
                guard let preset = CIClaimMapping.presets[name] else {
                    throw fail(c.valueLine, "\(c.path): unknown preset '\(name)' (expected one of: \(presets))")
                }
                mapping.claims.merge(preset.claims) { mine, _ in mine }
                mapping.name = name + "+custom"
                if requiredIds == nil { mapping.requiredIds = preset.requiredIds }
            case "required_ids":
                requiredIds = try names(c, "claim").map { item in
                    guard let claim = CIClaim(rawValue: item.name) else {
                        throw fail(item.line, "\(c.path): unknown claim '\(item.name)'")
                    }
                    return claim
                }
            default:
                if let claim = CIClaim(rawValue: c.key) { mapping.claims[claim] = try string(c) }
            }
        }
        if let requiredIds { mapping.requiredIds = requiredIds }
        for id in mapping.requiredIds where mapping.claims[id] == nil {
            throw fail(e.line, "\(e.path): required id '\(id.rawValue)' is not mapped to a claim")
        }
        return mapping
    }

    /// `ci_guardrails`: allowed issuers, never-trusted events, stages that need a protected ref.
    func ciGuardrails(_ section: Entry, policy: AccessPolicy) throws -> CIGuardrails {
        var g = CIGuardrails()
        for e in try entries(section.value, path: section.key, line: section.line, allowed: Self.ciGuardrailKeys) {
            switch e.key {
            case "allowed_issuers":
                let items = try names(e, "CI issuer")
                try checkDefined(items, in: policy.ciIssuers.keys, "CI issuer", path: e.path)
                g.allowedIssuers = Set(items.map(\.name))
            case "untrusted_events":
                g.untrustedEvents = Set(try names(e, "event").map(\.name))
            case "protected_ref_stages":
                let items = try names(e, "stage")
                try checkDefined(items, in: policy.stages.keys, "stage", path: e.path)
                g.protectedRefStages = Set(items.map(\.name))
            default: break
            }
        }
        return g
    }

    /// A pipeline's `ci` member: `issuer`, then a condition per Stagepass claim (a string: exact, or a glob when it
    /// holds `*`; a list: any of them), and `allow_names_only`.
    func ciRule(_ e: Entry, policy: AccessPolicy) throws -> CIRule {
        let vocabulary = CIClaim.allCases.map(\.rawValue)
        var issuerName: String?
        var rule = CIRule(issuer: "", claims: [:])
        var lines: [CIClaim: Int] = [:]
        for c in try entries(e.value, path: e.path, line: e.line, allowed: ["issuer", "allow_names_only"] + vocabulary)
        {
            switch c.key {
            case "issuer":
                let name = try string(c)
                guard policy.ciIssuers[name] != nil else {
                    let known =
                        policy.ciIssuers.isEmpty ? "none is defined" : "defined: \(joined(policy.ciIssuers.keys))"
                    throw fail(c.valueLine, "\(c.path): unknown CI issuer '\(name)' (\(known))")
                }
                issuerName = name
            case "allow_names_only": rule.allowNamesOnly = try bool(c)
            default:
                guard let claim = CIClaim(rawValue: c.key) else { continue }
                rule.claims[claim] = try matcher(c)
                lines[claim] = c.line
            }
        }
        guard let issuerName, let issuer = policy.ciIssuers[issuerName] else {
            throw fail(e.line, "\(e.path): issuer is required (a name from ci_issuers)")
        }
        rule.issuer = issuerName
        guard !rule.claims.isEmpty else {
            throw fail(e.line, "\(e.path): name at least one claim to match (repository, repository_id, …)")
        }
        for claim in rule.claims.keys.sorted() where issuer.mapping.claims[claim] == nil {
            throw fail(
                lines[claim] ?? e.line,
                "\(e.path).\(claim.rawValue): the CI issuer '\(issuerName)' (\(issuer.mapping.name)) has no such claim"
            )
        }
        // Names can be registered again by someone else once renamed or deleted: pin the immutable ids.
        if !rule.allowNamesOnly {
            for id in issuer.mapping.requiredIds {
                guard let m = rule.claims[id] else {
                    throw fail(
                        e.line,
                        "\(e.path): \(id.rawValue) is required for \(issuerName) (names alone can be re-registered "
                            + "by someone else; set allow_names_only: true to accept that)"
                    )
                }
                guard m.isExact else {
                    throw fail(
                        lines[id] ?? e.line,
                        "\(e.path).\(id.rawValue): an immutable id must be exact, not a glob"
                    )
                }
            }
        }
        return rule
    }

    /// A string (exact, or a glob when it holds `*`), or a non-empty list of them.
    func matcher(_ e: Entry) throws -> CIMatcher {
        func one(_ s: String, line: Int) throws -> CIMatcher {
            guard (1...1024).contains(s.utf8.count) else { throw fail(line, "\(e.path): 1-1024 bytes") }
            return s.contains("*") ? .glob(s) : .exact(s)
        }
        switch e.value {
        case .scalar(let s) where !isNull(e.value): return try one(s.string, line: e.valueLine)
        case .sequence(let seq) where !seq.isEmpty:
            return .anyOf(
                try seq.map { node in
                    let line = node.mark?.line ?? e.valueLine
                    guard case .scalar(let s) = node, !isNull(node) else {
                        throw fail(line, "\(e.path): expected a value, found \(describe(node))")
                    }
                    return try one(s.string, line: line)
                }
            )
        default:
            throw fail(e.valueLine, "\(e.path): expected a value, a glob or a list of them, found \(describe(e.value))")
        }
    }
}
