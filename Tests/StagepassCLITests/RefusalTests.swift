import ArgumentParser
import StagepassJOSE
import Testing

@testable import stagepass

/// How the CLI reports a refusal: a busy broker (503) exits with `EX_TEMPFAIL` so that scripts can retry later.
@Suite struct RefusalTests {
    @Test func aBusyBrokerExitsWithTempfail() {
        let busy: JSONValue = .object([
            "type": .string("urn:stagepass:problem:overloaded"), "code": .string("overloaded"),
            "detail": .string("the broker is busy; retry in 2 s"), "status": .int(503),
        ])
        #expect(failProblem(503, busy) == ExitCode(75))
        let oauth: JSONValue = .object([
            "error": .string("temporarily_unavailable"),
            "error_description": .string("the broker is busy; retry in 2 s"),
        ])
        #expect(failProblem(503, oauth) == ExitCode(75))
    }

    @Test func otherRefusalsKeepExitCodeTwo() {
        let wrong: JSONValue = .object(["code": .string("invalid_credentials"), "detail": .string("wrong")])
        #expect(failProblem(401, wrong) == ExitCode(2))
        #expect(failProblem(429, nil) == ExitCode(2))
    }
}
