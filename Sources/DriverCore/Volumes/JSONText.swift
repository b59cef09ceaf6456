/// Minimal JSON output for the provider request: objects of strings, keys
/// sorted (as Go's encoding/json does, so providers see what upstream sends).
enum JSONText {
  static func object(_ values: [String: String]) -> String {
    var out = "{"
    var first = true
    for key in values.keys.sorted() {
      if !first { out += "," }
      first = false
      appendString(key, to: &out)
      out += ":"
      appendString(values[key]!, to: &out)
    }
    out += "}"
    return out
  }

  /// `htmlSafe` escapes `<`, `>`, `&` (and U+2028/9) as Go's encoding/json does.
  static func appendString(_ s: String, to out: inout String, htmlSafe: Bool = true) {
    out += "\""
    for scalar in s.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      // Go escapes these for HTML safety; matching it keeps byte-identical requests.
      case "<" where htmlSafe: out += "\\u003c"
      case ">" where htmlSafe: out += "\\u003e"
      case "&" where htmlSafe: out += "\\u0026"
      case "\u{2028}" where htmlSafe: out += "\\u2028"
      case "\u{2029}" where htmlSafe: out += "\\u2029"
      default:
        if scalar.value < 0x20 {
          let hex = String(scalar.value, radix: 16)
          out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        } else {
          out.unicodeScalars.append(scalar)
        }
      }
    }
    out += "\""
  }
}
