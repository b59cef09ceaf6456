import Glibc
import Histogram

/// Turns a `RunRecord` into the flat metrics, the target verdicts, the JSON
/// results file and the summary table.
struct Results {
  var scenario: String
  var title: String
  var startedAt: String
  var command: [String]
  var config: JSON
  var plan: Plan
  var record: RunRecord
  var targets: [Target]
  var driverMode: String
  /// `Files.fileSystem(holding:)` of the kubelet root, read once.
  var kubeletRootFileSystem: String
  var driverExit: String?
  var providerExit: String?

  // MARK: windows

  private func seconds(_ t: UInt64) -> Double { Double(t &- record.startNs) / 1e9 }

  var measureFromSeconds: Double { seconds(record.measureFromNs) }
  var measuredEndSeconds: Double { seconds(record.measuredEndNs) }
  var measuredSeconds: Double { Swift.max(0.001, measuredEndSeconds - measureFromSeconds) }

  /// Steady state: from 10 s after the initial pods were all mounted (or the
  /// warm-up, for cycles) to the first later wave or the end.
  var steadyWindow: (from: Double, to: Double)? {
    var from: Double
    if let s = plan.steadyFromSeconds {
      from = s
    } else if case .cycles = plan.workload {
      from = measureFromSeconds
    } else {
      guard let initial = record.groups.first else { return nil }
      let ready = initial.allLiveNs.map(seconds) ?? (initial.spec.atSeconds + initial.spec.spreadSeconds)
      from = ready + 10
    }
    var to = measuredEndSeconds
    if plan.steadyFromSeconds == nil, record.groups.count > 1 {
      to = Swift.min(to, record.groups[1...].map(\.spec.atSeconds).min()!)
    }
    from = Swift.max(from, 0)
    return to - from >= 3 ? (from, to) : nil
  }

  private func mean(_ values: [Double?], from: Double, to: Double) -> Double? {
    var sum = 0.0
    var n = 0
    for (i, v) in values.enumerated() where i < record.series.t.count {
      let t = record.series.t[i]
      // Sample t covers (t-1, t]: inside the window when it ends inside it.
      if t > from && t <= to + 0.5, let v {
        sum += v
        n += 1
      }
    }
    return n > 0 ? sum / Double(n) : nil
  }

  private func maximum(_ values: [Double?], from: Double, to: Double) -> Double? {
    var best: Double?
    for (i, v) in values.enumerated() where i < record.series.t.count {
      let t = record.series.t[i]
      if t > from && t <= to + 0.5, let v { best = Swift.max(best ?? v, v) }
    }
    return best
  }

  func groupName(_ index: Int) -> String { index == 0 ? "initial" : "wave\(index)" }

  // MARK: errors and CPU

  /// Failed calls of every kind (teardown included) by code: gRPC status names and `VERIFY_*`.
  var errorsByCode: [String: Int] {
    var all: [String: Int] = [:]
    for k in record.kinds.values {
      for (code, n) in k.errors { all[code, default: 0] += n }
    }
    return all
  }

  var verifyCPUPerCheckMicros: Double? {
    record.volumesChecked > 0 ? Double(record.verifyCPUNs) / 1000 / Double(record.volumesChecked) : nil
  }

  var errorCount: Int { record.kinds.values.reduce(0) { $0 + ($1.calls - $1.ok) } }
  var verifyErrorCount: Int { record.kinds.values.reduce(0) { $0 + $1.verifyErrors } }

  /// CPU microseconds per call sent, over the start → end of the measured part.
  func cpuPerCallMicros(_ seconds: Double?) -> Double? {
    guard let seconds, record.callsSent > 0 else { return nil }
    return seconds * 1e6 / Double(record.callsSent)
  }

  // MARK: metrics

