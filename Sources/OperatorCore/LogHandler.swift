public import Logging
import TextFormats

/// One line per record on stderr: klog-like text, or JSON with `--log-format-json`.
public struct OperatorLogHandler: LogHandler {
  public var metadata: Logger.Metadata = [:]
  public var logLevel: Logger.Level
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
    let severity: Character =
      switch event.level {
      case .trace, .debug, .info, .notice: "I"
      case .warning: "W"
      case .error: "E"
      case .critical: "F"
      }
    LogLine.write(
      json
        ? LogLine.json(level: "\(event.level)", label: label, message: "\(event.message)", fields: fields)
        : LogLine.klog(severity: severity, label: label, message: "\(event.message)", fields: fields))
  }
}
