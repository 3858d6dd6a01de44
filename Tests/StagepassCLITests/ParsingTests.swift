import ArgumentParser
import Foundation
import Testing

@testable import stagepass

/// Parses `arguments` as the binary does; returns the command or the message and exit code it would print.
func parse(_ arguments: [String]) -> Result<any ParsableCommand, ParseFailure> {
    do {
        return .success(try Stagepass.parseAsRoot(arguments))
    } catch {
        return .failure(ParseFailure(message: Stagepass.message(for: error), exitCode: Stagepass.exitCode(for: error)))
    }
}

struct ParseFailure: Error {
    let message: String
    let exitCode: ExitCode
}

/// The usage error `arguments` give (`Stagepass.main` turns its validation exit code into exit status 2).
func usageError(_ arguments: [String]) throws -> String {
    switch parse(arguments) {
    case .success(let command):
        Issue.record("\(arguments) parsed as \(type(of: command))")
        return ""
    case .failure(let failure):
        #expect(failure.exitCode == .validationFailure, "\(arguments): \(failure.message)")
        return failure.message
    }
}

func parsed<T: ParsableCommand>(_ arguments: [String], as type: T.Type) throws -> T {
    switch parse(arguments) {
    case .success(let command): return try #require(command as? T, "\(arguments) parsed as \(Swift.type(of: command))")
    case .failure(let failure):
        Issue.record("\(arguments): \(failure.message)")
        throw failure
    }
}

@Suite("CLI: argument parsing")
struct ParsingTests {
    // MARK: revoke names exactly one target

    @Test(arguments: [
        [],
        ["--jti", "j1", "--user", "alice"],
        ["--session", "s1", "--kid", "k1"],
        ["--jti", "j1", "--session", "s1", "--user", "alice", "--kid", "k1"],
        ["--reason", "lost laptop"],
    ])
    func revokeNeedsExactlyOneTarget(_ extra: [String]) throws {
        #expect(try usageError(["revoke"] + extra) == "name exactly one of --jti, --session, --user, --kid")
    }

    @Test func revokeWithOneTargetParses() throws {
        let r = try parsed(
            ["revoke", "--session", "s_1", "--reason", "lost laptop", "--session-file", "/tmp/x"],
            as: RevokeCommand.self
        )
        #expect(r.sid == "s_1")
        #expect(r.jti == nil && r.user == nil && r.kid == nil)
        #expect(r.reason == "lost laptop")
        #expect(r.session.sessionFile == "/tmp/x")
        #expect(r.session.broker == nil, "the broker saved with the session is the default")
    }

    // MARK: verify bounds

    static let verifyBase = [
        "verify", "--jwks", "jwks.json", "--issuer", "https://stagepass.test", "--audience", "api",
    ]

    @Test func verifyDefaults() throws {
        let v = try parsed(Self.verifyBase + ["tok"], as: VerifyCommand.self)
        #expect(v.leeway == 30)
        #expect(v.maxLifetime == 3600)
        #expect(v.audience == ["api"])
        #expect(v.role.isEmpty && v.stage == nil && v.pipeline == nil && v.statusList == nil && v.now == nil)
        #expect(v.token == "tok")
    }

    @Test func verifyRepeatsAudienceAndRole() throws {
        let v = try parsed(
            Self.verifyBase + ["--audience", "api2", "--role", "deployer", "--role", "admin", "--leeway", "0"],
            as: VerifyCommand.self
        )
        #expect(v.audience == ["api", "api2"])
        #expect(v.role == ["deployer", "admin"])
        #expect(v.leeway == 0)
        #expect(v.token == nil, "read from standard input")
    }

