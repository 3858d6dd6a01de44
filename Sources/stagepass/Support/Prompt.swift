import ArgumentParser
import Foundation

/// Reads one line from standard input without its newline (passwords piped in with `--password-stdin`).
func readStdinLine() throws -> String {
    guard let line = readLine(strippingNewline: true), !line.isEmpty else {
        throw ValidationError("expected a password on standard input")
    }
    return line
}

/// Prompts without echo (getpass(3)).
func promptSecret(_ prompt: String) throws -> String {
    guard let p = getpass(prompt) else { throw ValidationError("no terminal to prompt on; use --password-stdin") }
    let s = String(cString: p)
    guard !s.isEmpty else { throw ValidationError("empty password") }
    return s
}

func promptLine(_ prompt: String) throws -> String {
    FileHandle.standardError.write(Data(prompt.utf8))
    guard let line = readLine(strippingNewline: true), !line.isEmpty else {
        throw ValidationError("a second-factor code is needed (--code)")
    }
    return line
}
