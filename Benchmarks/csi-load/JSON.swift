import TextFormats

/// A JSON value with ordered object keys, so results files read top-down the way
/// the summary does. Non-finite numbers become `null`.
enum JSON: Sendable {
  case null
  case bool(Bool)
  case int(Int)
  case number(Double)
  case string(String)
  case array([JSON])
  case object([(String, JSON)])

  static func num(_ v: Double?) -> JSON { v.map { .number($0) } ?? .null }
  static func num(_ v: UInt64) -> JSON { .int(Int(clamping: v)) }
  static func ints(_ v: [Int]) -> JSON { .array(v.map { .int($0) }) }
  static func nums(_ v: [Double?]) -> JSON { .array(v.map { num($0) }) }
  static func dict(_ v: [String: Int]) -> JSON { .object(v.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) }) }

  func serialized(indent: Int = 0) -> String {
    var out = ""
    write(to: &out, indent: indent, depth: 0)
    return out
  }

  /// Arrays of scalars stay on one line: time series remain readable.
  private func write(to out: inout String, indent: Int, depth: Int) {
    switch self {
    case .null: out += "null"
    case .bool(let b): out += b ? "true" : "false"
    case .int(let i): out += String(i)
    case .number(let d): out += Self.format(d)
    case .string(let s): Self.quote(s, into: &out)
    case .array(let items):
      let scalar = items.allSatisfy(\.isScalar)
      out += "["
      for (i, item) in items.enumerated() {
        if i > 0 { out += scalar ? ", " : "," }
        if !scalar { newline(&out, indent, depth + 1) }
        item.write(to: &out, indent: indent, depth: depth + 1)
      }
      if !scalar && !items.isEmpty { newline(&out, indent, depth) }
      out += "]"
    case .object(let members):
      out += "{"
      for (i, (key, value)) in members.enumerated() {
        if i > 0 { out += "," }
        newline(&out, indent, depth + 1)
        Self.quote(key, into: &out)
        out += indent > 0 ? ": " : ":"
        value.write(to: &out, indent: indent, depth: depth + 1)
      }
      if !members.isEmpty { newline(&out, indent, depth) }
      out += "}"
    }
  }

  private var isScalar: Bool {
    switch self {
    case .array(let a): return a.allSatisfy { if case .array = $0 { return false } else if case .object = $0 { return false } else { return true } }
    case .object: return false
    default: return true
    }
  }

  private func newline(_ out: inout String, _ indent: Int, _ depth: Int) {
    guard indent > 0 else { return }
    out += "\n" + String(repeating: " ", count: indent * depth)
  }

  static func format(_ d: Double) -> String {
    guard d.isFinite else { return "null" }
    if d == d.rounded(), abs(d) < 1e15 { return String(Int(d)) }
    // Three decimals at most: microsecond values, percentages and MiB need no more.
    let r = (d * 1000).rounded() / 1000
    return r == r.rounded() && abs(r) < 1e15 ? String(Int(r)) : String(r)
  }

  static func quote(_ s: String, into out: inout String) {
    JSONText.appendString(s, to: &out, htmlSafe: false)
  }
}
