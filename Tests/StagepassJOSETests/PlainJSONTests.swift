import Testing

@testable import StagepassJOSE

/// The plain-subset scanner in front of jansson (PlainJSON.swift) must never accept what jansson refuses, nor read
/// a value differently: whenever it accepts a document, jansson must accept it too and give the same tree. It may
/// decline anything (jansson then decides).
@Suite("Plain JSON scanner")
struct PlainJSONTests {
    static let maxDepth = 16

    /// The scanner's tree, or nil when it declines.
    static func plain(_ bytes: [UInt8]) -> JSONValue? {
        bytes.withUnsafeBytes { b in PlainJSON.withDocument(b, maxDepth: maxDepth) { $0?.value } }
    }

    /// jansson's tree (through StrictJSON, with the verifier's rules), or nil when it refuses.
    static func jansson(_ bytes: [UInt8]) -> JSONValue? {
        guard let doc = try? withBytes(bytes, { b throws(JOSEError) in try StrictJSON(b, maxDepth: maxDepth) }) else {
            return nil
        }
        return withExtendedLifetime(doc) { doc.root.value }
    }

    /// The property every document must satisfy.
    static func agree(_ bytes: [UInt8]) -> Bool {
        guard let p = plain(bytes) else { return true }
        return jansson(bytes) == p
    }

