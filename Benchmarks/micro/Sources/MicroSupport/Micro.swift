public import Benchmark
import Glibc

/// The measurement settings every micro-benchmark shares, so that the tolerances
/// `make micro-bench-check` applies are written down once.
public enum Micro {
  /// Time (wall clock and CPU), operations per second and malloc calls.
  ///
  /// CPU time is ``BenchmarkMetric/processCPU``, which bodies record with
  /// `Benchmark.measuringCPU`, not package-benchmark's `cpuTotal`: that one reads
  /// /proc/self/stat in 10 ms ticks, and the reading mallocs inside the measured region,
  /// adding 16 ± 2 to every sample's malloc count.
  public static var metrics: [BenchmarkMetric] { [.wallClock, .processCPU, .throughput, .mallocCountTotal] }

  /// How far a run's p90 may drift from the p90 saved in `Thresholds/` before
  /// `thresholds check` calls it a regression (or an improvement).
  ///
  /// Time is loose: the machine is a shared 2-core VM. CPU time hardly depends on what
  /// else runs, so it carries the real time check: at most `slowdown` times the saved
  /// p90. Wall clock and throughput may be twice as far off again (4x by default: two
  /// busy neighbours alone make them 3.5x worse), so they only catch the gross, such as
  /// a lost wake-up. Malloc counts are tight: they do not depend on the load, so
  /// `mallocSlack` (absolute, per measured iteration) only absorbs what other threads do
  /// on their own schedule, and is zero where one thread does all the work.
  public static func tolerances(mallocSlack: Int, slowdown: Int = 2) -> [BenchmarkMetric: BenchmarkThresholds] {
    let wallSlowdown = 2.0 * Double(slowdown)
    return [
      .processCPU: .init(relative: [.p90: Double(slowdown - 1) * 100]),
      .wallClock: .init(relative: [.p90: (wallSlowdown - 1) * 100]),
      // Throughput falls where time rises: 75% lower is 4x slower (the default).
      .throughput: .init(relative: [.p90: (1 - 1 / wallSlowdown) * 100]),
      .mallocCountTotal: .init(absolute: [.p90: mallocSlack]),
    ]
  }

  /// A configuration with the shared metrics and tolerances.
  ///
  /// - Parameters:
  ///   - scaling: operations per measured iteration (`benchmark.scaledIterations`);
  ///     `.kilo` for sub-microsecond work, so a sample is long enough to time.
  ///   - mallocSlack, slowdown: see ``tolerances(mallocSlack:slowdown:)``.
  public static func configuration(
    scaling: BenchmarkScalingFactor = .one,
    mallocSlack: Int = 0,
    slowdown: Int = 2,
    maxDuration: Duration = .seconds(2),
    maxIterations: Int = 100_000,
    setup: Benchmark.BenchmarkSetupHook? = nil,
    teardown: Benchmark.BenchmarkTeardownHook? = nil
  ) -> Benchmark.Configuration {
    .init(
      metrics: metrics,
      warmupIterations: 10,
      scalingFactor: scaling,
      maxDuration: maxDuration,
      maxIterations: maxIterations,
      thresholds: tolerances(mallocSlack: mallocSlack, slowdown: slowdown),
      setup: setup,
      teardown: teardown
    )
  }
}

/// Thrown by a benchmark whose operation did not do what it is meant to measure.
public struct BenchmarkFailure: Error, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}

/// What a benchmark's setup makes and its body and teardown use (a server, a loop, a mounted
/// tmpfs). package-benchmark runs setup, iterations and teardown one after another, never
/// at once, so this needs no lock.
public final class Slot<Value> {
  public var value: Value?
  public init() {}

  /// The value setup stored, or a failure naming what is missing.
  public func get(_ what: String) throws -> Value {
    guard let value else { throw BenchmarkFailure("\(what) is not set up") }
    return value
  }
}

extension BenchmarkMetric {
  /// CPU time of the whole process, every thread (the loop's too), in nanoseconds:
  /// `CLOCK_PROCESS_CPUTIME_ID` around the measured work.
  public static var processCPU: BenchmarkMetric {
    .custom("CPU time (ns)", polarity: .prefersSmaller, useScalingFactor: true)
  }
}

extension Benchmark {
  /// Runs `body` and records the process CPU time it used as ``BenchmarkMetric/processCPU``.
  public func measuringCPU<T>(_ body: () throws -> T) rethrows -> T {
    let start = processCPUNanoseconds()
    defer { measurement(.processCPU, processCPUNanoseconds() - start) }
    return try body()
  }

  /// Runs `body` and records the process CPU time it used as ``BenchmarkMetric/processCPU``.
  public func measuringCPU<T>(_ body: () async throws -> T) async rethrows -> T {
    let start = processCPUNanoseconds()
    defer { measurement(.processCPU, processCPUNanoseconds() - start) }
    return try await body()
  }
}

/// Nanosecond CPU time of all threads of the process; no allocation.
func processCPUNanoseconds() -> Int {
  var now = timespec()
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now)
  return Int(now.tv_sec) * 1_000_000_000 + Int(now.tv_nsec)
}
