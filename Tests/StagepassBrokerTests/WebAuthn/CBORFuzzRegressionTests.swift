import Testing

@testable import StagepassBroker

/// Inputs the CBOR fuzz target (Fuzz/Sources/cbor.swift) found. A byte or text string, array or map whose length
/// was longer than the input by at most the size of its own head passed the length check (the check saw the input
/// as it was *before* the head was read) and trapped on an out-of-range slice: one crafted attestation object
/// stopped the broker. Each must now be refused with `length_past_end`.
@Suite struct CBORFuzzRegressionTests {
    /// Hand-made minimal cases: each declares a length one byte longer than what follows its head.
    static let minimal: [String] = [
        // A byte string of 24 (one-byte argument 0x18) with 23 bytes left.
        "5818" + String(repeating: "00", count: 23),
        // A text string of 24 with 23 bytes left.
        "7818" + String(repeating: "61", count: 23),
        // The same inside a map value.
        "a1015818" + String(repeating: "00", count: 23),
    ]

    /// The three inputs libFuzzer saved (COSE_Key-shaped maps; each trapped before the fix).
    static let found: [String] = [
        "a5010203262001215820d0e0cb3a53f861f14dc26153f8eb3be0cb3a53f86101215820d0e0cb3a53f861f14dc26153f8eb3b6b28e13f4a29c33526ef26b9200682b8",
        "a40101032720062158200001020304050e0f101112131415161718191a14151617183b1a1b1c1d401f",
        "a5010253f96102032620012158202ae0cbf33a262001215820d0e0cb3a53f96102032f26b920162158200001023203040506534fb58182b8",
    ]

    @Test(arguments: minimal)
    func lengthOneByteTooLongIsRefused(_ hexInput: String) {
        let bytes = hexBytes(hexInput)
        #expect(throws: CBORError.lengthPastEnd(at: 0)) { try CBORDecoder.decode(bytes) }
        #expect(throws: (any Error).self) { try COSEKey(bytes: bytes) }
    }

    @Test(arguments: found)
    func fuzzerInputsAreRefusedNotTrapped(_ hexInput: String) {
        let bytes = hexBytes(hexInput)
        #expect(throws: CBORError.self) { try CBORDecoder.decode(bytes) }
        #expect(throws: (any Error).self) { try COSEKey(bytes: bytes) }
    }

    @Test func lengthThatExactlyFitsStillDecodes() async throws {
        #expect(
            try CBORDecoder.decode(hexBytes("5818" + String(repeating: "00", count: 24)))
                == .bytes([UInt8](repeating: 0, count: 24))
        )
        #expect(
            try CBORDecoder.decode(hexBytes("7818" + String(repeating: "61", count: 24)))
                == .text(String(repeating: "a", count: 24))
        )
    }

    private func hexBytes(_ s: String) -> [UInt8] {
        var out = [UInt8]()
        var it = s.makeIterator()
        while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16) ?? 0) }
        return out
    }
}