    static let claims = #"""
        {"iss":"https://stagepass.example","sub":"alice","aud":["deploy-api","other"],"exp":1900000300,"iat":1900000000,\#
        "nbf":1900000000,"jti":"01JD3Y6Z8Q4W9T2N5K7M3V1XCB","client_id":"acme/web-deploy","role":"deployer",\#
        "stage":"production","amr":["pwd","hwk"],"auth_time":1899999940,"sid":"s_4b7e2c","act":{"sub":"x","n":null},\#
        "status":{"status_list":{"idx":4711,"uri":"https://stagepass.example/statuslists/1"}},"ok":true,"no":false}
        """#

    /// Documents the scanner reads itself (the fast path must stay in use for ordinary tokens).
    static let inSubset: [String] = [
        claims, "{}", #"{"alg":"ES256","kid":"k1","typ":"at+jwt"}"#, #"{"":1}"#, "{ \"a\" : [ 1 , 2 ] ,\t\"b\":{}}\r\n",
        #"{"n":999999999999999999,"m":-999999999999999999,"z":-0,"o":0}"#, #"{"a":[[],[{}],[null,true,false]]}"#,
        String(repeating: #"{"a":"#, count: 16) + "1" + String(repeating: "}", count: 16),
        #"{"a":["# + (0..<300).map(String.init).joined(separator: ",") + "]}",  // more than the stack tape
    ]

    /// Valid JSON the scanner leaves to jansson.
    static let validOutside: [String] = [
        #"{"a":"x\/y"}"#, #"{"a":"\u00e9"}"#, #"{"a":"é"}"#, #"{"a":1.5}"#, #"{"a":1e3}"#, #"{"a":-0.0}"#,
        #"{"n":1234567890123456789}"#, #"{"a\"b":1}"#,
        "{" + (0..<65).map { #""k\#($0)":\#($0)"# }.joined(separator: ",") + "}",
    ]

    /// Documents jansson refuses (the scanner must decline them all).
    static let invalid: [String] = [
        #"{"a":1,"a":2}"#, #"{"x":{"b":1,"b":1}}"#, #"{"a":1,}"#, #"{"a":01}"#, #"{"a":-}"#, #"{"a":-a}"#,
        #"{"a":tru}"#,
        #"{"a":truex}"#, #"{"a":true1}"#, #"{"a":nul}"#, #"{"a" 1}"#, #"{"a":1} x"#, #"{"a":1}}"#, #"{"a":1"#,
        #"{"a":"1}"#,
        #"{"a":"x\u0000"}"#, "{\"a\":\"\t\"}", "{\"a\":\"\u{1}\"}", "{'a':1}", "[1]", #"{"a":NaN}"#, #"{"a":Infinity}"#,
        #"{"a":1e999}"#, #"{"a":+1}"#, #"{"a":.5}"#, #"{"a":1.}"#, #"{"a":1,"b"}"#, #"{"a":[1,]}"#, #"{"a":[1 2]}"#,
        #"{"a":9223372036854775808}"#, "{\"a\":1}\u{0}", "\u{FEFF}{}", #"{,}"#, #"{"a"::1}"#, "", " {}",
        String(repeating: #"{"a":"#, count: 17) + "1" + String(repeating: "}", count: 17),
        "{" + (0..<65).map { #""k":\#($0)"# }.joined(separator: ",") + "}",
    ]

    @Test(arguments: inSubset)
    func readsTheSubsetLikeJansson(_ doc: String) throws {
        let bytes = Array(doc.utf8)
        let p = try #require(PlainJSONTests.plain(bytes), "the scanner must read this itself")
        #expect(PlainJSONTests.jansson(bytes) == p)
    }

    @Test(arguments: validOutside)
    func leavesTheRestToJansson(_ doc: String) {
        let bytes = Array(doc.utf8)
        #expect(PlainJSONTests.plain(bytes) == nil)
        #expect(PlainJSONTests.jansson(bytes) != nil)
    }

    @Test(arguments: invalid)
    func neverAcceptsWhatJanssonRefuses(_ doc: String) {
        let bytes = Array(doc.utf8)
        #expect(PlainJSONTests.jansson(bytes) == nil, "jansson must refuse this")
        #expect(PlainJSONTests.plain(bytes) == nil)
    }

    @Test func accessorsMatchJansson() throws {
        let bytes = Array(PlainJSONTests.claims.utf8)
        try bytes.withUnsafeBytes { b in
            let doc = try StrictJSON(b, maxDepth: 16)
            try withExtendedLifetime(doc) {
                let j = doc.root
                try PlainJSON.withDocument(b, maxDepth: 16) { root in
                    let p = try #require(root)
                    for name: StaticString in [
                        "iss", "sub", "aud", "exp", "nbf", "jti", "act", "status", "ok", "missing",
                    ] {
                        #expect(p.member(name)?.string == j.member(name)?.string)
                        #expect(p.member(name)?.integer == j.member(name)?.integer)
                        #expect(p.member(name)?.isArray == j.member(name)?.isArray)
                        #expect(p.member(name)?.count == j.member(name)?.count)
                        #expect(p.member(name)?.stringEquals("alice") == j.member(name)?.stringEquals("alice"))
                    }
                    #expect(
                        p.member("aud")?[1]?.string == "other" && p.member("aud")?[2] == nil
                            && p.member("aud")?[-1] == nil
                    )
                    #expect(p.member("status")?.member("status_list")?.member("idx")?.integer == 4711)
                    #expect(p.count == j.count && p[0] == nil)
                }
            }
        }
    }

    /// Mutation fuzzing from the documents above (deterministic seed): the property holds for every mutant.
    @Test func mutantsAgree() {
        var rng = SplitMix64(seed: 0x5747_4745_5041_5353)
        let seeds = (PlainJSONTests.inSubset + PlainJSONTests.validOutside + PlainJSONTests.invalid).map {
            Array($0.utf8)
        }
        let alphabet = Array(#"{}[],:"\ 0123456789-+.eEtrufalsn"#.utf8) + [0, 0x09, 0x0A, 0x0D, 0x7F, 0x80, 0xC3, 0xFF]
        var accepted = 0
        for _ in 0..<20_000 {
            var doc = seeds[Int(rng.next() % UInt64(seeds.count))]
            for _ in 0...(rng.next() % 3) {
                let at = doc.isEmpty ? 0 : Int(rng.next() % UInt64(doc.count))
                let byte = alphabet[Int(rng.next() % UInt64(alphabet.count))]
                switch rng.next() % 3 {
                case 0 where !doc.isEmpty: doc[at] = byte
                case 1: doc.insert(byte, at: at)
                default: if !doc.isEmpty { doc.remove(at: at) }
                }
            }
            if PlainJSONTests.plain(doc) != nil { accepted += 1 }
            #expect(PlainJSONTests.agree(doc), "\(String(decoding: doc, as: UTF8.self))")
        }
        // The fuzzing must exercise acceptance, not only declines.
        #expect(accepted > 500)
    }
}

/// A small deterministic generator (Steele, Lea, Flood 2014) so fuzz runs are reproducible.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
