/// A small QR Code encoder (ISO/IEC 18004:2015) for `otpauth://` URIs: byte mode, error correction level M
/// (falling back to L), versions 1–10, all eight masks scored with the §7.8.3 penalty rules.
///
/// ```swift
/// let qr = try QRCode.encode(Array(uri.utf8))
/// print(qr.terminal())          // Unicode half blocks
/// let page = qr.svg()           // for HTML pages
/// ```
public struct QRCode: Sendable, Hashable {
    public enum ErrorCorrection: Sendable, Hashable {
        case low, medium
        /// Format-information bits (§7.9.1 Table 12): L = 01, M = 00.
        var formatBits: Int { self == .low ? 1 : 0 }
    }

    public let version: Int
    public let errorCorrection: ErrorCorrection
    public let mask: Int
    /// `size × size` modules, row-major, true = dark.
    public let modules: [[Bool]]
    public var size: Int { modules.count }

    /// Errors with stable codes.
    public struct EncodeError: Error, Sendable, Hashable {
        public let code: String
        public static let tooLong = EncodeError(code: "qr_too_long")
    }

    /// Per version 1–10: total codewords, then (ec per block, [(blocks, data codewords per block)]) for L and for M
    /// (§7.5.1 Table 9).
    private struct Layout {
        let total: Int
        let ecPerBlock: Int
        let groups: [(count: Int, data: Int)]
        var dataCodewords: Int { groups.reduce(0) { $0 + $1.count * $1.data } }
    }

    private static func layout(version v: Int, _ ecl: ErrorCorrection) -> Layout? {
        let l: [Int: Layout] = [
            1: Layout(total: 26, ecPerBlock: 7, groups: [(1, 19)]),
            2: Layout(total: 44, ecPerBlock: 10, groups: [(1, 34)]),
            3: Layout(total: 70, ecPerBlock: 15, groups: [(1, 55)]),
            4: Layout(total: 100, ecPerBlock: 20, groups: [(1, 80)]),
            5: Layout(total: 134, ecPerBlock: 26, groups: [(1, 108)]),
            6: Layout(total: 172, ecPerBlock: 18, groups: [(2, 68)]),
            7: Layout(total: 196, ecPerBlock: 20, groups: [(2, 78)]),
            8: Layout(total: 242, ecPerBlock: 24, groups: [(2, 97)]),
            9: Layout(total: 292, ecPerBlock: 30, groups: [(2, 116)]),
            10: Layout(total: 346, ecPerBlock: 18, groups: [(2, 68), (2, 69)]),
        ]
        let m: [Int: Layout] = [
            1: Layout(total: 26, ecPerBlock: 10, groups: [(1, 16)]),
            2: Layout(total: 44, ecPerBlock: 16, groups: [(1, 28)]),
            3: Layout(total: 70, ecPerBlock: 26, groups: [(1, 44)]),
            4: Layout(total: 100, ecPerBlock: 18, groups: [(2, 32)]),
            5: Layout(total: 134, ecPerBlock: 24, groups: [(2, 43)]),
            6: Layout(total: 172, ecPerBlock: 16, groups: [(4, 27)]),
            7: Layout(total: 196, ecPerBlock: 18, groups: [(4, 31)]),
            8: Layout(total: 242, ecPerBlock: 22, groups: [(2, 38), (2, 39)]),
            9: Layout(total: 292, ecPerBlock: 22, groups: [(3, 36), (2, 37)]),
            10: Layout(total: 346, ecPerBlock: 26, groups: [(4, 43), (1, 44)]),
        ]
        return ecl == .low ? l[v] : m[v]
    }

    /// Alignment pattern centre coordinates (Annex E).
    private static func alignmentPositions(_ v: Int) -> [Int] {
        switch v {
        case 1: return []
        case 2: return [6, 18]
        case 3: return [6, 22]
        case 4: return [6, 26]
        case 5: return [6, 30]
        case 6: return [6, 34]
        case 7: return [6, 22, 38]
        case 8: return [6, 24, 42]
        case 9: return [6, 26, 46]
        default: return [6, 28, 50]
        }
    }