    @Test func verifyBoundChecks() throws {
        #expect(try usageError(Self.verifyBase + ["--leeway=-1"]) == "--leeway must be >= 0")
        #expect(try usageError(Self.verifyBase + ["--max-lifetime", "0"]) == "--max-lifetime must be > 0")
        #expect(try usageError(Self.verifyBase + ["--max-lifetime=-5"]) == "--max-lifetime must be > 0")
        #expect(try usageError(Self.verifyBase + ["--leeway", "soon"]).contains("--leeway"))
        #expect(try usageError(Self.verifyBase + ["--leeway", "301"]) == "--leeway must be <= 300 (5 minutes)")
        #expect(try usageError(Self.verifyBase + ["--leeway", "999999999"]) == "--leeway must be <= 300 (5 minutes)")
        #expect(
            try usageError(Self.verifyBase + ["--max-lifetime", "86401"])
                == "--max-lifetime must be <= 86400 (24 hours)"
        )
        #expect(try usageError(Self.verifyBase + ["--status-max-age=-1"]) == "--status-max-age must be > 0")
        #expect(try usageError(Self.verifyBase + ["--status-max-age", "0"]) == "--status-max-age must be > 0")
        #expect(
            try usageError(Self.verifyBase + ["--status-max-age", "86401"])
                == "--status-max-age must be <= 86400 (24 hours)"
        )
    }

    @Test func verifyAcceptsTheBoundsThemselves() throws {
        let v = try parsed(
            Self.verifyBase + ["--leeway", "300", "--max-lifetime", "86400", "--status-max-age", "86400", "t"],
            as: VerifyCommand.self
        )
        #expect(v.leeway == 300 && v.maxLifetime == 86_400 && v.statusMaxAge == 86_400)
    }

    @Test func verifyNeedsJWKSIssuerAndAudience() throws {
        #expect(try usageError(["verify", "--issuer", "i", "--audience", "a"]).contains("--jwks"))
        #expect(try usageError(["verify", "--jwks", "j", "--audience", "a"]).contains("--issuer"))
        #expect(try usageError(["verify", "--jwks", "j", "--issuer", "i"]).contains("--audience"))
    }

    // MARK: other commands

    @Test func requestNeedsItsClientAndRun() throws {
        let message = try usageError([
            "request", "--broker", "http://b", "--client", "c", "--audience", "a",
            "--role", "r", "--stage", "s", "--run-id", "1",
        ])
        #expect(message.contains("--client-secret-env"))
        #expect(
            try usageError([
                "request", "--broker", "http://b", "--client-secret-env", "S", "--audience", "a", "--role", "r",
                "--stage", "s", "--run-id", "1",
            ]).contains("--client")
        )
        // Without a secret the job authenticates with its CI token: nothing else is needed.
        _ = try parsed(
            ["request", "--broker", "http://b", "--audience", "a", "--role", "r", "--stage", "s"],
            as: RequestCommand.self
        )
        let r = try parsed(
            [
                "request", "--broker", "http://b", "--client", "acme/web", "--client-secret-env", "SP_SECRET",
                "--audience", "a", "--role", "r", "--stage", "s", "--run-id", "42", "--timeout", "30",
            ],
            as: RequestCommand.self
        )
        #expect(r.clientSecretEnv == "SP_SECRET")
        #expect(r.runId == "42")
        #expect(r.timeout == 30)
        #expect(r.triggeredBy == nil && r.commit == nil)
    }

    @Test func tokenTakesTheSessionOptions() throws {
        let t = try parsed(
            ["token", "--audience", "api", "--role", "deployer", "--stage", "prod", "--broker", "http://b:1"],
            as: TokenCommand.self
        )
        #expect(t.audience == "api" && t.role == "deployer" && t.stage == "prod")
        #expect(t.session.broker == "http://b:1")
        #expect(t.pipeline == nil)
        #expect(try usageError(["token", "--audience", "api", "--role", "deployer"]).contains("--stage"))
    }

    @Test func dpopOptionsParseAndAreValidated() throws {
        let base = [
            "request", "--broker", "http://b", "--client", "c", "--client-secret-env", "S", "--audience", "a",
            "--role", "r", "--stage", "s", "--run-id", "1",
        ]
        let off = try parsed(base, as: RequestCommand.self)
        #expect(!off.dpop.enabled && off.dpop.keyFile == nil && off.dpop.alg == "ES256")
        let on = try parsed(base + ["--dpop-key-file", "k.pem", "--dpop-alg", "EdDSA"], as: RequestCommand.self)
        #expect(on.dpop.keyFile == "k.pem" && on.dpop.alg == "EdDSA")
        #expect(try parsed(base + ["--dpop"], as: RequestCommand.self).dpop.enabled)
        #expect(try usageError(base + ["--dpop-alg", "RS256"]).contains("--dpop-alg"))
        let t = try parsed(
            ["token", "--audience", "a", "--role", "r", "--stage", "s", "--dpop-key-file", "k"],
            as: TokenCommand.self
        )
        #expect(t.dpop.keyFile == "k")
        let p = try parsed(
            ["dpop-proof", "--method", "POST", "--url", "https://d/x", "--token-file", "t", "--dpop-key-file", "k"],
            as: DPoPProofCommand.self
        )
        #expect(p.method == "POST" && p.url == "https://d/x" && p.tokenFile == "t" && p.keyFile == "k")
        #expect(
            try usageError(["dpop-proof", "--method", "POST", "--url", "d/x", "--token-file", "t"]).contains("--url")
        )
        #expect(
            try usageError(["dpop-proof", "--method", "P O", "--url", "https://d", "--token-file", "t"]).contains(
                "--method"
            )
        )
        let verify = ["verify", "--jwks", "j", "--issuer", "i", "--audience", "a"]
        #expect(try usageError(verify + ["--dpop-proof", "p", "tok"]).contains("--method"))
        #expect(try usageError(verify + ["--method", "GET", "tok"]).contains("--dpop-proof"))
        #expect(try usageError(verify + ["--dpop-replay-file", "r", "tok"]).contains("--dpop-proof"))
        // A one-shot verifier with a proof but no shared replay record would accept a replayed proof.
        #expect(
            try usageError(verify + ["--dpop-proof", "p", "--method", "GET", "--url", "https://d/x", "tok"]).contains(
                "--dpop-replay-file"
            )
        )
        let v = try parsed(
            verify + [
                "--dpop-proof", "p", "--method", "GET", "--url", "https://d/x", "--dpop-replay-file", "r", "tok",
            ],
            as: VerifyCommand.self
        )
        #expect(v.dpopProof == "p" && v.method == "GET" && v.url == "https://d/x" && v.dpopReplayFile == "r")
    }

    @Test func approveAndDenyTakeTheUserCode() throws {
        let a = try parsed(["approve", "BCDF-GHJK", "--code", "123456"], as: ApproveCommand.self)
        #expect(a.userCode == "BCDF-GHJK" && a.code == "123456")
        let d = try parsed(["deny", "BCDF-GHJK", "--reason", "not now"], as: DenyCommand.self)
        #expect(d.userCode == "BCDF-GHJK" && d.reason == "not now")
        #expect(try usageError(["approve"]).contains("<user-code>"))
    }

    @Test func keysOptionsDefaults() throws {
        let l = try parsed(["keys", "list"], as: KeysCommand.List.self)
        #expect(l.options.directory == "Keys")
        #expect(l.options.data == "./.stagepass")
        #expect(l.options.passphraseFile == nil)
        #expect(!l.options.insecureDevKeys)
        #expect(l.options.brokerTimeout == 10)
        let r = try parsed(
            ["keys", "rotate", "--keys", "/k", "--data", "/d", "--alg", "EdDSA", "--force"],
            as: KeysCommand.Rotate.self
        )
        #expect(r.options.directory == "/k" && r.options.data == "/d" && r.alg == "EdDSA" && r.force)
    }

    @Test func adminCommandsTakeTheDataDirectory() throws {
        let u = try parsed(
            ["users", "add", "alice", "--groups", "deployers,admins", "--password-stdin", "--data", "/d"],
            as: Users.Add.self
        )
        #expect(u.name == "alice" && u.groups == "deployers,admins" && u.passwordStdin && u.options.data == "/d")
        let c = try parsed(["clients", "add", "acme/web"], as: Clients.Add.self)
        #expect(c.name == "acme/web" && c.options.data == "./.stagepass")
        let g = try parsed(
            [
                "delegations", "grant", "--client", "c", "--role", "r", "--stage", "s", "--audience", "a",
                "--seconds", "3600",
            ],
            as: DelegationsCommand.Grant.self
        )
        #expect(g.seconds == 3600)
        #expect(
            try usageError([
                "delegations", "grant", "--client", "c", "--role", "r", "--stage", "s",
                "--audience", "a", "--seconds", "an hour",
            ]).contains("--seconds")
        )
    }

    @Test func unknownCommandsAndOptionsAreUsageErrors() throws {
        #expect(try usageError(["deploy"]).contains("deploy"))
        #expect(try usageError(["revoke", "--jti", "j", "--everything"]).contains("--everything"))
        #expect(try usageError(["keys", "list", "extra"]).contains("extra"))
    }

    @Test func theRootWithoutASubcommandShowsHelp() {
        switch parse([]) {
        case .success(let command): #expect(command is Stagepass)
        case .failure(let failure): Issue.record("\(failure.message)")
        }
    }
}
