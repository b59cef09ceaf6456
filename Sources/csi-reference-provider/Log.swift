import TextFormats

/// A minimal stderr logger (this executable does not link swift-log), in the driver's
/// klog-like format (`LogLine`).
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

    var letter: Character {
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
    LogLine.write(LogLine.klog(severity: l.letter, label: label, message: message, fields: Array(fields)))
  }
}
