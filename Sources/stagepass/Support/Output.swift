import ArgumentParser
import Foundation
import StagepassBroker
import StagepassJOSE

/// Prints to standard error.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// `2026-01-27T10:00:00Z`.
func formatTime(_ t: Int64) -> String {
    let f = ISO8601DateFormatter()
    f.timeZone = TimeZone(identifier: "UTC")
    return f.string(from: Date(timeIntervalSince1970: TimeInterval(t)))
}

/// Prints an OAuth error response (RFC 6749 §5.2) or a problem, naming what to do on a step-up demand (RFC 9470).
func reportRefusal(_ status: Int, _ json: JSONValue?) {
    let code = json?["error"]?.stringValue ?? json?["code"]?.stringValue ?? "http_\(status)"
    let detail = json?["error_description"]?.stringValue ?? json?["detail"]?.stringValue ?? ""
    printError("error: \(code): \(detail)")
    if status == 503 {
        // The broker shed the request at once (bounded hashing queue, global sign-in budget): nothing was checked
        // or counted, so retrying after the wait is safe.
        printError(
            "  the broker is busy and refused this at once; nothing was checked, counted or changed: retry later"
        )
    }
    if code == "insufficient_user_authentication" {
        let age = json?["max_age"]?.intValue.map { "within \($0) s" } ?? ""
        let acr = json?["acr_values"]?.stringValue ?? ""
        if needsSecurityKeyOnly(acr) {
            // The CLI cannot prove a security key: only a browser can.
            printError("  a security key proved \(age) is needed; the CLI cannot prove one: use the pages")
        } else {
            printError("  a fresh second factor is needed \(age) (accepted: \(acr)); run: stagepass step-up")
        }
    }
}

/// Whether an RFC 9470 `acr_values` list accepts only a security key (nothing the CLI can prove).
func needsSecurityKeyOnly(_ acrValues: String) -> Bool {
    let accepted = Set(acrValues.split(separator: " ").map(String.init))
    let typed: Set<String> = [ACR.value(for: .totp), ACR.value(for: .backup)]
    return !accepted.isEmpty && accepted.isDisjoint(with: typed)
}

/// Prints a refusal (``reportRefusal(_:_:)``) and gives the exit code of a broker error.
func failProblem(_ status: Int, _ json: JSONValue?) -> ExitCode {
    reportRefusal(status, json)
    return ExitCode(status == 503 ? Int32(busyExitCode) : 2)
}

/// The exit code of a request the broker refused for being busy (HTTP 503): sysexits.h `EX_TEMPFAIL`, so scripts
/// can tell "retry later" from a refusal.
let busyExitCode = 75

/// Prints a broker error as `error: <code>: <detail>` and exits non-zero, instead of a Swift dump.
func runReporting(_ body: () async throws -> Void) async throws {
    do { try await body() } catch let e as BrokerError {
        FileHandle.standardError.write(Data("error: \(e.code): \(e.detail)\n".utf8))
        throw ExitCode(2)
    } catch let e as StoreError {
        FileHandle.standardError.write(Data("error: \(e.code): \(e.detail)\n".utf8))
        throw ExitCode(2)
    }
}
