import ArgumentParser
import Foundation
import StagepassVerifyFetch

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Finds the job's OIDC token from its CI platform, so a pipeline needs no stored secret.
enum CIToken {
    struct Found {
        var value: String
        /// Where it came from, for the log line (never the token).
        var source: String
    }

    /// In order: `file`; GitHub Actions (`ACTIONS_ID_TOKEN_REQUEST_URL` + `ACTIONS_ID_TOKEN_REQUEST_TOKEN`, asked for
    /// `audience`); GitLab CI (`GITLAB_CI` and the id_tokens variable `gitlabVariable`); Buildkite (`BUILDKITE` and
    /// `buildkite-agent oidc request-token --audience … --claim organization_id,pipeline_id`).
    /// - Throws: `ValidationError` naming what is missing (exit status 2).
    static func find(
        file: String?,
        gitlabVariable: String,
        audience: String,
        environment env: [String: String]
    ) async throws -> Found {
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw ValidationError("cannot read the CI token file \(file)")
            }
            return Found(value: try trimmed(data, "the CI token file \(file)"), source: file)
        }
        if let url = env["ACTIONS_ID_TOKEN_REQUEST_URL"], let bearer = env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] {
            return Found(
                value: try await github(url: url, bearer: bearer, audience: audience),
                source: "GitHub Actions"
            )
        }
        if env["GITHUB_ACTIONS"] == "true" {
            throw ValidationError(
                "GitHub Actions gives no OIDC token to this job: add `permissions: id-token: write` to the workflow"
            )
        }
        if env["GITLAB_CI"] != nil {
            guard let token = env[gitlabVariable], !token.isEmpty else {
                throw ValidationError(
                    "GitLab CI: the variable \(gitlabVariable) is unset; declare it in the job's id_tokens "
                        + "with aud: \(audience)"
                )
            }
            return Found(value: token, source: "GitLab id_tokens \(gitlabVariable)")
        }
        if env["BUILDKITE"] == "true" {
            return Found(value: try buildkite(audience: audience, environment: env), source: "buildkite-agent oidc")
        }
        throw ValidationError(
            "no CI token: not in GitHub Actions, GitLab CI or Buildkite; use --ci-token-file or --client-secret-env"
        )
    }

    private static func trimmed(_ data: Data, _ what: String) throws -> String {
        let s = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard s.split(separator: ".", omittingEmptySubsequences: false).count == 3 else {
            throw ValidationError("\(what) does not hold a JWT")
        }
        return s
    }

    /// GitHub Actions: GET `$ACTIONS_ID_TOKEN_REQUEST_URL&audience=…` with the request token as bearer; the answer
    /// is `{"value": "<JWT>"}`.
    static func github(url: String, bearer: String, audience: String) async throws -> String {
        var components = URLComponents(string: url)
        var items = components?.queryItems ?? []
        items.append(URLQueryItem(name: "audience", value: audience))
        components?.queryItems = items
        guard let target = components?.url else { throw ValidationError("ACTIONS_ID_TOKEN_REQUEST_URL is not a URL") }
        var request = URLRequest(url: target, timeoutInterval: 30)
        request.setValue("bearer \(bearer)", forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        // Through a completion handler, not `URLSession.data(for:)` (see URLSessionGetter.perform).
        let (data, response) = try await URLSessionGetter.perform(request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 200,
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let value = object["value"] as? String
        else {
            throw ValidationError("GitHub Actions refused the OIDC token request (HTTP \(status))")
        }
        return try trimmed(Data(value.utf8), "GitHub's OIDC answer")
    }

    /// Buildkite: `buildkite-agent oidc request-token`, asking for the immutable ids as optional claims.
    static func buildkite(audience: String, environment env: [String: String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "buildkite-agent", "oidc", "request-token", "--audience", audience, "--claim",
            "organization_id,pipeline_id",
        ]
        process.environment = env
        let out = Pipe()
        process.standardOutput = out
        do { try process.run() } catch { throw ValidationError("cannot run buildkite-agent: \(error)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError("buildkite-agent oidc request-token failed (exit \(process.terminationStatus))")
        }
        return try trimmed(data, "buildkite-agent's answer")
    }
}
