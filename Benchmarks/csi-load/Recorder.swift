import Glibc
import GRPCCore
import GRPCH2
import Histogram

/// The RPCs the harness times separately.
enum CallKind: Int, CaseIterable, Sendable {
  /// NodePublishVolume for a volume not yet mounted (every attempt, retries included).
  case firstPublish
  /// NodePublishVolume again for a mounted volume (kubelet's requiresRepublish).
  case republish
  /// NodeUnpublishVolume while the run is measured (churn, cycles).
  case unpublish
  /// NodeUnpublishVolume of every remaining volume after the run (a node drain).
  case teardown

  var key: String {
    switch self {
    case .firstPublish: return "first_publish"
    case .republish: return "republish"
    case .unpublish: return "unpublish"
    case .teardown: return "teardown"
    }
  }

  var label: String {
    switch self {
    case .firstPublish: return "first publish"
    case .republish: return "republish"
    case .unpublish: return "unpublish"
    case .teardown: return "teardown unpublish"
    }
  }
}

/// Canonical gRPC status names, as grpcurl and the Go client print them.
func statusName(_ error: any Error) -> String {
  guard let rpc = error as? RPCError else { return "CLIENT_ERROR" }
  return rpc.code.canonicalName
}

/// "UNAVAILABLE: <the status message>", for the error samples.
func errorDetail(_ error: any Error) -> String {
  guard let rpc = error as? RPCError else { return "\(statusName(error)): \(error)" }
  return "\(statusName(rpc)): \(rpc.message)"
}

/// Latencies in microseconds: 1 µs to 10 minutes, 3 significant digits.
typealias LatencyHistogram = Histogram<UInt64>

func makeLatencyHistogram(digits: SignificantDigits = .three) -> LatencyHistogram {
  LatencyHistogram(lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: digits)
}

extension LatencyHistogram {
  mutating func recordClamped(_ micros: UInt64) {
    _ = record(Swift.min(Swift.max(micros, 1), highestTrackableValue))
  }

  /// p50/p90/p99/p99.9/max and friends, in microseconds.
  var summary: LatencySummary {
    guard totalCount > 0 else { return LatencySummary() }
    return LatencySummary(
      count: Int(totalCount), minUs: Double(min), meanUs: mean,
      p50Us: Double(valueAtPercentile(50)), p90Us: Double(valueAtPercentile(90)), p99Us: Double(valueAtPercentile(99)),
      p999Us: Double(valueAtPercentile(99.9)), maxUs: Double(max))
  }

  /// HdrHistogram's percentile distribution: (percentile, value µs) pairs, denser towards the tail.
  var percentileDistribution: [(Double, UInt64)] {
    guard totalCount > 0 else { return [] }
    var out: [(Double, UInt64)] = []
    for v in percentiles(ticksPerHalfDistance: 5) {
      out.append((v.percentileLevelIteratedTo, v.value))
      if v.percentileLevelIteratedTo >= 100 { break }
    }
    return out
  }

  /// Counts in logarithmic buckets, 20 per decade from 1 µs: (lower µs, upper µs, count), non-empty only.
  var logBuckets: [(Double, Double, UInt64)] {
    var counts: [Int: UInt64] = [:]
    for v in recordedValues() {
      let value = Swift.max(1.0, Double(v.value))
      let index = Int((log10(value) * 20).rounded(.down))
      counts[index, default: 0] += UInt64(v.count)
    }
    return counts.keys.sorted().map { i in (pow(10, Double(i) / 20), pow(10, Double(i + 1) / 20), counts[i]!) }
  }
}

struct LatencySummary: Sendable {
  var count = 0
  var minUs: Double?
  var meanUs: Double?
  var p50Us: Double?
  var p90Us: Double?
  var p99Us: Double?
  var p999Us: Double?
  var maxUs: Double?

  var json: JSON {
    .object([
      ("count", .int(count)), ("min_us", .num(minUs)), ("mean_us", .num(meanUs)), ("p50_us", .num(p50Us)),
      ("p90_us", .num(p90Us)), ("p99_us", .num(p99Us)), ("p999_us", .num(p999Us)), ("max_us", .num(maxUs)),
    ])
  }
}

/// Everything timed for one kind of call: the whole run and the current second.
/// Only successful, verified calls go into the latency histograms; a failed call (a
/// gRPC error or a volume that failed verification) is counted by its code and timed
/// in `failed` alone, so a driver that fails fast cannot look fast.
struct KindRecord {
  var total = makeLatencyHistogram()
  var second = makeLatencyHistogram(digits: .two)
  var failed = makeLatencyHistogram()
  var calls = 0
  var ok = 0
  /// gRPC status name or `VERIFY_*` code → calls.
  var errors: [String: Int] = [:]
  var secondCalls = 0
  var secondErrors = 0

  mutating func record(micros: UInt64, error: String?) {
    calls += 1
    secondCalls += 1
    if let error {
      errors[error, default: 0] += 1
      secondErrors += 1
      failed.recordClamped(micros)
    } else {
      ok += 1
      total.recordClamped(micros)
      second.recordClamped(micros)
    }
  }

  var verifyErrors: Int { errors.reduce(0) { $0 + ($1.key.hasPrefix("VERIFY_") ? $1.value : 0) } }
}

/// Columns of the per-second time series (one entry per second of the run).
struct TimeSeries {
  var t: [Double] = []
  var live: [Int] = []
  var pending: [Int] = []
  var calls: [CallKind: [Int]] = [:]
  var errors: [Int] = []
  var p50: [CallKind: [Double?]] = [:]
  var p99: [CallKind: [Double?]] = [:]
  var max: [CallKind: [Double?]] = [:]
  var driverRSS: [Double?] = []
  var driverHWM: [Double?] = []
  var driverCPU: [Double?] = []
  var providerRSS: [Double?] = []
  var providerCPU: [Double?] = []
  var harnessCPU: [Double?] = []
  var providerMountsPerSecond: [Int?] = []
  var providerInFlight: [Int?] = []
  var staleVolumes: [Int?] = []

  var json: JSON {
    var members: [(String, JSON)] = [
      ("t_s", .nums(t)), ("live_volumes", .ints(live)), ("pending_pods", .ints(pending)),
    ]
    for kind in CallKind.allCases {
      members.append(("calls_\(kind.key)", .ints(calls[kind] ?? [])))
    }
    members.append(("errors", .ints(errors)))
    for kind in CallKind.allCases {
      members.append(("p50_us_\(kind.key)", .nums(p50[kind] ?? [])))
      members.append(("p99_us_\(kind.key)", .nums(p99[kind] ?? [])))
      members.append(("max_us_\(kind.key)", .nums(max[kind] ?? [])))
    }
    members += [
      ("driver_rss_mib", .nums(driverRSS)), ("driver_hwm_mib", .nums(driverHWM)), ("driver_cpu_pct", .nums(driverCPU)),
      ("provider_rss_mib", .nums(providerRSS)), ("provider_cpu_pct", .nums(providerCPU)),
      ("harness_cpu_pct", .nums(harnessCPU)),
      ("provider_mounts_per_s", .array(providerMountsPerSecond.map { $0.map { .int($0) } ?? .null })),
      ("provider_in_flight", .array(providerInFlight.map { $0.map { .int($0) } ?? .null })),
      ("stale_volumes", .array(staleVolumes.map { $0.map { .int($0) } ?? .null })),
    ]
    return .object(members)
  }
}
