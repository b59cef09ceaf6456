import UVRuntime

/// The values of one series' labels, in the order of its family's label names
/// (at most four). A value type with no heap storage of its own, so naming a
/// series on the hot path allocates nothing.
public struct LabelValues: Hashable, Sendable {
  var v0: String
  var v1: String
  var v2: String
  var v3: String

  public init(_ v0: String = "", _ v1: String = "", _ v2: String = "", _ v3: String = "") {
    self.v0 = v0
    self.v1 = v1
    self.v2 = v2
    self.v3 = v3
  }

  subscript(i: Int) -> String {
    switch i {
    case 0: v0
    case 1: v1
    case 2: v2
    default: v3
    }
  }

  /// Every value replaced by `other`: where series beyond a family's cap go.
  static func overflow(count: Int) -> LabelValues {
    LabelValues(count > 0 ? "other" : "", count > 1 ? "other" : "", count > 2 ? "other" : "", count > 3 ? "other" : "")
  }
}

/// Metrics by name, rendered in the Prometheus text exposition format 0.0.4.
/// Families are registered once, at startup; updating a series takes one
/// uncontended pthread mutex and no allocation once the series exists.
public final class MetricsRegistry: Sendable {
  private let families = Locked<[any RenderableFamily]>([])
  private let collectors = Locked<[@Sendable () -> Void]>([])

  public init() {}

  public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

  public func counter(_ name: String, help: String, labels: [String] = [], maxSeries: Int = 1000) -> CounterFamily {
    register(CounterFamily(name: name, help: help, labels: labels, maxSeries: maxSeries))
  }

  public func gauge(_ name: String, help: String, labels: [String] = [], maxSeries: Int = 1000) -> GaugeFamily {
    register(GaugeFamily(name: name, help: help, labels: labels, maxSeries: maxSeries))
  }

  /// `buckets`: upper bounds, ascending; `+Inf` is implicit.
  public func histogram(
    _ name: String, help: String, labels: [String] = [], buckets: [Double], maxSeries: Int = 1000
  ) -> HistogramFamily {
    register(HistogramFamily(name: name, help: help, labels: labels, buckets: buckets, maxSeries: maxSeries))
  }

  /// Runs before every render: for values computed at scrape time (gauges
  /// read from other state).
  public func beforeScrape(_ collect: @escaping @Sendable () -> Void) {
    collectors.withLock { $0.append(collect) }
  }

  private func register<F: RenderableFamily>(_ family: F) -> F {
    families.withLock { all in
      precondition(!all.contains { $0.name == family.name }, "metric \(family.name) registered twice")
      all.append(family)
    }
    return family
  }

  /// The whole registry in the text format.
  public func render() -> String {
    for collect in collectors.withLock({ $0 }) { collect() }
    var out = ""
    out.reserveCapacity(8192)
    for family in families.withLock({ $0 }) { family.render(into: &out) }
    return out
  }
}

protocol RenderableFamily: AnyObject, Sendable {
  var name: String { get }
  func render(into out: inout String)
}

/// What every family shares: the name, help, label names and the series index.
public class MetricFamily: @unchecked Sendable {
  public let name: String
  public let help: String
  public let labelNames: [String]
  let maxSeries: Int
  let type: String

  init(name: String, help: String, labels: [String], maxSeries: Int, type: String) {
    precondition(TextFormat.isValidName(name), "invalid metric name \(name)")
    precondition(labels.count <= 4, "at most four labels")
    precondition(labels.allSatisfy { TextFormat.isValidName($0) && $0 != "le" && !$0.hasPrefix("__") }, "invalid label names \(labels)")
    self.name = name
    self.help = help
    self.labelNames = labels
    self.maxSeries = max(1, maxSeries)
    self.type = type
  }

  func header(into out: inout String) {
    out += "# HELP \(name) \(TextFormat.escapeHelp(help))\n# TYPE \(name) \(type)\n"
  }

  /// `{a="x",b="y"` without the closing brace, or "" when there are no labels and no `extra`.
  func labelText(_ values: LabelValues, extra: String? = nil) -> String {
    if labelNames.isEmpty && extra == nil { return "" }
    var s = "{"
    for (i, label) in labelNames.enumerated() {
      if i > 0 { s += "," }
      s += label
      s += "=\""
      s += TextFormat.escapeLabelValue(values[i])
      s += "\""
    }
    if let extra {
      if !labelNames.isEmpty { s += "," }
      s += extra
    }
    return s + "}"
  }
}

/// Series storage shared by the family kinds: an index from label values to a
/// slot, capped at `maxSeries` (beyond it, values go to an all-`other` series).
struct SeriesTable<Value> {
  var index: [LabelValues: Int] = [:]
  var labels: [LabelValues] = []
  var values: [Value] = []

