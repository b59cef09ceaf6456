/// Parses the one JSON shape the Mount attributes have: an object whose values
/// are all strings. Strict JSON (RFC 8259) for that shape: whitespace, escapes,
/// `\u` surrogate pairs; anything else, including a value that is not a string,
/// is nil. A duplicated key keeps its last value, as Go's decoder does.
///
/// Hand-written because every Mount decodes the attributes, which carry the
/// pod's service-account tokens (a kilobyte or more); Foundation's generic
/// JSONDecoder spent about 15 % of the provider's CPU on it.
enum FlatJSON {
  static func stringObject(_ text: String) -> [String: String]? {
    var text = text
    return text.withUTF8 { bytes -> [String: String]? in
      var p = Parser(bytes: bytes)
      return p.object()
    }
  }

  private struct Parser {
    let bytes: UnsafeBufferPointer<UInt8>
    var i = 0

    init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    mutating func object() -> [String: String]? {
      skipSpace()
      guard take(UInt8(ascii: "{")) else { return nil }
      var result: [String: String] = [:]
      skipSpace()
      if take(UInt8(ascii: "}")) { return atEnd() ? result : nil }
      while true {
        skipSpace()
        guard let key = string() else { return nil }
        skipSpace()
        guard take(UInt8(ascii: ":")) else { return nil }
        skipSpace()
        guard let value = string() else { return nil }
        result[key] = value
        skipSpace()
        if take(UInt8(ascii: ",")) { continue }
        guard take(UInt8(ascii: "}")) else { return nil }
        return atEnd() ? result : nil
      }
    }

    mutating func atEnd() -> Bool {
      skipSpace()
      return i == bytes.count
    }

    mutating func skipSpace() {
      while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
    }

    mutating func take(_ b: UInt8) -> Bool {
      guard i < bytes.count, bytes[i] == b else { return false }
      i += 1
      return true
    }

    /// A quoted string; runs without escapes are copied in one piece.
    mutating func string() -> String? {
      guard take(UInt8(ascii: "\"")) else { return nil }
      var out: [UInt8] = []
      var runStart = i
      while i < bytes.count {
        let b = bytes[i]
        if b == UInt8(ascii: "\"") {
          if out.isEmpty { defer { i += 1 }; return String(decoding: UnsafeBufferPointer(rebasing: bytes[runStart..<i]), as: UTF8.self) }
          out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<i]))
          i += 1
          return String(decoding: out, as: UTF8.self)
        }
        if b < 0x20 { return nil }  // raw control characters are not allowed in JSON strings
        if b != UInt8(ascii: "\\") {
          i += 1
          continue
        }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<i]))
        i += 1
        guard i < bytes.count else { return nil }
        let e = bytes[i]
        i += 1
        switch e {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
          guard var scalar = hex4() else { return nil }
          if (0xD800..<0xDC00).contains(scalar) {
            // A high surrogate must be followed by an escaped low one.
            guard take(UInt8(ascii: "\\")), take(UInt8(ascii: "u")), let low = hex4(), (0xDC00..<0xE000).contains(low) else {
              return nil
            }
            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
          } else if (0xDC00..<0xE000).contains(scalar) {
            return nil
          }
          guard let u = Unicode.Scalar(scalar) else { return nil }
          out.append(contentsOf: UTF8.encode(u)!)
        default:
          return nil
        }
        runStart = i
      }
      return nil  // unterminated
    }

    mutating func hex4() -> UInt32? {
      guard i + 4 <= bytes.count else { return nil }
      var v: UInt32 = 0
      for _ in 0..<4 {
        let b = bytes[i]
        let d: UInt8
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): d = b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): d = b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): d = b - UInt8(ascii: "A") + 10
        default: return nil
        }
        v = v << 4 | UInt32(d)
        i += 1
      }
      return v
    }
  }
}
