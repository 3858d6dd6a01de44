import ArgumentParser
import Foundation
import StagepassBroker
import StagepassJOSE

/// The CLI's saved session: `{"broker":…,"token":…}` in a 0600 file.
struct SessionFile {
    static func defaultPath() -> String {
        let env = ProcessInfo.processInfo.environment
        let base =
            env["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? ((env["HOME"] ?? NSHomeDirectory()) as NSString).appendingPathComponent(".config")
        return ((base as NSString).appendingPathComponent("stagepass") as NSString).appendingPathComponent(
            "session.json"
        )
    }

    /// The absolute path of a session file: a relative path (a bare file name included) is resolved against the
    /// current directory.
    static func resolve(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        return (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(path)
    }

    /// Checks, before signing in, that the session file can be written: its directory exists (a missing one is
    /// created mode 0700) and this user can create files in it, and the path is not a directory.
    static func checkWritable(path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) {
            do { try SecretFile.ensurePrivateDirectory(dir) } catch {
                throw ValidationError("cannot create the session file's directory \(dir): \(error)")
            }
        } else if !isDir.boolValue {
            throw ValidationError("cannot save the session in \(path): \(dir) is not a directory")
        }
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            throw ValidationError("cannot save the session in \(path): it is a directory")
        }
        guard access(dir, W_OK | X_OK) == 0 else {
            throw ValidationError("cannot save the session in \(path): \(dir) is not writable")
        }
    }

    /// Writes the file with mode 0600 from its first byte (``SecretFile``), replacing any earlier one.
    static func write(path: String, broker: String, token: String) throws {
        let body = JSONValue.object(["broker": .string(broker), "token": .string(token)]).serialized() + "\n"
        do { try SecretFile.write(Array(body.utf8), to: path) } catch {
            throw ValidationError("cannot write \(path): \(error)")
        }
    }

    /// Reads a saved session; a file that group or others can read is refused (``SecretFile/read(_:)``).
    static func read(path: String) throws -> (broker: String, token: String) {
        let bytes: [UInt8]?
        do { bytes = try SecretFile.read(path) } catch { throw ValidationError("refusing the session file: \(error)") }
        guard let bytes, let v = try? JSONValue.parse(bytes), let b = v["broker"]?.stringValue,
            let t = v["token"]?.stringValue
        else { throw ValidationError("no session in \(path); run stagepass login") }
        return (b, t)
    }
}
