import Glibc
public import Logging

/// Writes one line per log record to stderr: klog-like text by default, or one
/// JSON object per line (`--log-format-json`). Secrets never reach here: callers
/// log through the `Sanitizer`.
public struct StderrLogHandler: LogHandler {
  public var metadata: Logger.Metadata = [:]
  public var logLevel: Logger.Level
  public var metadataProvider: Logger.MetadataProvider?
  private let label: String
  private let json: Bool

  public init(label: String, json: Bool, level: Logger.Level) {
    self.label = label
    self.json = json
    self.logLevel = level
  }

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  public func log(event: LogEvent) {
    var merged = metadata
    if let extra = event.metadata { merged.merge(extra) { $1 } }
    var line = json ? jsonLine(event, merged) : textLine(event, merged)
    // One write(2) per line, so lines from different threads never interleave.
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
  }

  private func textLine(_ event: LogEvent, _ merged: Logger.Metadata) -> String {
    var line = "\(Self.levelLetter(event.level))\(Self.timestamp(compact: true)) \(label)] \(event.message)"
    for key in merged.keys.sorted() {
      line += " \(key)=\(Self.quoteIfNeeded("\(merged[key]!)"))"
    }
    return line + "\n"
  }

  private func jsonLine(_ event: LogEvent, _ merged: Logger.Metadata) -> String {
    var line = "{\"ts\":\"\(Self.timestamp(compact: false))\",\"level\":\"\(event.level)\",\"logger\":\(Self.jsonString(label)),\"msg\":\(Self.jsonString("\(event.message)"))"
    for key in merged.keys.sorted() {
      line += ",\(Self.jsonString(key)):\(Self.jsonString("\(merged[key]!)"))"
    }
    return line + "}\n"
  }

  static func levelLetter(_ level: Logger.Level) -> String {
    switch level {
    case .trace, .debug, .info, .notice: return "I"
    case .warning: return "W"
    case .error: return "E"
    case .critical: return "F"
    }
  }

  /// `1127 00:20:23.123456` (klog) or RFC 3339 with microseconds (JSON).
  static func timestamp(compact: Bool) -> String {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    var t = tm()
    var seconds = ts.tv_sec
    gmtime_r(&seconds, &t)
    func pad(_ v: Int32, _ width: Int) -> String {
      let s = String(v)
      return String(repeating: "0", count: max(0, width - s.count)) + s
    }
    let micros = pad(Int32(ts.tv_nsec / 1000), 6)
    let time = "\(pad(t.tm_hour, 2)):\(pad(t.tm_min, 2)):\(pad(t.tm_sec, 2)).\(micros)"
    if compact { return "\(pad(t.tm_mon + 1, 2))\(pad(t.tm_mday, 2)) \(time)" }
    return "\(t.tm_year + 1900)-\(pad(t.tm_mon + 1, 2))-\(pad(t.tm_mday, 2))T\(time)Z"
  }

  static func quoteIfNeeded(_ s: String) -> String {
    if !s.isEmpty && !s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }) { return s }
    return jsonString(s)
  }

  public static func jsonString(_ s: String) -> String {
    var out = ""
    JSONText.appendString(s, to: &out, htmlSafe: false)
    return out
  }
}
