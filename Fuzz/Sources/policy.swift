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
            check(line >= 1 && line <= yamlLineCount(text) + 1, "a policy error names a line outside the document")
        }
    } catch {
        check(false, "the loader threw something other than PolicyError")
    }
    return 0
}

/// Lines as YAML counts them (YAML 1.2 §5.4: a line break is LF, CR, or CR LF), so a document with old Mac line
/// ends has as many lines as its CRs.
private func yamlLineCount(_ text: String) -> Int {
    var lines = 1
    var previousCR = false
    for b in text.utf8 {
        if b == 0x0D { lines += 1 } else if b == 0x0A && !previousCR { lines += 1 }
        previousCR = b == 0x0D
    }
    return lines
}