    /// Encodes `data` in byte mode at the smallest version that fits, preferring level M.
    /// - Parameters:
    ///   - forceMask: use this mask (0–7) instead of choosing by penalty (tests).
    /// - Throws: ``EncodeError/tooLong`` when the data does not fit version 10-L.
    public static func encode(
        _ data: [UInt8], minimumErrorCorrection: ErrorCorrection = .medium,
        forceMask: Int? = nil
    ) throws -> QRCode {
        let levels: [ErrorCorrection] = minimumErrorCorrection == .medium ? [.medium, .low] : [.low]
        for ecl in levels {
            for v in 1...10 {
                guard let lay = layout(version: v, ecl) else { continue }
                let countBits = v <= 9 ? 8 : 16
                let needed = 4 + countBits + 8 * data.count
                if needed <= lay.dataCodewords * 8 {
                    return build(
                        data: data, version: v, ecl: ecl, layout: lay, countBits: countBits, forceMask: forceMask)
                }
            }
        }
        throw EncodeError.tooLong
    }

    private static func build(
        data: [UInt8], version v: Int, ecl: ErrorCorrection, layout lay: Layout, countBits: Int,
        forceMask: Int?
    ) -> QRCode {
        // §7.4: mode indicator 0100 (byte), character count, data, terminator, pad to bytes, pad codewords.
        var bits: [Bool] = []
        func append(_ value: Int, _ n: Int) {
            for i in stride(from: n - 1, through: 0, by: -1) { bits.append((value >> i) & 1 == 1) }
        }
        append(0b0100, 4)
        append(data.count, countBits)
        for b in data { append(Int(b), 8) }
        let capacity = lay.dataCodewords * 8
        append(0, min(4, capacity - bits.count))
        while bits.count % 8 != 0 { bits.append(false) }
        var codewords: [UInt8] = stride(from: 0, to: bits.count, by: 8).map { i in
            (0..<8).reduce(UInt8(0)) { ($0 << 1) | (bits[i + $1] ? 1 : 0) }
        }
        var pad: UInt8 = 0xEC
        while codewords.count < lay.dataCodewords {
            codewords.append(pad)
            pad = pad == 0xEC ? 0x11 : 0xEC
        }

        // §7.5.2: split into blocks, Reed–Solomon each, interleave (§7.6).
        var blocks: [[UInt8]] = []
        var offset = 0
        for g in lay.groups {
            for _ in 0..<g.count {
                blocks.append(Array(codewords[offset..<(offset + g.data)]))
                offset += g.data
            }
        }
        let divisor = rsDivisor(lay.ecPerBlock)
        let ecBlocks = blocks.map { rsRemainder($0, divisor) }
        var final: [UInt8] = []
        let maxData = blocks.map(\.count).max() ?? 0
        for i in 0..<maxData { for b in blocks where i < b.count { final.append(b[i]) } }
        for i in 0..<lay.ecPerBlock { for e in ecBlocks { final.append(e[i]) } }

        var m = Matrix(version: v)
        m.drawFunctionPatterns(ecl: ecl)
        m.placeCodewords(final)
        var best = 0
        if let forceMask, (0...7).contains(forceMask) {
            best = forceMask
        } else {
            var bestPenalty = Int.max
            for mask in 0..<8 {
                var trial = m
                trial.applyMask(mask)
                trial.drawFormatBits(ecl: ecl, mask: mask)
                let p = trial.penalty()
                if p < bestPenalty {
                    bestPenalty = p
                    best = mask
                }
            }
        }
        m.applyMask(best)
        m.drawFormatBits(ecl: ecl, mask: best)
        return QRCode(version: v, errorCorrection: ecl, mask: best, modules: m.modules)
    }

    // MARK: Reed–Solomon over GF(2^8) with the §7.5.2 polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11D)

    static func gfMultiply(_ x: UInt8, _ y: UInt8) -> UInt8 {
        var z = 0
        for i in stride(from: 7, through: 0, by: -1) {
            z = (z << 1) ^ ((z >> 7) * 0x11D)
            z ^= ((Int(y) >> i) & 1) * Int(x)
        }
        return UInt8(truncatingIfNeeded: z)
    }

