/// Go's `time.ParseDuration` syntax ("2m", "90s", "1h30m", "500ms"), which
/// upstream's duration flags use and existing manifests pass. The one parser of
/// durations for the driver, the reference provider and the load harness.
public enum GoDuration {
  public struct ParseError: Error, CustomStringConvertible {
    public var text: String
    public var description: String { "invalid duration \"\(text)\": expected a number and a unit (ns, us, ms, s, m, h), e.g. 2m or 1h30m" }
  }

  /// Longest duration accepted: what an Int64 of nanoseconds holds, as in Go.
  static let maxNanoseconds = Double(Int64.max)

  public static func parse(_ text: String) throws(ParseError) -> Duration {
    if text == "0" { return .zero }
    var rest = Substring(text)
    guard !rest.isEmpty else { throw ParseError(text: text) }
    var total = 0.0
    while !rest.isEmpty {
      let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
      guard !number.isEmpty, let value = Double(number) else { throw ParseError(text: text) }
      rest = rest.dropFirst(number.count)
      let unit = rest.prefix { $0.isLetter || $0 == "µ" }
      rest = rest.dropFirst(unit.count)
      let nanos: Double
      switch unit {
      case "ns": nanos = 1
      case "us", "µs": nanos = 1e3
      case "ms": nanos = 1e6
      case "s": nanos = 1e9
      case "m": nanos = 60e9
      case "h": nanos = 3600e9
      default: throw ParseError(text: text)
      }
      total += value * nanos
      // Go refuses what overflows; converting it to Int64 would trap.
      guard total < maxNanoseconds else { throw ParseError(text: text) }
    }
    return .nanoseconds(Int64(total))
  }

  /// `parse` in seconds, or nil when `text` is not a duration: for callers that count in Doubles.
  public static func seconds(_ text: String) -> Double? {
    guard let duration = try? parse(text) else { return nil }
    let (seconds, attoseconds) = duration.components
    return Double(seconds) + Double(attoseconds) / 1e18
  }

  /// `parse` in milliseconds, or nil when `text` is not a duration.
  public static func milliseconds(_ text: String) -> Double? {
    seconds(text).map { $0 * 1000 }
  }
}
