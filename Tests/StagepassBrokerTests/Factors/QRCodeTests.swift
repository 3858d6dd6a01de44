import Foundation
import Testing

@testable import StagepassBroker

@Suite struct QRCodeTests {
    /// The §7.5.2 generator for 7 EC codewords is x^7 + 87x^6 + 229x^5 + 146x^4 + 149x^3 + 238x^2 + 102x + 21
    /// (α exponents 87, 229, 146, 149, 238, 102, 21 in Annex A), i.e. coefficients 127,122,154,164,11,68,117.
    @Test func reedSolomonGenerator() {
        #expect(QRCode.rsDivisor(7) == [127, 122, 154, 164, 11, 68, 117])
    }

    /// ISO/IEC 18004 Annex I example ("01234567", 1-M): the 10 EC codewords of the data codewords.
    @Test func reedSolomonAnnexIExample() {
        let data: [UInt8] = [16, 32, 12, 86, 97, 128, 236, 17, 236, 17, 236, 17, 236, 17, 236, 17]
        #expect(QRCode.rsRemainder(data, QRCode.rsDivisor(10)) == [165, 36, 212, 193, 237, 54, 199, 135, 44, 85])
    }

    @Test func otpauthURIFitsAndHasFunctionPatterns() throws {
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

    @Test func versionsAboveSixCarryVersionInformation() throws {
        let qr = try QRCode.encode(Array(repeating: UInt8(ascii: "a"), count: 150))
        #expect(qr.version >= 7)
        #expect(throws: QRCode.EncodeError.tooLong) { try QRCode.encode(Array(repeating: 0, count: 400)) }
    }

    /// Decodes the generated code with zbarimg (Debian `zbar-tools`, installed by `make test`): an independent
    /// QR decoder must read back exactly what we encoded.
    @Test func decodesWithZbar() throws {
        let zbar = "/usr/bin/zbarimg"
        #expect(FileManager.default.isExecutableFile(atPath: zbar), "zbar-tools is missing: run `make test`, which installs it")
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