  mutating func slot(_ key: LabelValues, maxSeries: Int, labelCount: Int, make: () -> Value) -> Int {
    if let i = index[key] { return i }
    let key = labels.count < maxSeries ? key : LabelValues.overflow(count: labelCount)
    if let i = index[key] { return i }
    index[key] = labels.count
    labels.append(key)
    values.append(make())
    return labels.count - 1
  }
}

/// A monotonically increasing count per label set.
public final class CounterFamily: MetricFamily, RenderableFamily, @unchecked Sendable {
  private let table = Locked(SeriesTable<Double>())

  init(name: String, help: String, labels: [String], maxSeries: Int) {
    super.init(name: name, help: help, labels: labels, maxSeries: maxSeries, type: "counter")
  }

  public func inc(_ labels: LabelValues = LabelValues(), by amount: Double = 1) {
    precondition(amount >= 0, "counters only go up")
    table.withLock { t in
      let i = t.slot(labels, maxSeries: maxSeries, labelCount: labelNames.count) { 0 }
      t.values[i] += amount
    }
  }

  /// A pre-resolved series: incrementing skips the label lookup. The series
  /// exists (at zero) from now on, so it shows in scrapes before its first event.
  public func series(_ labels: LabelValues = LabelValues()) -> Counter {
    let i = table.withLock { $0.slot(labels, maxSeries: maxSeries, labelCount: labelNames.count) { 0 } }
    return Counter(family: self, slot: i)
  }

  func add(slot: Int, _ amount: Double) {
    table.withLock { $0.values[slot] += amount }
  }

  public func value(_ labels: LabelValues = LabelValues()) -> Double? {
    table.withLock { t in t.index[labels].map { t.values[$0] } }
  }

  func render(into out: inout String) {
    header(into: &out)
    table.withLock { t in
      for (i, labels) in t.labels.enumerated() {
        out += "\(name)\(labelText(labels)) \(TextFormat.value(t.values[i]))\n"
      }
    }
  }
}

public struct Counter: Sendable {
  let family: CounterFamily
  let slot: Int

  public func inc(by amount: Double = 1) {
    precondition(amount >= 0, "counters only go up")
    family.add(slot: slot, amount)
  }
}

/// A value that goes up and down per label set.
public final class GaugeFamily: MetricFamily, RenderableFamily, @unchecked Sendable {
  private let table = Locked(SeriesTable<Double>())

  init(name: String, help: String, labels: [String], maxSeries: Int) {
    super.init(name: name, help: help, labels: labels, maxSeries: maxSeries, type: "gauge")
  }

  public func set(_ labels: LabelValues, _ value: Double) {
    table.withLock { t in
      let i = t.slot(labels, maxSeries: maxSeries, labelCount: labelNames.count) { 0 }
      t.values[i] = value
    }
  }

  /// The value of the family's only series (no labels).
  public func set(_ value: Double) { set(LabelValues(), value) }

  public func add(_ labels: LabelValues = LabelValues(), _ delta: Double) {
    table.withLock { t in
      let i = t.slot(labels, maxSeries: maxSeries, labelCount: labelNames.count) { 0 }
      t.values[i] += delta
    }
  }

  public func value(_ labels: LabelValues = LabelValues()) -> Double? {
    table.withLock { t in t.index[labels].map { t.values[$0] } }
  }

  func render(into out: inout String) {
    header(into: &out)
    table.withLock { t in
      for (i, labels) in t.labels.enumerated() {
        out += "\(name)\(labelText(labels)) \(TextFormat.value(t.values[i]))\n"
      }
    }
  }
}

/// Observations counted into fixed buckets per label set; rendered cumulative,
/// with `+Inf`, `_sum` and `_count`, as Prometheus expects.
public final class HistogramFamily: MetricFamily, RenderableFamily, @unchecked Sendable {
  public let buckets: [Double]
  private let bucketText: [String]

  struct Series {
    var counts: [UInt64]  // per bucket, not cumulative; the last is +Inf
    var sum: Double = 0
    var count: UInt64 = 0
  }

  private let table = Locked(SeriesTable<Series>())

  init(name: String, help: String, labels: [String], buckets: [Double], maxSeries: Int) {
    precondition(!buckets.isEmpty && zip(buckets, buckets.dropFirst()).allSatisfy { $0 < $1 }, "buckets must be ascending")
    precondition(buckets.allSatisfy { $0.isFinite }, "+Inf is implicit")
    self.buckets = buckets
    bucketText = buckets.map { TextFormat.value($0) } + ["+Inf"]
    super.init(name: name, help: help, labels: labels, maxSeries: maxSeries, type: "histogram")
  }

  /// The index of the first bucket whose bound is ≥ `value` (`buckets.count` for +Inf).
  func bucketIndex(_ value: Double) -> Int {
    var lo = 0
    var hi = buckets.count
    while lo < hi {
      let mid = (lo + hi) / 2
      if value <= buckets[mid] { hi = mid } else { lo = mid + 1 }
    }
    return lo
  }

