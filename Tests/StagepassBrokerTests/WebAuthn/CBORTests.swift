import Testing

@testable import StagepassBroker

@Suite struct WebAuthnCBORTests {
    @Test func decodesTheWebAuthnSubset() async throws {
        // RFC 8949 Appendix A examples: 0, 23, 24, 1000000, -1, -1000, h'01020304', "IETF", [1,[2,3]], {1:2,3:4}.
        #expect(try CBORDecoder.decode([0x00]) == .unsigned(0))
        #expect(try CBORDecoder.decode([0x17]) == .unsigned(23))
        #expect(try CBORDecoder.decode([0x18, 0x18]) == .unsigned(24))
        #expect(try CBORDecoder.decode([0x1A, 0x00, 0x0F, 0x42, 0x40]) == .unsigned(1_000_000))
        #expect(try CBORDecoder.decode([0x20]).int == -1)
        #expect(try CBORDecoder.decode([0x39, 0x03, 0xE7]).int == -1000)
        #expect(try CBORDecoder.decode([0x3B] + Array(repeating: 0xFF, count: 8)) == .negative(UInt64.max))
        #expect(try CBORDecoder.decode([0x3B] + Array(repeating: 0xFF, count: 8)).int == nil)
        #expect(try CBORDecoder.decode([0x44, 1, 2, 3, 4]) == .bytes([1, 2, 3, 4]))
        #expect(try CBORDecoder.decode([0x64, 0x49, 0x45, 0x54, 0x46]) == .text("IETF"))
        #expect(
            try CBORDecoder.decode([0x82, 0x01, 0x82, 0x02, 0x03])
                == .array([.unsigned(1), .array([.unsigned(2), .unsigned(3)])])
        )
        let m = try CBORDecoder.decode([0xA2, 0x01, 0x02, 0x03, 0x04])
        #expect(m[label: 1] == .unsigned(2) && m[label: 3] == .unsigned(4))
        #expect(try CBORDecoder.decode([0xF4]) == .bool(false))
        #expect(try CBORDecoder.decode([0xF5]) == .bool(true))
        #expect(try CBORDecoder.decode([0xF6]) == .null)
        // The test encoder and the decoder agree on a COSE-shaped map with negative labels.
        let cose = TestCBOR.map([(.integer(1), .integer(2)), (.integer(3), .integer(-7)), (.integer(-2), .bytes([9]))])
        #expect(try CBORDecoder.decode(TestCBOR.encode(cose)) == cose)
        // decodePrefix stops after one item (credential public keys inside authenticator data).
        let (v, end) = try CBORDecoder.decodePrefix([0xFF, 0x01, 0x02], from: 1)
        #expect(v == .unsigned(1) && end == 2)
    }

    @Test func sixteenLevelsAreAcceptedSeventeenAreNot() async throws {
        let sixteen = [UInt8](repeating: 0x81, count: 16) + [0x00]
        _ = try CBORDecoder.decode(sixteen)
        #expect(throws: CBORError.tooDeep) { try CBORDecoder.decode([UInt8](repeating: 0x81, count: 17) + [0x00]) }
        #expect(throws: CBORError.tooDeep) { try CBORDecoder.decode([UInt8](repeating: 0xA1, count: 17) + [0x00]) }
    }

    /// Malformed inputs, each refused with its own reason (RFC 8949 §3, §4.2.1, §5.3.1, §5.6).
    static let malformed: [(String, [UInt8], CBORError)] = [
        ("empty", [], .truncated),
        ("argument missing", [0x18], .truncated),
        ("half a 16-bit argument", [0x19, 0x01], .truncated),
        ("array item cut short", [0x81, 0x18], .truncated),
        ("map value cut short", [0xA1, 0x01, 0x19, 0x01], .truncated),
        ("array count past the end", [0x82, 0x01], .lengthPastEnd),
        ("byte string past the end", [0x42, 0x01], .lengthPastEnd),
        ("text string past the end", [0x65, 0x61, 0x62], .lengthPastEnd),
        ("2^64-1 array items", [0x9B] + [UInt8](repeating: 0xFF, count: 8), .lengthPastEnd),
        ("2^32-1 byte string", [0x5A, 0xFF, 0xFF, 0xFF, 0xFF, 0x00], .lengthPastEnd),
        ("map count past the end", [0xA3, 0x01, 0x02], .lengthPastEnd),
        ("trailing byte", [0x01, 0x02], .trailingBytes),
        ("indefinite byte string", [0x5F, 0x41, 0x00, 0xFF], .indefiniteLength),
        ("indefinite array", [0x9F, 0x01, 0xFF], .indefiniteLength),
        ("indefinite map", [0xBF, 0x01, 0x02, 0xFF], .indefiniteLength),
        ("lone break", [0xFF], .indefiniteLength),
        ("5 in two bytes", [0x18, 0x05], .nonShortestEncoding),
        ("16 in three bytes", [0x19, 0x00, 0x10], .nonShortestEncoding),
        ("length 1 in two bytes", [0x58, 0x01, 0xAA], .nonShortestEncoding),
        ("reserved additional info 28", [0x1C], .reservedAdditionalInfo),
        ("reserved additional info 30 on bytes", [0x5E], .reservedAdditionalInfo),
        ("tag 0", [0xC0, 0x60], .unsupportedTag),
        ("tag 24 (embedded CBOR)", [0xD8, 0x18, 0x41, 0x00], .unsupportedTag),
        ("half float", [0xF9, 0x3C, 0x00], .unsupportedFloat),
        ("double", [0xFB] + [UInt8](repeating: 0, count: 8), .unsupportedFloat),
        ("undefined", [0xF7], .unsupportedSimpleValue),
        ("simple value 16", [0xF0], .unsupportedSimpleValue),
        ("simple value in a byte", [0xF8, 0x20], .unsupportedSimpleValue),
        ("duplicate integer key", [0xA2, 0x01, 0x01, 0x01, 0x02], .duplicateMapKey),
        ("duplicate text key", [0xA2, 0x61, 0x61, 0x01, 0x61, 0x61, 0x02], .duplicateMapKey),
        ("invalid UTF-8", [0x62, 0xFF, 0xFE], .invalidUTF8),
        ("UTF-16 surrogate in UTF-8", [0x63, 0xED, 0xA0, 0x80], .invalidUTF8),
    ]

    @Test(arguments: malformed)
    func refusesMalformedInput(_ c: (String, [UInt8], CBORError)) {
        do {
            let v = try CBORDecoder.decode(c.1)
            Issue.record("\(c.0): decoded as \(v)")
        } catch {
            #expect(error == c.2, "\(c.0): got \(error)")
            #expect(!error.detail.isEmpty)
        }
    }
}
