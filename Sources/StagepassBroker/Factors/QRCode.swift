internal import CQRencode  // C types stay out of the module's interface

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A QR Code (ISO/IEC 18004:2015) for `otpauth://` URIs, encoded by libqrencode: byte mode, error correction level M
/// (falling back to L), versions 1–10.
///
/// ```swift
/// let qr = try QRCode.encode(Array(uri.utf8))
/// print(qr.terminal())          // Unicode half blocks
/// let page = qr.svg()           // for HTML pages
/// ```
public struct QRCode: Sendable, Hashable {
    public enum ErrorCorrection: Sendable, Hashable {
        case low, medium
    }

    public let version: Int
    public let errorCorrection: ErrorCorrection
    /// `size × size` modules, row-major, true = dark.
    public let modules: [[Bool]]
    public var size: Int { modules.count }

    /// Errors with stable codes.
    public struct EncodeError: Error, Sendable, Hashable {
        public let code: String
        /// The data does not fit version 10 at level L.
        public static let tooLong = EncodeError(code: "qr_too_long")
        /// libqrencode refused the input or ran out of memory.
        public static let failed = EncodeError(code: "qr_encode_failed")
    }

    /// The largest version ``encode(_:minimumErrorCorrection:)`` produces: 57 × 57 modules, which phone cameras
    /// read off a screen or a terminal without trouble.
    public static let maximumVersion = 10

    /// Encodes `data` in byte mode at the smallest version that fits, preferring level M.
    /// - Throws: ``EncodeError/tooLong`` when the data does not fit version 10-L; ``EncodeError/failed`` when
    ///   libqrencode fails otherwise.
    public static func encode(_ data: [UInt8], minimumErrorCorrection: ErrorCorrection = .medium) throws -> QRCode {
        let levels: [ErrorCorrection] = minimumErrorCorrection == .medium ? [.medium, .low] : [.low]
        for level in levels {
            let symbol = try QRencodeSymbol(encoding: data, level: level)
            if symbol.version <= maximumVersion {
                return QRCode(version: symbol.version, errorCorrection: level, modules: symbol.modules())
            }
        }
        throw EncodeError.tooLong
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
            let xx = x - border
            let yy = y - border
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
                let x = px / scale - border
                let y = py / scale - border
                let d = x >= 0 && y >= 0 && x < size && y < size && modules[y][x]
                line += d ? "1 " : "0 "
            }
            out += line + "\n"
        }
        return out
    }
}

/// Owns one libqrencode symbol (`QRcode *`) and frees it with `QRcode_free` when released: the only code in the
/// broker that touches libqrencode's pointers.
///
/// Not `Sendable`: it lives inside ``QRCode/encode(_:minimumErrorCorrection:)``, which copies the modules out into a
/// value before the symbol is released.
final class QRencodeSymbol {
    /// Non-nil for the object's whole life; freed exactly once, in `deinit`.
    private let handle: UnsafeMutablePointer<QRcode>
    /// Called after `QRcode_free` (tests observe the release with it).
    private let onFree: (() -> Void)?

    /// libqrencode's hard limit (version 40-L in byte mode); longer input is refused before the call.
    static let maximumInput = 2953

    /// Encodes `data` in byte mode (`QRcode_encodeData`) at the smallest version that fits `level`.
    /// - Throws: ``QRCode/EncodeError/tooLong`` beyond version 40 (`ERANGE`), ``QRCode/EncodeError/failed`` for
    ///   any other failure (`EINVAL`, `ENOMEM`).
    init(encoding data: [UInt8], level: QRCode.ErrorCorrection, onFree: (() -> Void)? = nil) throws {
        guard data.count <= Self.maximumInput else { throw QRCode.EncodeError.tooLong }
        let ecLevel = level == .medium ? QR_ECLEVEL_M : QR_ECLEVEL_L
        // version 0: the smallest version that holds the data. libqrencode copies the input before returning.
        let symbol = data.withUnsafeBufferPointer { bytes in
            QRcode_encodeData(Int32(bytes.count), bytes.baseAddress, 0, ecLevel)
        }
        guard let symbol else {
            throw errno == ERANGE ? QRCode.EncodeError.tooLong : QRCode.EncodeError.failed
        }
        handle = symbol
        self.onFree = onFree
    }

    deinit {
        QRcode_free(handle)
        onFree?()
    }

    /// The symbol's version (1–40).
    var version: Int { Int(handle.pointee.version) }

    /// Modules per side (`17 + 4 × version`).
    var width: Int { Int(handle.pointee.width) }

    /// The modules, row-major, true = dark: bit 0 of each of libqrencode's `width × width` bytes (the other bits
    /// say which pattern a module belongs to).
    func modules() -> [[Bool]] {
        let width = width
        guard width > 0, let data = handle.pointee.data else { return [] }
        let bytes = UnsafeBufferPointer(start: data, count: width * width)
        return (0..<width).map { y in (0..<width).map { x in bytes[y * width + x] & 1 == 1 } }
    }
}
