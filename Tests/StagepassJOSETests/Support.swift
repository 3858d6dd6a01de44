import Foundation

/// `<package root>/Specs/vectors/<path>` parsed as JSON.
func vectorFile(_ path: String, file: String = #filePath) throws -> [String: Any] {
    let root = URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let data = try Data(contentsOf: root.appendingPathComponent("Specs/vectors").appendingPathComponent(path))
    guard let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw CocoaError(.fileReadCorruptFile)
    }
    return obj
}

func hex(_ s: String) -> [UInt8] {
    var out = [UInt8]()
    var it = s.makeIterator()
    while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16) ?? 0) }
    return out
}
