import CLinux
import Glibc

/// A minimal stderr logger (this executable does not link swift-log): klog-like
/// text, one write(2) per line so lines from different threads never interleave.
/// Callers pass only counts, codes and names: never attribute values, tokens or contents.
struct Log: Sendable {
  enum Level: Int, Comparable, Sendable, CaseIterable {
    case trace, debug, info, warning, error

    init?(name: String) {
      switch name {
      case "trace": self = .trace
      case "debug": self = .debug
      case "info", "notice": self = .info
      case "warning": self = .warning
      case "error", "critical": self = .error
      default: return nil
      }
    }

    static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }

    var letter: String {
      switch self {
      case .trace, .debug, .info: return "I"
      case .warning: return "W"
      case .error: return "E"
      }
    }
  }

  let label: String
  let level: Level

  func enabled(_ l: Level) -> Bool { l >= level }

  func trace(_ message: @autoclosure () -> String, _ fields: @autoclosure () -> KeyValuePairs<String, String> = [:]) {
    if enabled(.trace) { emit(.trace, message(), fields()) }
  }
  func debug(_ message: @autoclosure () -> String, _ fields: @autoclosure () -> KeyValuePairs<String, String> = [:]) {
    if enabled(.debug) { emit(.debug, message(), fields()) }
  }
  func info(_ message: @autoclosure () -> String, _ fields: @autoclosure () -> KeyValuePairs<String, String> = [:]) {
    if enabled(.info) { emit(.info, message(), fields()) }
  }
  func warning(_ message: @autoclosure () -> String, _ fields: @autoclosure () -> KeyValuePairs<String, String> = [:]) {
    if enabled(.warning) { emit(.warning, message(), fields()) }
  }
  func error(_ message: @autoclosure () -> String, _ fields: @autoclosure () -> KeyValuePairs<String, String> = [:]) {
    if enabled(.error) { emit(.error, message(), fields()) }
  }

  private func emit(_ l: Level, _ message: String, _ fields: KeyValuePairs<String, String>) {
    var line = "\(l.letter)\(Self.timestamp()) \(label)] \(message)"
    for (k, v) in fields {
      line += " \(k)=\(Self.quoteIfNeeded(v))"
    }
    line += "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
  }

  /// `0102 15:04:05.000000`, UTC, as klog prints it.
  static func timestamp() -> String {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    var t = tm()
    var seconds = ts.tv_sec
    gmtime_r(&seconds, &t)
    func pad(_ v: Int, _ width: Int) -> String {
      let s = String(v)
      return String(repeating: "0", count: max(0, width - s.count)) + s
    }
    return "\(pad(Int(t.tm_mon) + 1, 2))\(pad(Int(t.tm_mday), 2)) "
      + "\(pad(Int(t.tm_hour), 2)):\(pad(Int(t.tm_min), 2)):\(pad(Int(t.tm_sec), 2)).\(pad(ts.tv_nsec / 1000, 6))"
  }

  static func quoteIfNeeded(_ s: String) -> String {
    if !s.isEmpty && !s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }) { return s }
    var out = "\""
    for ch in s.unicodeScalars {
      switch ch {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      default: out.unicodeScalars.append(ch)
      }
    }
    return out + "\""
  }
}
