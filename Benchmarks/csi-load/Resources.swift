import FoundationEssentials
import Glibc

/// Memory and CPU of one process from /proc, sampled once a second.
struct ProcessSampler {
  let pid: pid_t
  private var lastTicks: UInt64?
  private var lastNs: UInt64 = 0
  private static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

  struct Sample {
    var rssKiB: Int?
    var hwmKiB: Int?
    /// Percent of one core since the previous sample; nil for the first.
    var cpuPercent: Double?
    /// Total CPU seconds so far (user + system).
    var cpuSeconds: Double?
  }

  init(pid: pid_t) { self.pid = pid }

  mutating func sample() -> Sample {
    var s = Sample()
    if let status = Files.readText("/proc/\(pid)/status") {
      s.rssKiB = Self.field(status, "VmRSS:")
      s.hwmKiB = Self.field(status, "VmHWM:")
    }
    let now = monotonicNs()
    if let ticks = Self.cpuTicks(pid) {
      s.cpuSeconds = Double(ticks) / Self.ticksPerSecond
      if let lastTicks, now > lastNs {
        s.cpuPercent = Double(ticks &- lastTicks) / Self.ticksPerSecond / (Double(now - lastNs) / 1e9) * 100
      }
      lastTicks = ticks
      lastNs = now
    }
    return s
  }

  /// CPU seconds (user + system) the process has used so far.
  static func cpuSeconds(_ pid: pid_t) -> Double? {
    cpuTicks(pid).map { Double($0) / ticksPerSecond }
  }

  /// `VmRSS:    12345 kB` → 12345.
  static func field(_ status: String, _ name: String) -> Int? {
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) }) else { return nil }
    return line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
  }

  /// utime + stime (fields 14 and 15 of /proc/<pid>/stat), counted after the
  /// `)` that ends the command name (which may itself contain spaces).
  static func cpuTicks(_ pid: pid_t) -> UInt64? {
    guard let stat = Files.readText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // fields[0] is the state (field 3), so field n is fields[n - 3].
    guard fields.count > 12, let utime = UInt64(fields[11]), let stime = UInt64(fields[12]) else { return nil }
    return utime + stime
  }
}

/// The reference provider's `--stats-file`.
struct ProviderStats: Decodable, Sendable {
  var pid: Int32?
  var version_calls: Int?
  var mount_calls: Int?
  var mount_ok: Int?
  var mount_errors: [String: Int]?
  var hostile_responses: [String: Int]?
  var objects_served: Int?
  var in_flight: Int?
  var in_flight_max: Int?

  static func read(_ path: String) -> ProviderStats? {
    guard let bytes = Files.read(path, limit: 1 << 20) else { return nil }
    return try? JSONDecoder().decode(ProviderStats.self, from: Data(bytes))
  }

  var json: JSON {
    .object([
      ("pid", pid.map { .int(Int($0)) } ?? .null),
      ("version_calls", .int(version_calls ?? 0)),
      ("mount_calls", .int(mount_calls ?? 0)),
      ("mount_ok", .int(mount_ok ?? 0)),
      ("mount_errors", .dict(mount_errors ?? [:])),
      ("hostile_responses", .dict(hostile_responses ?? [:])),
      ("objects_served", .int(objects_served ?? 0)),
      ("in_flight_max", .int(in_flight_max ?? 0)),
    ])
  }
}
