/// How a group of pods arrives.
enum Arrival: Sendable, Equatable, CustomStringConvertible {
  /// All at the same instant.
  case burst
  /// A steady `perSecond` rate.
  case rate(perSecond: Double)
  /// The rate climbs linearly from zero so that all pods have arrived after `seconds`.
  case ramp(seconds: Double)

  /// `burst` | `rate:R` (pods/s) | `ramp:DURATION`.
  init?(parsing text: String) {
    let t = text.trimmingCharacters().lowercased()
    if t == "burst" {
      self = .burst
      return
    }
    let parts = t.split(separator: ":", maxSplits: 1).map(String.init)
    guard parts.count == 2 else { return nil }
    switch parts[0] {
    case "rate", "steady":
      guard let r = Double(parts[1]), r > 0, r.isFinite else { return nil }
      self = .rate(perSecond: r)
    case "ramp":
      guard let s = DurationText.seconds(parts[1]), s > 0 else { return nil }
      self = .ramp(seconds: s)
    default:
      return nil
    }
  }

  /// Seconds after the group's start at which pod `index` of `count` arrives.
  func offset(of index: Int, count: Int) -> Double {
    switch self {
    case .burst: return 0
    case .rate(let r): return Double(index) / r
    // Cumulative arrivals grow as t²: pod i arrives at D·sqrt(i/N).
    case .ramp(let d): return count <= 1 ? 0 : d * (Double(index) / Double(count)).squareRoot()
    }
  }

  var description: String {
    switch self {
    case .burst: return "burst"
    case .rate(let r): return "rate:\(JSON.format(r))"
    case .ramp(let s): return "ramp:\(JSON.format(s))s"
    }
  }
}

/// A group of pods that starts at `atSeconds` (the initial pods are group 0 at 0 s).
struct PodGroup: Sendable, Equatable {
  var count: Int
  var atSeconds: Double
  var arrival: Arrival

  /// `COUNT@TIME[:ARRIVAL]`, e.g. `100@60s` or `100@60s:rate:20`.
  init?(parsing text: String) {
    let parts = text.split(separator: "@", maxSplits: 1).map(String.init)
    guard parts.count == 2, let n = Int(parts[0]), n > 0 else { return nil }
    let rest = parts[1].split(separator: ":", maxSplits: 1).map(String.init)
    guard let at = DurationText.seconds(rest[0]) else { return nil }
    var arrival = Arrival.burst
    if rest.count == 2 {
      guard let a = Arrival(parsing: rest[1]) else { return nil }
      arrival = a
    }
    self.init(count: n, atSeconds: at, arrival: arrival)
  }

  init(count: Int, atSeconds: Double, arrival: Arrival) {
    self.count = count
    self.atSeconds = atSeconds
    self.arrival = arrival
  }

  /// Seconds from the group's start until its last pod arrives.
  var spreadSeconds: Double { arrival.offset(of: Swift.max(0, count - 1), count: count) }
}

/// A pass/fail threshold on one of the result metrics, e.g. `first_publish.p99_ms<=80`.
struct Target: Sendable, Equatable, CustomStringConvertible {
  enum Op: String, Sendable { case atMost = "<=", atLeast = ">=" }
  var metric: String
  var op: Op
  var threshold: Double

  init(metric: String, op: Op, threshold: Double) {
    self.metric = metric
    self.op = op
    self.threshold = threshold
  }

  init?(parsing text: String) {
    for op in [Op.atMost, Op.atLeast] {
      let parts = text.split(separator: op.rawValue, omittingEmptySubsequences: false).map(String.init)
      if parts.count == 2, let v = Double(parts[1].trimmingCharacters()), !parts[0].trimmingCharacters().isEmpty {
        self.metric = parts[0].trimmingCharacters()
        self.op = op
        self.threshold = v
        return
      }
    }
    return nil
  }

  func passes(_ value: Double) -> Bool {
    op == .atMost ? value <= threshold : value >= threshold
  }

  var description: String { "\(metric) \(op.rawValue) \(JSON.format(threshold))" }
}

/// A secret rewritten in the store part-way through the run.
struct SecretChange: Sendable {
  /// The provider's data file to rewrite.
  var dataFile: String
  /// Where the object appears inside each volume (under `..data/`).
  var volumePath: String
  var newValue: [UInt8]
  var atSeconds: Double
}

/// What the simulated kubelet does, validated.
struct Plan: Sendable {
  enum Workload: Sendable, Equatable {
    /// Pods arrive, live and republish like under kubelet.
    case kubelet
    /// `concurrency` workers publish and unpublish fresh pods back to back.
    case cycles(concurrency: Int)
  }

  var workload: Workload
  var groups: [PodGroup]
  /// Seconds between republishes of one pod; nil: never.
  var republish: ClosedRange<Double>?
  /// The initial pods' first republish comes within 0...max, as on a node whose pods have run for a while.
  var spreadFirstRepublish: Bool
  var churnPerSecond: Double
  var durationSeconds: Double
  var warmupSeconds: Double
  /// cycles: stop after this many measured cycles (0: run for the duration).
  var cycleLimit: Int
  var change: SecretChange?
  var kubeletRoot: String
  var spc: String
  var namespace: String
  var volumeName: String
  var serviceAccount: String
  var tokenAudiences: [String]
  var callTimeoutSeconds: Double
  var steadyFromSeconds: Double?
  var seed: UInt64
  var progress: Bool
  /// What every published volume must hold; nil when the names are unknown (layout only).
  var expectedObjects: [ExpectedObject]?
  /// Check every n-th successful publish (1: all of them).
  var verifyEvery: Int
}
