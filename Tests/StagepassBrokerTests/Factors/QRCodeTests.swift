import Foundation
import Testing

@testable import StagepassBroker

@Suite struct QRCodeTests {
    @Test func otpauthURIFitsAndHasFunctionPatterns() async throws {
        let uri =
            "otpauth://totp/Stagepass:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Stagepass"
            + "&algorithm=SHA1&digits=6&period=30"
        let qr = try QRCode.encode(Array(uri.utf8))
        #expect(qr.errorCorrection == .medium)
        #expect(qr.version == 7)  // 117 bytes: over 6-M (106), within 7-M (122)
        #expect(qr.size == 45)
        // Finder pattern corners and the dark module.
        #expect(qr.modules[0][0] && qr.modules[6][6] && !qr.modules[7][7])
        #expect(qr.modules[0][qr.size - 1] && qr.modules[qr.size - 1][0])
        #expect(qr.modules[qr.size - 8][8])
        #expect(qr.svg().hasPrefix("<svg"))
        #expect(qr.terminal().split(separator: "\n").count == (qr.size + 4 + 1) / 2)
    }

    @Test func versionsAboveSixCarryVersionInformation() async throws {
        let qr = try QRCode.encode(Array(repeating: UInt8(ascii: "a"), count: 150))
        #expect(qr.version >= 7)
        #expect(throws: QRCode.EncodeError.tooLong) { try QRCode.encode(Array(repeating: 0, count: 400)) }
    }

    /// Level M while it fits version 10 (213 bytes in byte mode), then L (up to 271 bytes at 10-L), then refused.
    @Test func fallsBackToLevelLThenRefuses() async throws {
        let m = try QRCode.encode(Array(repeating: UInt8(ascii: "a"), count: 213))
        #expect(m.errorCorrection == .medium && m.version == 10)
        let l = try QRCode.encode(Array(repeating: UInt8(ascii: "a"), count: 214))
        #expect(l.errorCorrection == .low && l.version == 9)  // 9-L holds 230 bytes
        #expect(try QRCode.encode(Array(repeating: 1, count: 10), minimumErrorCorrection: .low).errorCorrection == .low)
        #expect(throws: QRCode.EncodeError.tooLong) { try QRCode.encode(Array(repeating: 0, count: 272)) }
        // Beyond what libqrencode can hold at all (version 40-L): refused before the call.
        #expect(throws: QRCode.EncodeError.tooLong) { try QRCode.encode(Array(repeating: 0, count: 10_000)) }
    }

    /// The wrapper owns the libqrencode symbol: the modules are a `width × width` copy, and the symbol is freed
    /// (`QRcode_free`) exactly once when the wrapper goes away.
    @Test func symbolIsCopiedOutAndFreedOnce() async throws {
        final class Counter { var frees = 0 }
        let counter = Counter()
        var modules: [[Bool]] = []
        do {
            let symbol = try QRencodeSymbol(encoding: Array("stagepass".utf8), level: .medium) { counter.frees += 1 }
            #expect(symbol.version == 1 && symbol.width == 21)
            modules = symbol.modules()
            #expect(counter.frees == 0)
        }
        #expect(counter.frees == 1)
        #expect(modules.count == 21 && modules.allSatisfy { $0.count == 21 })
        // The copy outlives the symbol and still holds the finder patterns.
        #expect(modules[0][0] && modules[6][6] && !modules[7][7] && modules[0][20] && modules[20][0])
    }

    /// Every byte value survives (byte mode), including NUL, which libqrencode's string API would stop at.
    @Test func binaryDataWithNulEncodes() async throws {
        let qr = try QRCode.encode([0, 1, 2, 0, 255])
        #expect(qr.version == 1 && qr.size == 21)
    }

    /// Decodes the generated code with zbarimg (Debian `zbar-tools`, installed by `make test`): an independent
    /// QR decoder must read back exactly what we encoded.
    @Test func decodesWithZbar() async throws {
        let zbar = "/usr/bin/zbarimg"
        #expect(
            FileManager.default.isExecutableFile(atPath: zbar),
            "zbar-tools is missing: run `make test`, which installs it"
        )
        for payload in [
            "otpauth://totp/Stagepass:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Stagepass"
                + "&algorithm=SHA1&digits=6&period=30", "x", String(repeating: "stagepass-", count: 17),
        ] {
            let qr = try QRCode.encode(Array(payload.utf8))
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("qr-\(UUID().uuidString).pbm")
            try qr.pbm().write(to: path, atomically: true, encoding: .ascii)
            defer { try? FileManager.default.removeItem(at: path) }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: zbar)
            p.arguments = ["--quiet", "--raw", path.path]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            p.waitUntilExit()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(text.trimmingCharacters(in: .newlines) == payload, "version \(qr.version)")
        }
    }
}