  /// Flat name → value: what targets test and what report.py compares.
  var metrics: [(String, Double?)] {
    var m: [(String, Double?)] = []
    let window = measuredSeconds
    var measuredCalls = 0
    for kind in CallKind.allCases {
      let k = record.kinds[kind]!
      let s = k.total.summary
      let ms = { (v: Double?) in v.map { $0 / 1000 } }
      m += [
        ("\(kind.key).count", Double(k.calls)), ("\(kind.key).errors", Double(k.calls - k.ok)),
        ("\(kind.key).p50_ms", ms(s.p50Us)), ("\(kind.key).p90_ms", ms(s.p90Us)), ("\(kind.key).p99_ms", ms(s.p99Us)),
        ("\(kind.key).p999_ms", ms(s.p999Us)), ("\(kind.key).max_ms", ms(s.maxUs)), ("\(kind.key).mean_ms", ms(s.meanUs)),
      ]
      if kind != .teardown {
        m.append(("\(kind.key).per_s", Double(k.calls) / window))
        measuredCalls += k.calls
      }
    }
    m.append(("calls_per_s", Double(measuredCalls) / window))
    m += [
      ("errors", Double(errorCount)), ("rpc_errors", Double(errorCount - verifyErrorCount)),
      ("verify_errors", Double(verifyErrorCount)), ("verify.checked", Double(record.volumesChecked)),
      ("verify.cpu_per_check_us", verifyCPUPerCheckMicros),
    ]
    for (code, n) in errorsByCode.sorted(by: { $0.key < $1.key }) { m.append(("errors.\(code)", Double(n))) }
    let lag = record.scheduleLag.summary
    m += [
      ("schedule_lag.p50_ms", lag.p50Us.map { $0 / 1000 }), ("schedule_lag.p99_ms", lag.p99Us.map { $0 / 1000 }),
      ("schedule_lag.max_ms", lag.maxUs.map { $0 / 1000 }),
      ("calls_sent", Double(record.callsSent)),
      ("harness.cpu_s", record.harnessCPUSeconds), ("driver.cpu_s", record.driverCPUSeconds),
      ("harness.cpu_per_call_us", cpuPerCallMicros(record.harnessCPUSeconds)),
      ("driver.cpu_per_call_us", cpuPerCallMicros(record.driverCPUSeconds)),
    ]
    if case .cycles = plan.workload {
      m.append(("cycles_per_s", Double(record.cycles) / window))
      // Every call sent in a cycles run belongs to a publish+unpublish pair.
      m.append(("driver.cpu_per_pair_us", cpuPerCallMicros(record.driverCPUSeconds).map { $0 * 2 }))
    }
    m.append(("volumes.peak", Double(record.peakLive)))
    m.append(("pods.created", Double(record.podsCreated)))
    let series = record.series
    let from = measureFromSeconds
    let to = measuredEndSeconds
    let steady = steadyWindow
    m += [
      // The measured part only: a drain of every volume at the end is reported apart.
      ("driver.rss_max_mib", maximum(series.driverRSS, from: from, to: to)),
      ("driver.rss_max_teardown_mib", record.teardownStartNs.flatMap { _ in maximum(series.driverRSS, from: to, to: .infinity) }),
      // VmHWM: the process's lifetime peak, teardown included.
      ("driver.hwm_mib", record.driverHWMKiB > 0 ? Double(record.driverHWMKiB) / 1024 : nil),
      ("driver.rss_end_mib", series.driverRSS.last(where: { $0 != nil }) ?? nil),
      ("driver.cpu_avg_pct", mean(series.driverCPU, from: from, to: to)),
      ("driver.cpu_steady_pct", steady.flatMap { mean(series.driverCPU, from: $0.from, to: $0.to) }),
      ("driver.cpu_max_pct", maximum(series.driverCPU, from: from, to: to)),
      ("provider.mount_calls", record.providerStats?.mount_calls.map(Double.init)),
      ("provider.mount_errors", record.providerStats.map { Double(($0.mount_errors ?? [:]).values.reduce(0, +)) }),
      ("provider.in_flight_max", record.providerStats?.in_flight_max.map(Double.init)),
      ("provider.cpu_avg_pct", mean(series.providerCPU, from: from, to: to)),
      ("provider.hwm_mib", record.providerHWMKiB > 0 ? Double(record.providerHWMKiB) / 1024 : nil),
      ("harness.cpu_avg_pct", mean(series.harnessCPU, from: from, to: to)),
    ]
    for (i, g) in record.groups.enumerated() {
      let s = g.firstPublish.summary
      m += [
        ("\(groupName(i)).all_live_s", g.allLiveNs.map { Double($0 &- g.startNs) / 1e9 }),
        ("\(groupName(i)).first_publish.p50_ms", s.p50Us.map { $0 / 1000 }),
        ("\(groupName(i)).first_publish.p99_ms", s.p99Us.map { $0 / 1000 }),
        ("\(groupName(i)).first_publish.max_ms", s.maxUs.map { $0 / 1000 }),
      ]
    }
    let p = record.propagation
    if let changed = p.changedNs {
      let s = p.perVolume.summary
      m += [
        ("propagation.all_seen_s", p.staleCount == 0 ? p.allSeenNs.map { Double($0 &- changed) / 1e9 } : nil),
        ("propagation.p50_s", s.p50Us.map { $0 / 1e6 }), ("propagation.p99_s", s.p99Us.map { $0 / 1e6 }),
        ("propagation.max_s", s.maxUs.map { $0 / 1e6 }), ("propagation.stale_at_end", Double(p.staleCount)),
      ]
    }
    m.append(("leftover_targets", Double(record.leftoverTargets)))
    return m
  }