  public func observe(_ labels: LabelValues, _ value: Double) {
    let b = bucketIndex(value)
    table.withLock { t in
      let i = t.slot(labels, maxSeries: maxSeries, labelCount: labelNames.count) { Series(counts: Array(repeating: 0, count: buckets.count + 1)) }
      t.values[i].counts[b] += 1
      t.values[i].sum += value
      t.values[i].count += 1
    }
  }

  /// An observation for the family's only series (no labels).
  public func observe(_ value: Double) { observe(LabelValues(), value) }

  public func series(_ labels: LabelValues = LabelValues()) -> Histogram {
    let i = table.withLock { t in
      t.slot(labels, maxSeries: maxSeries, labelCount: labelNames.count) { Series(counts: Array(repeating: 0, count: buckets.count + 1)) }
    }
    return Histogram(family: self, slot: i)
  }

  func observe(slot: Int, _ value: Double) {
    let b = bucketIndex(value)
    table.withLock { t in
      t.values[slot].counts[b] += 1
      t.values[slot].sum += value
      t.values[slot].count += 1
    }
  }

  /// Zeroes every series: for histograms recomputed at each scrape from current state.
  public func reset() {
    table.withLock { t in
      for i in t.values.indices { t.values[i] = Series(counts: Array(repeating: 0, count: buckets.count + 1)) }
    }
  }

  /// Count and sum of a series (tests).
  public func snapshot(_ labels: LabelValues = LabelValues()) -> (count: UInt64, sum: Double)? {
    table.withLock { t in t.index[labels].map { (t.values[$0].count, t.values[$0].sum) } }
  }

  func render(into out: inout String) {
    header(into: &out)
    table.withLock { t in
      for (i, labels) in t.labels.enumerated() {
        let s = t.values[i]
        var cumulative: UInt64 = 0
        for (b, le) in bucketText.enumerated() {
          cumulative += s.counts[b]
          out += "\(name)_bucket\(labelText(labels, extra: "le=\"\(le)\"")) \(cumulative)\n"
        }
        out += "\(name)_sum\(labelText(labels)) \(TextFormat.value(s.sum))\n"
        out += "\(name)_count\(labelText(labels)) \(s.count)\n"
      }
    }
  }
}

public struct Histogram: Sendable {
  let family: HistogramFamily
  let slot: Int

  public func observe(_ value: Double) { family.observe(slot: slot, value) }

  public func observe(since start: ContinuousClock.Instant) {
    observe((ContinuousClock.now - start).seconds)
  }
}

extension Duration {
  /// The duration in seconds, as Prometheus records times.
  public var seconds: Double {
    let (s, atto) = components
    return Double(s) + Double(atto) / 1e18
  }
}

/// Keeps a label's distinct values bounded: the first `limit` values seen pass,
/// later new ones become `other`. For values that come from outside the driver
/// (provider names from SecretProviderClasses, provider error codes).
public final class LabelLimiter: Sendable {
  private let seen = Locked(Set<String>())
  public let limit: Int

  public init(limit: Int) { self.limit = limit }

  public func admit(_ value: String) -> String {
    seen.withLock { seen in
      if seen.contains(value) { return value }
      if seen.count >= limit { return "other" }
      seen.insert(value)
      return value
    }
  }
}

/// The pieces of the text exposition format 0.0.4.
public enum TextFormat {
  /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
  public static func isValidName(_ name: String) -> Bool {
    guard let first = name.utf8.first else { return false }
    func letter(_ c: UInt8) -> Bool { (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x3A }
    return letter(first) && name.utf8.allSatisfy { letter($0) || ($0 >= 0x30 && $0 <= 0x39) }
  }

  /// Label values escape backslash, double quote and line feed.
  public static func escapeLabelValue(_ value: String) -> String {
    guard value.utf8.contains(where: { $0 == 0x5C || $0 == 0x22 || $0 == 0x0A }) else { return value }
    var s = ""
    for c in value.unicodeScalars {
      switch c {
      case "\\": s += "\\\\"
      case "\"": s += "\\\""
      case "\n": s += "\\n"
      default: s.unicodeScalars.append(c)
      }
    }
    return s
  }

  /// HELP text escapes backslash and line feed.
  public static func escapeHelp(_ help: String) -> String {
    var s = ""
    for c in help.unicodeScalars {
      switch c {
      case "\\": s += "\\\\"
      case "\n": s += "\\n"
      default: s.unicodeScalars.append(c)
      }
    }
    return s
  }

  /// Integers without a fraction; `+Inf`, `-Inf`, `NaN` as Prometheus spells them.
  public static func value(_ v: Double) -> String {
    if v.isNaN { return "NaN" }
    if v == .infinity { return "+Inf" }
    if v == -.infinity { return "-Inf" }
    if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
    return "\(v)"
  }
}
