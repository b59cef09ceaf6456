public import Logging
import TextFormats

/// Writes one line per log record to stderr: klog-like text by default, or one
/// JSON object per line (`--log-format-json`). The driver and the operator both log
/// through it. Secrets never reach here: callers log requests through the driver's
/// `Sanitizer` and foreign text through its `SecretScrubber`.
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
    let fields = merged.keys.sorted().map { (key: $0, value: "\(merged[$0]!)") }
    let message = "\(event.message)"
    LogLine.write(
      json
        ? LogLine.json(level: "\(event.level)", label: label, message: message, fields: fields)
        : LogLine.klog(severity: Self.severity(event.level), label: label, message: message, fields: fields))
  }

  static func severity(_ level: Logger.Level) -> Character {
    switch level {
    case .trace, .debug, .info, .notice: return "I"
    case .warning: return "W"
    case .error: return "E"
    case .critical: return "F"
    }
  }
}