  /// Each target with its measured value; a missing value fails.
  var verdicts: [(Target, Double?, Bool)] {
    let values = Dictionary(metrics.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
    return targets.map { t in
      let v = values[t.metric] ?? nil
      return (t, v, v.map(t.passes) ?? false)
    }
  }

  // MARK: JSON

  var json: JSON {
    let verdicts = self.verdicts
    var top: [(String, JSON)] = [
      ("schema", .string("csi-load/1")),
      ("scenario", .string(scenario)),
      ("title", .string(title)),
      ("started_at", .string(startedAt)),
      ("command", .array(command.map { .string($0) })),
      ("host", host),
      ("driver_mode", .string(driverMode)),
      ("config", config),
      ("window", window),
      ("metrics", .object(metrics.map { ($0.0, .num($0.1)) })),
      (
        "targets",
        .array(
          verdicts.map { t, v, pass in
            .object([
              ("metric", .string(t.metric)), ("op", .string(t.op.rawValue)), ("threshold", .number(t.threshold)),
              ("value", .num(v)), ("pass", .bool(pass)),
            ])
          })
      ),
      ("passed", targets.isEmpty ? .null : .bool(verdicts.allSatisfy { $0.2 } && record.aborted == nil)),
      ("aborted", record.aborted.map { .string($0) } ?? .null),
      ("stopped_early", .bool(record.stoppedEarly)),
      ("calls", calls),
      ("errors", errorsJSON),
      ("verification", verificationJSON),
      ("latency", latency),
      ("latency_failed", latencyFailed),
      ("schedule_lag", record.scheduleLag.summary.json),
      ("cpu", cpuJSON),
      ("groups", groupsJSON),
      ("propagation", propagationJSON),
      ("provider_stats", record.providerStats?.json ?? .null),
      ("exit", .object([("driver", driverExit.map { .string($0) } ?? .null), ("provider", providerExit.map { .string($0) } ?? .null)])),
      ("leftover_targets", .int(record.leftoverTargets)),
      ("error_samples", .array(record.errorSamples.map { .string($0) })),
      ("timeseries", record.series.json),
    ]
    if case .cycles = plan.workload { top.insert(("cycles", .int(record.cycles)), at: 10) }
    return .object(top)
  }

  private var host: JSON {
    var u = utsname()
    uname(&u)
    let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    let machine = withUnsafeBytes(of: &u.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    return .object([
      ("cpus", .int(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))), ("kernel", .string(release)), ("machine", .string(machine)),
      ("load_avg_1m", .num(Self.loadAverage())),
      ("kubelet_root_fs", .string(kubeletRootFileSystem)),
    ])
  }

  static func loadAverage() -> Double? {
    Files.readText("/proc/loadavg")?.split(separator: " ").first.flatMap { Double($0) }
  }

  private var window: JSON {
    let steady = steadyWindow
    return .object([
      ("measure_from_s", .number(measureFromSeconds)), ("measured_end_s", .number(measuredEndSeconds)),
      ("measured_s", .number(measuredSeconds)),
      ("steady_from_s", .num(steady?.from)), ("steady_to_s", .num(steady?.to)),
      ("teardown_s", .num(record.teardownStartNs.flatMap { s in record.teardownEndNs.map { Double($0 - s) / 1e9 } })),
    ])
  }

  private var calls: JSON {
    .object(
      CallKind.allCases.map { kind in
        let k = record.kinds[kind]!
        return (kind.key, .object([("count", .int(k.calls)), ("ok", .int(k.ok)), ("errors", .dict(k.errors))]))
      })
  }

  private var errorsJSON: JSON {
    .object([
      ("total", .int(errorCount)), ("rpc", .int(errorCount - verifyErrorCount)), ("verify", .int(verifyErrorCount)),
      ("by_code", .dict(errorsByCode)),
      ("by_kind", .object(CallKind.allCases.map { ($0.key, .dict(record.kinds[$0]!.errors)) })),
    ])
  }

  private var verificationJSON: JSON {
    .object([
      ("every", .int(plan.verifyEvery)), ("publishes_ok", .int(record.publishesOK)), ("checked", .int(record.volumesChecked)),
      ("cpu_per_check_us", .num(verifyCPUPerCheckMicros)),
      ("objects", plan.expectedObjects.map { .array($0.map { .string($0.name) }) } ?? .null),
      ("content_checked", .bool(plan.expectedObjects != nil)),
    ])
  }

  private var cpuJSON: JSON {
    .object([
      ("calls_sent", .int(record.callsSent)), ("harness_s", .num(record.harnessCPUSeconds)),
      ("driver_s", .num(record.driverCPUSeconds)),
      ("harness_per_call_us", .num(cpuPerCallMicros(record.harnessCPUSeconds))),
      ("driver_per_call_us", .num(cpuPerCallMicros(record.driverCPUSeconds))),
    ])
  }

  /// Failed calls, timed apart from the successful ones.
  private var latencyFailed: JSON {
    .object(CallKind.allCases.map { kind in (kind.key, record.kinds[kind]!.failed.summary.json) })
  }

  private var latency: JSON {
    .object(
      CallKind.allCases.map { kind in
        let h = record.kinds[kind]!.total
        guard case .object(var members) = h.summary.json else { return (kind.key, .null) }
        members.append(("percentiles", .array(h.percentileDistribution.map { .array([.number($0.0), .num($0.1)]) })))
        members.append(("buckets", .array(h.logBuckets.map { .array([.number($0.0), .number($0.1), .num($0.2)]) })))
        return (kind.key, .object(members))
      })
  }

  private var groupsJSON: JSON {
    .array(
      record.groups.enumerated().map { i, g in
        .object([
          ("name", .string(groupName(i))), ("count", .int(g.spec.count)), ("at_s", .number(g.spec.atSeconds)),
          ("arrival", .string(g.spec.arrival.description)), ("arrived", .int(g.arrived)), ("live", .int(g.live)),
          ("all_live_s", .num(g.allLiveNs.map { Double($0 &- g.startNs) / 1e9 })),
          ("first_publish", g.firstPublish.summary.json),
        ])
      })
  }

  private var propagationJSON: JSON {
    guard let change = plan.change else { return .null }
    let p = record.propagation
    let s = p.perVolume.summary
    return .object([
      ("changed_at_s", .num(p.changedNs.map { Double($0 &- record.startNs) / 1e9 })),
      ("scheduled_at_s", .number(change.atSeconds)),
      ("volume_path", .string(change.volumePath)),
      ("volumes_at_change", .int(p.volumesAtChange)),
      ("complete", .bool(p.changedNs != nil && p.staleCount == 0)),
      ("all_seen_after_s", .num(p.changedNs.flatMap { c in p.staleCount == 0 ? p.allSeenNs.map { Double($0 &- c) / 1e9 } : nil })),
      ("stale_at_end", .int(p.staleCount)),
      ("removed_before_seeing", .int(p.removedStale)),
      (
        "per_volume_s",
        .object([
          ("count", .int(s.count)), ("p50", .num(s.p50Us.map { $0 / 1e6 })), ("p90", .num(s.p90Us.map { $0 / 1e6 })),
          ("p99", .num(s.p99Us.map { $0 / 1e6 })), ("max", .num(s.maxUs.map { $0 / 1e6 })),
        ])
      ),
    ])
  }

  // MARK: summary table

  var summary: String {
    var out: [String] = []
    let values = Dictionary(metrics.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
    func v(_ name: String) -> Double? { values[name] ?? nil }
    func f(_ x: Double?, _ digits: Int = 1) -> String {
      guard let x else { return "-" }
      let scale = pow(10, Double(digits))
      return JSON.format((x * scale).rounded() / scale)
    }
    out.append("== \(scenario)\(title.isEmpty ? "" : ": \(title)")")
    out.append("measured \(f(measuredSeconds)) s\(record.stoppedEarly ? " (stopped early)" : ""), driver \(driverMode), kubelet root on \(kubeletRootFileSystem), peak \(record.peakLive) volumes, \(record.podsCreated) pods created")
    func pad(_ s: String, _ w: Int, left: Bool = false) -> String {
      let fill = String(repeating: " ", count: Swift.max(0, w - s.count))
      return left ? s + fill : fill + s
    }
    out.append(
      pad("rpc", 20, left: true) + pad("calls", 8) + pad("errors", 8) + pad("calls/s", 9) + pad("p50 ms", 9)
        + pad("p90 ms", 9) + pad("p99 ms", 9) + pad("p99.9 ms", 10) + pad("max ms", 9))
    for kind in CallKind.allCases {
      let k = record.kinds[kind]!
      guard k.calls > 0 else { continue }
      let s = k.total.summary
      let rate = kind == .teardown ? "" : f(Double(k.calls) / measuredSeconds)
      out.append(
        pad(kind.label, 20, left: true) + pad(String(k.calls), 8) + pad(String(k.calls - k.ok), 8) + pad(rate, 9)
          + pad(f(s.p50Us.map { $0 / 1000 }, 3), 9) + pad(f(s.p90Us.map { $0 / 1000 }, 3), 9)
          + pad(f(s.p99Us.map { $0 / 1000 }, 3), 9) + pad(f(s.p999Us.map { $0 / 1000 }, 3), 10)
          + pad(f(s.maxUs.map { $0 / 1000 }, 3), 9))
      if !k.errors.isEmpty {
        let failed = k.failed.summary
        out.append(
          "    errors: " + k.errors.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            + " (failed calls p50 \(f(failed.p50Us.map { $0 / 1000 }, 3)) ms, max \(f(failed.maxUs.map { $0 / 1000 }, 3)) ms;"
            + " not in the columns above)")
      }
    }
    if case .cycles = plan.workload {
      out.append("cycles (publish + unpublish): \(record.cycles), \(f(v("cycles_per_s"))) per second")
    }
    var driver = "driver: RSS max \(f(v("driver.rss_max_mib"))) MiB"
    if let t = v("driver.rss_max_teardown_mib") { driver += " (teardown \(f(t)) MiB)" }
    driver += ", VmHWM \(f(v("driver.hwm_mib"))) MiB"
    driver += ", CPU avg \(f(v("driver.cpu_avg_pct")))%"
    if let w = steadyWindow {
      driver += ", steady \(f(v("driver.cpu_steady_pct"), 2))% (\(f(w.from, 0))-\(f(w.to, 0)) s)"
    }
    driver += ", max \(f(v("driver.cpu_max_pct")))% of one core"
    out.append(driver)
    if let p = record.providerStats {
      let errors = (p.mount_errors ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
      out.append(
        "provider: \(p.mount_calls ?? 0) mount calls (\(p.mount_ok ?? 0) ok\(errors.isEmpty ? "" : ", " + errors)), "
          + "\(p.version_calls ?? 0) version calls, in flight max \(p.in_flight_max ?? 0), CPU avg \(f(v("provider.cpu_avg_pct")))%")
    }
    out.append(
      "harness CPU avg \(f(v("harness.cpu_avg_pct")))% of one core; CPU per call: harness \(f(v("harness.cpu_per_call_us"))) µs, "
        + "driver \(f(v("driver.cpu_per_call_us"))) µs (\(record.callsSent) calls)")
    let lag = record.scheduleLag.summary
    out.append(
      "latency counts from each call's scheduled time; harness queueing before sending: p50 \(f(lag.p50Us.map { $0 / 1000 }, 3)) ms, "
        + "p99 \(f(lag.p99Us.map { $0 / 1000 }, 3)) ms, max \(f(lag.maxUs.map { $0 / 1000 }, 3)) ms")
    let every = plan.verifyEvery == 1 ? "every" : "1 in \(plan.verifyEvery)"
    let what = plan.expectedObjects.map { "\($0.count) objects, bytes and layout" } ?? "layout only (objects unknown)"
    out.append(
      "verified \(record.volumesChecked) of \(record.publishesOK) successful publishes (\(every); \(what)): "
        + (verifyErrorCount == 0 ? "all good" : "\(verifyErrorCount) FAILED")
        + (verifyCPUPerCheckMicros.map { ", \(f($0)) µs of harness CPU per check" } ?? ""))
    let codes = errorsByCode
    out.append(
      "errors: \(errorCount)"
        + (codes.isEmpty ? "" : " (" + codes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")"))
    for (i, g) in record.groups.enumerated() where plan.workload == .kubelet {
      let s = g.firstPublish.summary
      let ready = g.allLiveNs.map { "all mounted after \(f(Double($0 &- g.startNs) / 1e9, 2)) s" } ?? "\(g.live) of \(g.spec.count) mounted"
      out.append(
        "\(groupName(i)): \(g.spec.count) pods at \(f(g.spec.atSeconds)) s (\(g.spec.arrival)): \(ready); first publish p50 "
          + "\(f(s.p50Us.map { $0 / 1000 }, 2)) ms, p99 \(f(s.p99Us.map { $0 / 1000 }, 2)) ms")
    }
    if plan.change != nil {
      let p = record.propagation
      if let changed = p.changedNs {
        let at = Double(changed &- record.startNs) / 1e9
        if p.staleCount == 0 {
          let after = p.allSeenNs.map { Double($0 &- changed) / 1e9 } ?? 0
          out.append(
            "secret change at \(f(at)) s: every live volume showed it after \(f(after)) s "
              + "(\(p.volumesAtChange) volumes at the change; per volume p50 \(f(v("propagation.p50_s"))) s, max \(f(v("propagation.max_s"))) s)")
        } else {
          out.append(
            "secret change at \(f(at)) s: NOT everywhere by the end: \(p.staleCount) volumes still showed the old value "
              + "(\(p.perVolume.totalCount) updated, per volume p50 \(f(v("propagation.p50_s"))) s)")
        }
      } else {
        out.append("secret change: not made (the run ended first or the data file could not be written)")
      }
    }
    if record.leftoverTargets > 0 { out.append("WARNING: \(record.leftoverTargets) target directories remained after a successful unpublish") }
    if let aborted = record.aborted { out.append("ABORTED: \(aborted)") }
    if !targets.isEmpty {
      out.append("targets:")
      for (t, value, pass) in verdicts {
        out.append("  \(pass ? "PASS" : "FAIL")  \(t)   (measured \(f(value, 3)))")
      }
    }
    return out.joined(separator: "\n")
  }
}
