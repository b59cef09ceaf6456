import Glibc
import TextFormats

/// A fault-setting text that does not parse; `description` names the setting, never a secret.
struct FaultParseError: Error, CustomStringConvertible {
  var description: String
}

extension String {
  func trimmingSpaces() -> String {
    var s = Substring(self)
    while s.first == " " { s = s.dropFirst() }
    while s.last == " " { s = s.dropLast() }
    return String(s)
  }
}

/// How long to wait before answering a Mount.
enum Latency: Equatable, Sendable, CustomStringConvertible {
  case none
  case fixed(ms: Double)
  /// Gaussian, clamped at zero.
  case normal(meanMs: Double, stddevMs: Double)
  /// Log-normal with this median and 99th percentile: most calls fast, a few very slow.
  case longTail(medianMs: Double, p99Ms: Double)

  /// Longest wait ever drawn, so a wild sample cannot hold a call for hours.
  static let capMs: Double = 600_000

  /// `0` | `50ms` | `fixed:50ms` | `normal:MEAN,STDDEV` | `longtail:MEDIAN,P99`.
  init(parsing text: String) throws(FaultParseError) {
    let t = text.trimmingSpaces()
    let bad = FaultParseError(
      description: "latency must be 0, a duration like 50ms, normal:MEAN,STDDEV or longtail:MEDIAN,P99")
    guard let colon = t.firstIndex(of: ":") else {
      guard let ms = GoDuration.milliseconds(t) else { throw bad }
      self = ms == 0 ? .none : .fixed(ms: ms)
      return
    }
    let kind = t[..<colon].lowercased()
    let args = t[t.index(after: colon)...].split(separator: ",", omittingEmptySubsequences: false)
      .map { GoDuration.milliseconds(String($0).trimmingSpaces()) }
    switch (kind, args.count) {
    case ("fixed", 1):
      guard let ms = args[0] else { throw bad }
      self = ms == 0 ? .none : .fixed(ms: ms)
    case ("normal", 2):
      guard let mean = args[0], let sd = args[1] else { throw bad }
      self = .normal(meanMs: mean, stddevMs: sd)
    case ("longtail", 2):
      guard let median = args[0], let p99 = args[1], median > 0, p99 >= median else {
        throw FaultParseError(description: "latency longtail:MEDIAN,P99 needs 0 < MEDIAN <= P99")
      }
      self = .longTail(medianMs: median, p99Ms: p99)
    default:
      throw bad
    }
  }

  /// One wait, in whole milliseconds (the loop's timer resolution).
  func sampleMilliseconds<R: RandomNumberGenerator>(using rng: inout R) -> UInt64 {
    let ms: Double
    switch self {
    case .none:
      return 0
    case .fixed(let v):
      ms = v
    case .normal(let mean, let sd):
      ms = mean + sd * Self.standardNormal(using: &rng)
    case .longTail(let median, let p99):
      // ln X ~ N(mu, sigma): median = e^mu, p99 = e^(mu + z99 * sigma).
      let z99 = 2.3263478740408408
      let sigma = log(p99 / median) / z99
      ms = median * exp(sigma * Self.standardNormal(using: &rng))
    }
    guard ms.isFinite, ms > 0 else { return 0 }
    return UInt64(min(ms, Self.capMs).rounded())
  }

  /// Box-Muller; one draw per call is plenty here.
  static func standardNormal<R: RandomNumberGenerator>(using rng: inout R) -> Double {
    let u1 = Double.random(in: Double.ulpOfOne..<1, using: &rng)
    let u2 = Double.random(in: 0..<1, using: &rng)
    return sqrt(-2 * log(u1)) * cos(2 * Double.pi * u2)
  }

  var description: String {
    switch self {
    case .none: return "0"
    case .fixed(let ms): return "\(ms)ms"
    case .normal(let m, let s): return "normal:\(m)ms,\(s)ms"
    case .longTail(let m, let p): return "longtail:\(m)ms,\(p)ms"
    }
  }
}

/// How an injected failure reaches the driver.
enum InjectedErrorKind: String, Sendable, CaseIterable {
  /// A MountResponse whose error.code is "InjectedError".
  case response
  /// gRPC status UNAVAILABLE.
  case unavailable
  /// gRPC status INTERNAL.
  case `internal`
  /// gRPC status RESOURCE_EXHAUSTED: a store's rate limit, as cloud SDKs report it.
  case resourceExhausted = "resource-exhausted"

  init(parsing text: String) throws(FaultParseError) {
    guard let kind = Self(rawValue: text.trimmingSpaces().lowercased()) else {
      throw FaultParseError(description: "error kind must be response, unavailable, internal or resource-exhausted")
    }
    self = kind
  }
}

/// A response that a well-behaved driver must reject.
enum HostileMode: String, Sendable, CaseIterable {
  case dotdot  // a file at ../escape
  case absolute  // a file at /etc/evil
  case oversized  // an 8 MiB file: more than the driver's default 4 MiB receive limit
  case reserved  // a file at ..data, the writer's own name
  case emptyVersions = "empty-versions"  // files but no object_version
  case badMode = "bad-mode"  // mode 0o170000 (file-type bits)
  case duplicate  // the same path twice
  case nul  // a path with a NUL byte in it on the wire ("evil\0/../../escape")
  case many  // 100 000 files of one byte each
  case tmpfsFull = "tmpfs-full"  // one 32 MiB file: more than the driver's 16 MiB tmpfs
  case symlink  // a file whose mode asks for a symbolic link (S_IFLNK | 0777)
  case throughLink = "through-link"  // a file "link" and a file "link/inner": a path through another file's link
  case hugeMode = "huge-mode"  // mode 0x7fffffff

