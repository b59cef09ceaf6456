/// Minimal JSON output: objects of strings for the provider request, keys sorted
/// (as Go's encoding/json does, so providers see what upstream sends), and the
/// strings of JSON log lines.
///
/// Works on UTF-8 bytes and copies runs that need no escaping in one go: the
/// attributes carry the pod's service-account tokens (a kilobyte or more per
/// audience) on every publish, so this is on the hot path.
public enum JSONText {
  public static func object(_ values: [String: String]) -> String {
    var out: [UInt8] = []
    var size = 2
    for (key, value) in values { size += key.utf8.count + value.utf8.count + 6 }
    out.reserveCapacity(size)
    out.append(UInt8(ascii: "{"))
    var first = true
    // The pairs sorted, rather than the keys sorted and each looked up again.
    for (key, value) in values.sorted(by: { $0.key < $1.key }) {
      if !first { out.append(UInt8(ascii: ",")) }
      first = false
      appendString(key, to: &out)
      out.append(UInt8(ascii: ":"))
      appendString(value, to: &out)
    }
    out.append(UInt8(ascii: "}"))
    return String(decoding: out, as: UTF8.self)
  }

  /// `s` as a quoted JSON string.
  public static func string(_ s: String, htmlSafe: Bool = true) -> String {
    var out = ""
    appendString(s, to: &out, htmlSafe: htmlSafe)
    return out
  }

  /// Appends `s` as a quoted JSON string.
  public static func appendString(_ s: String, to out: inout String, htmlSafe: Bool = true) {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(s.utf8.count + 2)
    appendString(s, to: &bytes, htmlSafe: htmlSafe)
    out += String(decoding: bytes, as: UTF8.self)
  }

  /// Appends `s` as a quoted JSON string. `htmlSafe` escapes `<`, `>`, `&` and
  /// U+2028/9 as Go's encoding/json does; matching it keeps requests byte-identical.
  public static func appendString(_ s: String, to out: inout [UInt8], htmlSafe: Bool = true) {
    out.append(quote)
    var s = s
    s.withUTF8 { bytes in
      var runStart = 0
      var i = 0
      while i < bytes.count {
        let b = bytes[i]
        // Fast path: printable ASCII other than the specials, and every byte of
        // a multi-byte character except a possible U+2028/9 lead byte.
        if b >= 0x20 && b != quote && b != backslash && b != 0xE2
          && !(htmlSafe && (b == less || b == greater || b == ampersand))
        {
          i += 1
          continue
        }
        if b == 0xE2 {
          // U+2028 is E2 80 A8, U+2029 is E2 80 A9.
          guard htmlSafe, i + 2 < bytes.count, bytes[i + 1] == 0x80, bytes[i + 2] == 0xA8 || bytes[i + 2] == 0xA9 else {
            i += 1
            continue
          }
          out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<i]))
          out.append(contentsOf: bytes[i + 2] == 0xA8 ? line : paragraph)
          i += 3
          runStart = i
          continue
        }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<i]))
        switch b {
        case quote: out.append(contentsOf: [backslash, quote])
        case backslash: out.append(contentsOf: [backslash, backslash])
        case UInt8(ascii: "\n"): out.append(contentsOf: [backslash, UInt8(ascii: "n")])
        case UInt8(ascii: "\r"): out.append(contentsOf: [backslash, UInt8(ascii: "r")])
        case UInt8(ascii: "\t"): out.append(contentsOf: [backslash, UInt8(ascii: "t")])
        default:
          // Control characters and the HTML specials: \u00XX, lower-case hex as Go writes it.
          out.append(contentsOf: [backslash, UInt8(ascii: "u"), zero, zero, hexDigits[Int(b >> 4)], hexDigits[Int(b & 0xF)]])
        }
        i += 1
        runStart = i
      }
      out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<bytes.count]))
    }
    out.append(quote)
  }

  private static let quote = UInt8(ascii: "\"")
  private static let backslash = UInt8(ascii: "\\")
  private static let less = UInt8(ascii: "<")
  private static let greater = UInt8(ascii: ">")
  private static let ampersand = UInt8(ascii: "&")
  private static let zero = UInt8(ascii: "0")
  private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
  private static let line: [UInt8] = Array("\\u2028".utf8)
  private static let paragraph: [UInt8] = Array("\\u2029".utf8)
}
