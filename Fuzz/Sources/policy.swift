// libFuzzer target: the policy loader (YAML via Yams, then the policy reader of Specs/policy.md). Any input either
// loads or throws a PolicyError that names the source and a line inside the document; a loaded policy loads again
// to the same value (parsing is deterministic).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPolicy(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeRawBufferPointer(start: data, count: size), as: UTF8.self)
    do {
        let policy = try AccessPolicy.load(yaml: text, source: "fuzz.yaml")
        check((try? AccessPolicy.load(yaml: text, source: "fuzz.yaml")) == policy, "loading twice gave two policies")
    } catch let error as PolicyError {
        check(error.file == "fuzz.yaml", "a policy error names another source")
        if let line = error.line {
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).count
            check(line >= 1 && line <= lines + 1, "a policy error names a line outside the document")
        }
    } catch {
        check(false, "the loader threw something other than PolicyError")
    }
    return 0
}