  /// nil for `none` or empty (a per-request way to turn a process-wide mode off).
  static func parse(_ text: String) throws(FaultParseError) -> HostileMode? {
    let t = text.trimmingSpaces().lowercased()
    if t.isEmpty || t == "none" { return nil }
    guard let mode = HostileMode(rawValue: t) else {
      throw FaultParseError(
        description: "hostile mode must be none or one of \(HostileMode.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return mode
  }
}

/// Throttled windows: the last `forMs` of every `everyMs`, counted from process start
/// (at the end of the period, so a freshly started provider answers normally first).
struct Throttle: Equatable, Sendable {
  var everyMs: Double
  var forMs: Double

  static let off = Throttle(everyMs: 0, forMs: 0)

  var isOn: Bool { everyMs > 0 && forMs > 0 }

  func isThrottled(elapsedMs: Double) -> Bool {
    guard isOn else { return false }
    return elapsedMs.truncatingRemainder(dividingBy: everyMs) >= everyMs - forMs
  }

  static func validate(everyMs: Double, forMs: Double) throws(FaultParseError) -> Throttle {
    if forMs > 0 && everyMs <= 0 { throw FaultParseError(description: "throttle-for needs a positive throttle-every") }
    if forMs > everyMs && everyMs > 0 { throw FaultParseError(description: "throttle-for must not exceed throttle-every") }
    return Throttle(everyMs: everyMs, forMs: forMs)
  }
}

/// Every fault knob, process-wide from flags and overridden per request by
/// `fault.*` attributes, so one provider can serve a healthy and a faulty class.
struct FaultSettings: Equatable, Sendable {
  var latency: Latency = .none
  var errorRate: Double = 0
  var errorKind: InjectedErrorKind = .response
  var throttle: Throttle = .off
  /// What a throttled call answers: this MountResponse error code, or, for
  /// `RESOURCE_EXHAUSTED` and `UNAVAILABLE`, that gRPC status (as stores' SDKs surface
  /// throttling: AWS `ThrottlingException`, HTTP 429 from Azure or Vault).
  var throttleCode = "Throttled"
  var hostile: HostileMode?
  /// Fraction of Mounts that get the hostile answer (the rest are answered normally).
  var hostileRate: Double = 1

  enum Key {
    static let latency = "fault.latency"
    static let errorRate = "fault.errorRate"
    static let errorKind = "fault.errorKind"
    static let throttleEvery = "fault.throttleEvery"
    static let throttleFor = "fault.throttleFor"
    static let throttleCode = "fault.throttleCode"
    static let hostile = "fault.hostile"
    static let hostileRate = "fault.hostileRate"
  }

  static func parseRate(_ text: String) throws(FaultParseError) -> Double {
    guard let rate = Double(text.trimmingSpaces()), rate >= 0, rate <= 1 else {
      throw FaultParseError(description: "error rate must be a number from 0.0 to 1.0")
    }
    return rate
  }

  static func parseDuration(_ text: String, _ name: String) throws(FaultParseError) -> Double {
    guard let ms = GoDuration.milliseconds(text.trimmingSpaces()) else {
      throw FaultParseError(description: "\(name) must be a duration like 500ms, 10s or 1m")
    }
    return ms
  }

  /// These settings with the request's `fault.*` attributes laid over them.
  func overlaid(with attributes: [String: String]) throws(FaultParseError) -> FaultSettings {
    var s = self
    if let v = attributes[Key.latency] {
      do throws(FaultParseError) { s.latency = try Latency(parsing: v) } catch {
        throw FaultParseError(description: "\(Key.latency): \(error)")
      }
    }
    if let v = attributes[Key.errorRate] {
      do throws(FaultParseError) { s.errorRate = try Self.parseRate(v) } catch {
        throw FaultParseError(description: "\(Key.errorRate): \(error)")
      }
    }
    if let v = attributes[Key.errorKind] {
      do throws(FaultParseError) { s.errorKind = try InjectedErrorKind(parsing: v) } catch {
        throw FaultParseError(description: "\(Key.errorKind): \(error)")
      }
    }
    if attributes[Key.throttleEvery] != nil || attributes[Key.throttleFor] != nil {
      let every = try attributes[Key.throttleEvery].map { v throws(FaultParseError) in try Self.parseDuration(v, Key.throttleEvery) } ?? s.throttle.everyMs
      let window = try attributes[Key.throttleFor].map { v throws(FaultParseError) in try Self.parseDuration(v, Key.throttleFor) } ?? s.throttle.forMs
      s.throttle = try Throttle.validate(everyMs: every, forMs: window)
    }
    if let v = attributes[Key.throttleCode] {
      let code = v.trimmingSpaces()
      guard !code.isEmpty, code.utf8.count <= 64, code.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
        throw FaultParseError(description: "\(Key.throttleCode) must be a short code without spaces, e.g. ThrottlingException or RESOURCE_EXHAUSTED")
      }
      s.throttleCode = code
    }
    if let v = attributes[Key.hostile] {
      do throws(FaultParseError) { s.hostile = try HostileMode.parse(v) } catch {
        throw FaultParseError(description: "\(Key.hostile): \(error)")
      }
    }
    if let v = attributes[Key.hostileRate] {
      do throws(FaultParseError) { s.hostileRate = try Self.parseRate(v) } catch {
        throw FaultParseError(description: "\(Key.hostileRate): \(error)")
      }
    }
    return s
  }
}