    /// Generator polynomial coefficients (highest degree first, leading 1 omitted) with roots α^0 … α^(degree−1).
    static func rsDivisor(_ degree: Int) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: degree)
        result[degree - 1] = 1
        var root: UInt8 = 1
        for _ in 0..<degree {
            for j in 0..<degree {
                result[j] = gfMultiply(result[j], root)
                if j + 1 < degree { result[j] ^= result[j + 1] }
            }
            root = gfMultiply(root, 0x02)
        }
        return result
    }

    static func rsRemainder(_ data: [UInt8], _ divisor: [UInt8]) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: divisor.count)
        for b in data {
            let factor = b ^ result[0]
            result.removeFirst()
            result.append(0)
            for i in 0..<result.count { result[i] ^= gfMultiply(divisor[i], factor) }
        }
        return result
    }

    // MARK: the module matrix

    private struct Matrix {
        let version: Int
        let size: Int
        var modules: [[Bool]]
        var isFunction: [[Bool]]

        init(version: Int) {
            self.version = version
            size = version * 4 + 17
            modules = Array(repeating: Array(repeating: false, count: size), count: size)
            isFunction = modules
        }

        mutating func set(_ x: Int, _ y: Int, _ dark: Bool) {
            modules[y][x] = dark
            isFunction[y][x] = true
        }

        mutating func drawFunctionPatterns(ecl: ErrorCorrection) {
            for i in 0..<size {  // timing patterns (§7.3.4)
                set(6, i, i % 2 == 0)
                set(i, 6, i % 2 == 0)
            }
            drawFinder(3, 3)  // finder patterns + separators (§7.3.2, §7.3.3)
            drawFinder(size - 4, 3)
            drawFinder(3, size - 4)
            let pos = QRCode.alignmentPositions(version)  // alignment patterns (§7.3.5)
            let n = pos.count
            for i in 0..<n {
                for j in 0..<n where !((i == 0 && j == 0) || (i == 0 && j == n - 1) || (i == n - 1 && j == 0)) {
                    for dy in -2...2 {
                        for dx in -2...2 { set(pos[i] + dx, pos[j] + dy, max(abs(dx), abs(dy)) != 1) }
                    }
                }
            }
            drawFormatBits(ecl: ecl, mask: 0)  // reserve; redrawn after masking
            if version >= 7 {  // version information (§7.10, BCH(18,6), generator 0x1F25)
                var rem = version
                for _ in 0..<12 { rem = (rem << 1) ^ ((rem >> 11) * 0x1F25) }
                let bits = version << 12 | rem
                for i in 0..<18 {
                    let bit = (bits >> i) & 1 == 1
                    let a = size - 11 + i % 3
                    let b = i / 3
                    set(a, b, bit)
                    set(b, a, bit)
                }
            }
        }

        mutating func drawFinder(_ x: Int, _ y: Int) {
            for dy in -4...4 {
                for dx in -4...4 {
                    let xx = x + dx, yy = y + dy
                    guard xx >= 0, xx < size, yy >= 0, yy < size else { continue }
                    let dist = max(abs(dx), abs(dy))
                    set(xx, yy, dist != 2 && dist != 4)
                }
            }
        }

        /// Format information (§7.9): 2 EC bits + 3 mask bits, BCH(15,5) with generator 0x537, XOR 0x5412.
        mutating func drawFormatBits(ecl: ErrorCorrection, mask: Int) {
            let data = ecl.formatBits << 3 | mask
            var rem = data
            for _ in 0..<10 { rem = (rem << 1) ^ ((rem >> 9) * 0x537) }
            let bits = (data << 10 | rem) ^ 0x5412
            func bit(_ i: Int) -> Bool { (bits >> i) & 1 == 1 }
            for i in 0...5 { set(8, i, bit(i)) }
            set(8, 7, bit(6))
            set(8, 8, bit(7))
            set(7, 8, bit(8))
            for i in 9..<15 { set(14 - i, 8, bit(i)) }
            for i in 0..<8 { set(size - 1 - i, 8, bit(i)) }
            for i in 8..<15 { set(8, size - 15 + i, bit(i)) }
            set(8, size - 8, true)  // the dark module
        }

        /// Places codewords in the two-column zigzag from the bottom-right (§7.7.3); unused modules stay light
        /// (which is what the remainder bits are).
        mutating func placeCodewords(_ data: [UInt8]) {
            var i = 0
            var right = size - 1
            while right >= 1 {
                if right == 6 { right = 5 }
                for vert in 0..<size {
                    for j in 0..<2 {
                        let x = right - j
                        let upward = ((right + 1) & 2) == 0
                        let y = upward ? size - 1 - vert : vert
                        if !isFunction[y][x] && i < data.count * 8 {
                            modules[y][x] = (data[i >> 3] >> (7 - (i & 7))) & 1 == 1
                            i += 1
                        }
                    }
                }
                right -= 2
            }
        }

        /// Data mask patterns (§7.8.2 Table 10), x = column, y = row.
        mutating func applyMask(_ mask: Int) {
            for y in 0..<size {
                for x in 0..<size where !isFunction[y][x] {
                    let invert: Bool
                    switch mask {
                    case 0: invert = (x + y) % 2 == 0
                    case 1: invert = y % 2 == 0
                    case 2: invert = x % 3 == 0
                    case 3: invert = (x + y) % 3 == 0
                    case 4: invert = (x / 3 + y / 2) % 2 == 0
                    case 5: invert = x * y % 2 + x * y % 3 == 0
                    case 6: invert = (x * y % 2 + x * y % 3) % 2 == 0
                    default: invert = ((x + y) % 2 + x * y % 3) % 2 == 0
                    }
                    if invert { modules[y][x].toggle() }
                }
            }
        }

        /// The §7.8.3 penalty score (N1 = 3, N2 = 3, N3 = 40, N4 = 10).
        func penalty() -> Int {
            var score = 0
            let finderA: [Bool] = [true, false, true, true, true, false, true, false, false, false, false]
            let finderB: [Bool] = finderA.reversed()
            func lineScore(_ line: [Bool]) -> Int {
                var s = 0
                var run = 1
                for i in 1..<line.count {
                    if line[i] == line[i - 1] {
                        run += 1
                    } else {
                        if run >= 5 { s += 3 + run - 5 }
                        run = 1
                    }
                }
                if run >= 5 { s += 3 + run - 5 }
                if line.count >= 11 {
                    for i in 0...(line.count - 11) {
                        let window = Array(line[i..<(i + 11)])
                        if window == finderA || window == finderB { s += 40 }
                    }
                }
                return s
            }
            for y in 0..<size { score += lineScore(modules[y]) }
            for x in 0..<size { score += lineScore(modules.map { $0[x] }) }
            for y in 0..<(size - 1) {
                for x in 0..<(size - 1) {
                    let c = modules[y][x]
                    if c == modules[y][x + 1] && c == modules[y + 1][x] && c == modules[y + 1][x + 1] { score += 3 }
                }
            }
            let dark = modules.reduce(0) { $0 + $1.filter { $0 }.count }
            let total = size * size
            let k = (abs(dark * 20 - total * 10) + total - 1) / total - 1
            score += max(0, k) * 10
            return score
        }
    }

    // MARK: output

    /// An SVG image (one path of unit squares), with a light quiet zone of `border` modules (§7.3.7: 4).
    public func svg(moduleSize: Int = 4, border: Int = 4) -> String {
        let dim = size + 2 * border
        var path = ""
        for y in 0..<size {
            for x in 0..<size where modules[y][x] { path += "M\(x + border),\(y + border)h1v1h-1z" }
        }
        let px = dim * moduleSize
        return """
            <svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="\(px)" height="\(px)" \
            viewBox="0 0 \(dim) \(dim)" shape-rendering="crispEdges">\
            <rect width="100%" height="100%" fill="#ffffff"/><path d="\(path)" fill="#000000"/></svg>
            """
    }

    /// Terminal rendering with Unicode half blocks (two module rows per text line), dark modules drawn as spaces on
    /// a light background so it scans on dark terminals too.
    public func terminal(border: Int = 2) -> String {
        func dark(_ x: Int, _ y: Int) -> Bool {
            let xx = x - border, yy = y - border
            return xx >= 0 && yy >= 0 && xx < size && yy < size && modules[yy][xx]
        }
        let dim = size + 2 * border
        var out = ""
        var y = 0
        while y < dim {
            for x in 0..<dim {
                let top = !dark(x, y)
                let bottom = y + 1 < dim ? !dark(x, y + 1) : false
                switch (top, bottom) {
                case (true, true): out += "\u{2588}"
                case (true, false): out += "\u{2580}"
                case (false, true): out += "\u{2584}"
                case (false, false): out += " "
                }
            }
            out += "\n"
            y += 2
        }
        return out
    }

    /// A plain PBM (netpbm P1) image, scaled, for checking with image decoders.
    public func pbm(scale: Int = 4, border: Int = 4) -> String {
        let dim = (size + 2 * border) * scale
        var out = "P1\n\(dim) \(dim)\n"
        for py in 0..<dim {
            var line = ""
            for px in 0..<dim {
                let x = px / scale - border, y = py / scale - border
                let d = x >= 0 && y >= 0 && x < size && y < size && modules[y][x]
                line += d ? "1 " : "0 "
            }
            out += line + "\n"
        }
        return out
    }
}
