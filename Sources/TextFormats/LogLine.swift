import Glibc

/// One log line, as klog writes it (`I1203 06:54:46.840720 label] message key=value`)
/// or as one JSON object. The driver's swift-log handler and the reference provider's
/// own logger both format through here, so their lines read the same.
public enum LogLine {
  /// `severity` is klog's letter: I, W, E or F. Values are quoted when they hold a
  /// space, a quote, `=`, a control character or nothing.
  public static func klog(
    severity: Character, label: String, message: String, fields: [(key: String, value: String)]
  ) -> String {
    var line = "\(severity)\(timestamp(compact: true)) \(label)] \(message)"
    for (key, value) in fields {
      line += " \(key)=\(quoteIfNeeded(value))"
    }
    return line + "\n"
  }

  /// `{"ts":...,"level":...,"logger":...,"msg":...,<fields>}`, fields in the order given.
  public static func json(level: String, label: String, message: String, fields: [(key: String, value: String)]) -> String {
    var line = "{\"ts\":\"\(timestamp(compact: false))\",\"level\":\(string(level)),\"logger\":\(string(label)),\"msg\":\(string(message))"
    for (key, value) in fields {
      line += ",\(string(key)):\(string(value))"
    }
    return line + "}\n"
  }

  /// Writes `line` to stderr in one write(2), so lines from different threads never interleave.
  public static func write(_ line: String) {
    var line = line
    line.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
  }

  /// `1127 00:20:23.123456` (klog) or RFC 3339 with microseconds (JSON), in UTC.
  public static func timestamp(compact: Bool) -> String {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    var t = tm()
    var seconds = ts.tv_sec
    gmtime_r(&seconds, &t)
    func pad(_ v: Int, _ width: Int) -> String {
      let s = String(v)
      return String(repeating: "0", count: max(0, width - s.count)) + s
    }
    let time = "\(pad(Int(t.tm_hour), 2)):\(pad(Int(t.tm_min), 2)):\(pad(Int(t.tm_sec), 2)).\(pad(ts.tv_nsec / 1000, 6))"
    if compact { return "\(pad(Int(t.tm_mon) + 1, 2))\(pad(Int(t.tm_mday), 2)) \(time)" }
    return "\(Int(t.tm_year) + 1900)-\(pad(Int(t.tm_mon) + 1, 2))-\(pad(Int(t.tm_mday), 2))T\(time)Z"
  }

  public static func quoteIfNeeded(_ s: String) -> String {
    if !s.isEmpty && !s.unicodeScalars.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || isControlOrLineBreak($0) }) {
      return s
    }
    return string(s)
  }

  private static func isControlOrLineBreak(_ c: Unicode.Scalar) -> Bool {
    c.value < 0x20 || c.value == 0x7F || c.value == 0x85 || c.value == 0x2028 || c.value == 0x2029
  }

  private static func string(_ s: String) -> String { JSONText.string(s, htmlSafe: false) }
}
