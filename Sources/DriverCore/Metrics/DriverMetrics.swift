import GRPCH2
public import Telemetry
import UVRuntime

/// Every metric the driver exports, in one place (docs/metrics.md describes
/// each). The first group keeps upstream v1.6's names, types and labels (it
/// exports through OpenTelemetry's Prometheus exporter, hence `_total` on
/// counters), so existing dashboards and alerts keep working; the second group
/// is ours, prefixed `secrets_store_`.
///
/// Labels never carry secret values, tokens, pod names, namespaces or paths.
/// Values that come from outside the driver are bounded: provider names (from
/// SecretProviderClasses) and provider error codes each keep their first 64
/// distinct values, later ones count as `other`; an error code that is not a
/// short identifier counts as `ProviderError`.
public final class DriverMetrics: Sendable {
  public let registry = MetricsRegistry()
  public static let osType = "linux"
  /// Buckets in seconds from 1 ms to kubelet's 2-minute deadline for a NodePublishVolume.
  public static let durationBuckets: [Double] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 90, 120,
  ]
  /// Buckets in seconds for the age of mounted content (up to a day).
  static let ageBuckets: [Double] = [30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400]

  // MARK: upstream's metrics (same names and labels)

  /// Successful NodePublishVolume calls (first mounts and republishes).
  let nodePublish: CounterFamily
  /// Failed NodePublishVolume calls, and republishes whose refresh failed (upstream counts those too).
  let nodePublishError: CounterFamily
  let nodeUnpublish: Counter
  let nodeUnpublishError: Counter
  /// Refreshes on republish; `rotated` is "true" when content changed.
  let rotationReconcile: CounterFamily
  let rotationReconcileError: CounterFamily
  let rotationReconcileDuration: Histogram
  /// Kubernetes Secrets written by sync (spec.secretObjects).
  let syncK8sSecret: CounterFamily
  let syncK8sSecretDuration: Histogram

  // MARK: ours

  let publishDuration: HistogramFamily
  let providerCalls: CounterFamily
  let providerCallDuration: HistogramFamily
  let volumes: GaugeFamily
  let volumeAge: HistogramFamily
  let volumeAgeMax: GaugeFamily
  let volumesAgeUnknown: GaugeFamily
  let buildInfo: GaugeFamily
  /// Provider gate, coalescing, backoff and staleness (their own section below).
  public let rotationGate: RotationGateMetrics

  // MARK: ours: rotation refreshes by trigger, on-demand requests
  // (kept apart from the provider-call, coalescing and backoff metrics of the rotation gate)

  /// Every refresh (republish, timer, on demand) by what started it and what it did.
  let rotationRefreshes: CounterFamily
  /// On-demand refresh requests: a class's refresh annotation changed, or its file was touched.
  let rotationOnDemandRequests: CounterFamily

  let providerNames = LabelLimiter(limit: 64)
  let providerErrorCodes = LabelLimiter(limit: 64)
  /// Last successful fetch per mounted volume (nil: adopted after a restart, not fetched yet).
  /// Keyed by target path, which never leaves this table.
  private let fetches = Locked([String: ContinuousClock.Instant?]())
  /// Providers that have answered a call at least once: readiness checks these.
  private let answered = Locked(Set<String>())
  let now: @Sendable () -> ContinuousClock.Instant

  public init(version: String = DriverVersion.current, now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) {
    self.now = now
    let r = registry
    let os = LabelValues(Self.osType)
    nodePublish = r.counter("node_publish_total", help: "Total number of node publish calls", labels: ["os_type", "provider"])
    nodePublishError = r.counter(
      "node_publish_error_total", help: "Total number of node publish calls with error", labels: ["os_type", "provider", "error_type"])
    nodeUnpublish = r.counter("node_unpublish_total", help: "Total number of node unpublish calls", labels: ["os_type"]).series(os)
    nodeUnpublishError = r.counter(
      "node_unpublish_error_total", help: "Total number of node unpublish calls with error", labels: ["os_type"]
    ).series(os)
    rotationReconcile = r.counter(
      "rotation_reconcile_total", help: "Total number of rotation reconciles", labels: ["os_type", "provider", "rotated"])
    rotationReconcileError = r.counter(
      "rotation_reconcile_error_total", help: "Total number of rotation reconciles with error",
      labels: ["os_type", "provider", "rotated", "error_type"])
    rotationReconcileDuration = r.histogram(
      "rotation_reconcile_duration_sec", help: "Distribution of how long it took to rotate secrets-store content for pods",
      labels: ["os_type"], buckets: Self.durationBuckets
    ).series(os)
    syncK8sSecret = r.counter("sync_k8s_secret_total", help: "Total number of k8s secrets synced", labels: ["os_type", "provider"])
    syncK8sSecretDuration = r.histogram(
      "k8s_secret_duration_sec", help: "Distribution of how long it took to sync k8s secret", labels: ["os_type"],
      buckets: Self.durationBuckets
    ).series(os)

    publishDuration = r.histogram(
      "secrets_store_node_publish_duration_seconds",
      help: "NodePublishVolume time by outcome: mounted, refreshed, up_to_date, refresh_failed, failed",
      labels: ["provider", "outcome"], buckets: Self.durationBuckets)
    providerCalls = r.counter(
      "secrets_store_provider_calls_total", help: "Provider plugin calls by method and gRPC status code",
      labels: ["provider", "method", "code"])
    providerCallDuration = r.histogram(
      "secrets_store_provider_call_duration_seconds", help: "Provider plugin call time by method and gRPC status code",
      labels: ["provider", "method", "code"], buckets: Self.durationBuckets)
    volumes = r.gauge("secrets_store_volumes", help: "Volumes mounted by this driver process")
    volumeAge = r.histogram(
      "secrets_store_volume_content_age_seconds",
      help: "Seconds since each mounted volume's last successful fetch from its provider, computed at scrape time",
      buckets: Self.ageBuckets)
    volumeAgeMax = r.gauge(
      "secrets_store_volume_content_age_max_seconds", help: "The largest seconds since a mounted volume's last successful fetch")
    volumesAgeUnknown = r.gauge(
      "secrets_store_volumes_content_age_unknown",
      help: "Mounted volumes adopted after a driver restart and not fetched since (their content age is unknown)")
    buildInfo = r.gauge("secrets_store_build_info", help: "The driver's version; the value is always 1", labels: ["version"])
    buildInfo.set(LabelValues(version), 1)
    rotationGate = RotationGateMetrics(registry: r)

    rotationRefreshes = r.counter(
      "secrets_store_rotation_refreshes_total",
      help: "Volume refreshes by trigger (republish, timer, on_demand) and result (changed, unchanged, failed)",
      labels: ["provider", "trigger", "result"])
    rotationOnDemandRequests = r.counter(
      "secrets_store_rotation_on_demand_requests_total",
      help: "On-demand refresh requests of a SecretProviderClass by source (annotation, file)", labels: ["source"])

    // Weak: the registry (ours) holds the collector, so a strong capture is a cycle that
    // never frees the metrics (LeakSanitizer's finding in `make test-asan`).
    r.beforeScrape { [weak self] in self?.collectVolumeAges() }
  }

  // MARK: hooks

  /// A NodePublishVolume answered success (`outcome`) for a volume of `provider`.
  func published(_ outcome: PublishOutcome, provider: String, target: String, since start: ContinuousClock.Instant) {
    let p = providerNames.admit(provider)
    let elapsed = (now() - start).seconds
    let name: String
    switch outcome {
    case .mounted:
      name = "mounted"
      nodePublish.inc(LabelValues(Self.osType, p))
      fetched(target)
    case .refreshed:
      name = "refreshed"
      nodePublish.inc(LabelValues(Self.osType, p))
      reconciled(outcome, label: p, target: target, seconds: elapsed, trigger: "republish")
    case .upToDate:
      name = "up_to_date"
      nodePublish.inc(LabelValues(Self.osType, p))
      mountedWithoutFetch(target)
    case .refreshFailed(let error):
      // The call succeeds (the old content stays), but upstream counts it as an error.
      name = "refresh_failed"
      nodePublishError.inc(LabelValues(Self.osType, p, errorType(error)))
      reconciled(outcome, label: p, target: target, seconds: elapsed, trigger: "republish")
    }
    publishDuration.observe(LabelValues(p, name), elapsed)
  }

  /// The rotation scheduler refreshed a volume, due (`timer`) or asked for (`on_demand`);
  /// no NodePublishVolume involved.
  func rotationReconciled(
    _ outcome: PublishOutcome, provider: String, target: String, since start: ContinuousClock.Instant, trigger: String = "timer"
  ) {
    reconciled(outcome, label: providerNames.admit(provider), target: target, seconds: (now() - start).seconds, trigger: trigger)
  }

  /// A refresh, on republish, by the timer or on demand: upstream's rotation series and the content age.
  private func reconciled(_ outcome: PublishOutcome, label p: String, target: String, seconds: Double, trigger: String) {
    refreshCounted(outcome, label: p, trigger: trigger)
    switch outcome {
    case .refreshed(let changed):
      rotationReconcile.inc(LabelValues(Self.osType, p, changed ? "true" : "false"))
      rotationReconcileDuration.observe(seconds)
      fetched(target)
    case .refreshFailed(let error):
      rotationReconcileError.inc(LabelValues(Self.osType, p, "false", errorType(error)))
      mountedWithoutFetch(target)
    case .mounted, .upToDate:
      break
    }
  }

  // MARK: hooks: rotation refreshes by trigger, on-demand requests

  private func refreshCounted(_ outcome: PublishOutcome, label p: String, trigger: String) {
    let result: String
    switch outcome {
    case .refreshed(let changed): result = changed ? "changed" : "unchanged"
    case .refreshFailed: result = "failed"
    case .mounted, .upToDate: return
    }
    rotationRefreshes.inc(LabelValues(p, trigger, result))
  }

  /// A class asked for an on-demand refresh; `source` is `annotation` or `file`.
  public func onDemandRefreshRequested(source: String) {
    rotationOnDemandRequests.inc(LabelValues(source))
  }

  /// A NodePublishVolume failed. `provider` is "" when the class was never resolved.
  func publishFailed(_ error: PublishError, provider: String, since start: ContinuousClock.Instant) {
    let p = providerNames.admit(provider)
    nodePublishError.inc(LabelValues(Self.osType, p, errorType(error)))
    publishDuration.observe(LabelValues(p, "failed"), (now() - start).seconds)
  }

  func unpublished(target: String) {
    nodeUnpublish.inc()
    fetches.withLock { $0[target] = nil }
    rotationGate.gone(target: target)
  }

  func unpublishFailed() {
    nodeUnpublishError.inc()
  }

  /// Secrets written by sync for a volume of `provider`, and how long the sync took.
  public func secretsSynced(_ count: Int, provider: String, since start: ContinuousClock.Instant) {
    if count > 0 { syncK8sSecret.inc(LabelValues(Self.osType, providerNames.admit(provider)), by: Double(count)) }
    syncK8sSecretDuration.observe((now() - start).seconds)
  }

  /// The handle a provider connection records its calls with.
  func providerCalls(for provider: String) -> ProviderCallMetrics {
    ProviderCallMetrics(metrics: self, provider: provider, label: providerNames.admit(provider))
  }

  fileprivate func providerCall(_ m: ProviderCallMetrics, method: String, code: String, seconds: Double) {
    let labels = LabelValues(m.label, method, code)
    providerCalls.inc(labels)
    providerCallDuration.observe(labels, seconds)
    if code == "OK" { answered.withLock { _ = $0.insert(m.provider) } }
  }

  /// Providers that have answered at least one call; readiness asks each for its Version.
  public var providersThatAnswered: [String] { answered.withLock { $0.sorted() } }

  /// The upstream `error_type` of a failure, bounded.
  func errorType(_ error: PublishError) -> String {
    guard case .providerError(let code) = error.kind else { return error.errorType }
    let simple = !code.isEmpty && code.utf8.count <= 64
      && code.utf8.allSatisfy { c in
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2D || c == 0x2E
      }
    return simple ? providerErrorCodes.admit(code) : "ProviderError"
  }

  // MARK: volume table

  private func fetched(_ target: String) {
    let t = now()
    fetches.withLock { $0[target] = t }
  }

  private func mountedWithoutFetch(_ target: String) {
    fetches.withLock { all in
      if all[target] == nil { all[target] = .some(nil) }
    }
  }

  private func collectVolumeAges() {
    let t = now()
    let (count, ages, unknown) = fetches.withLock { all -> (Int, [Double], Int) in
      var ages: [Double] = []
      ages.reserveCapacity(all.count)
      var unknown = 0
      for last in all.values {
        if let last { ages.append(max(0, (t - last).seconds)) } else { unknown += 1 }
      }
      return (all.count, ages, unknown)
    }
    volumes.set(Double(count))
    volumesAgeUnknown.set(Double(unknown))
    volumeAgeMax.set(ages.max() ?? 0)
    volumeAge.reset()
    for age in ages { volumeAge.observe(age) }
  }
}

/// Pre-resolved labels for one provider's calls: recording a call costs no lookup of the provider label.
public struct ProviderCallMetrics: Sendable {
  fileprivate let metrics: DriverMetrics
  fileprivate let provider: String
  fileprivate let label: String

  /// One call (after its retries) ended with `code` (`OK` on success).
  func record(method: String, code: String, since start: ContinuousClock.Instant) {
    metrics.providerCall(self, method: method, code: code, seconds: (metrics.now() - start).seconds)
  }

  func record(method: String, error: ProviderCallError, since start: ContinuousClock.Instant) {
    let code: String =
      switch error.kind {
      case .unreachable: "UNAVAILABLE"
      case .deadlineExceeded: "DEADLINE_EXCEEDED"
      case .status(let c): c.canonicalName
      // As grpc-go names a response it cannot unmarshal.
      case .badResponse: "INTERNAL"
      }
    record(method: method, code: code, since: start)
  }
}

// MARK: - Provider gate, coalescing, backoff, staleness

/// Metrics of the provider gate (`--provider-max-concurrency`, `--provider-qps`), of
/// coalesced refreshes (`--rotation-coalesce-window`), of backoff and of volumes that
/// keep stale content because their refreshes fail. Kept apart from the upstream and
/// content-age metrics above.
public final class RotationGateMetrics: Sendable {
  /// Mount calls that passed the gate (calls made), by priority.
  let mountCalls: CounterFamily
  /// Mount calls that had to wait at the gate, by priority.
  let gateWaits: CounterFamily
  /// Mount calls whose deadline ran out while they waited at the gate.
  let gateTimeouts: CounterFamily
  /// Refreshes answered with another volume's provider call: calls saved.
  let coalesced: CounterFamily
  let volumesInBackoff: GaugeFamily
  let volumesStale: GaugeFamily
  /// Volumes whose last refresh failed (they keep their last good content). Keyed by
  /// target path, which never leaves this table.
  private let stale = Locked(Set<String>())

  init(registry r: MetricsRegistry) {
    mountCalls = r.counter(
      "secrets_store_provider_mount_calls_total",
      help: "Mount calls sent to providers, by priority: first_mount (a pod waiting to start) or refresh", labels: ["provider", "priority"])
    gateWaits = r.counter(
      "secrets_store_provider_gate_waits_total",
      help: "Mount calls that waited for the provider's limits (--provider-max-concurrency, --provider-qps), by priority",
      labels: ["provider", "priority"])
    gateTimeouts = r.counter(
      "secrets_store_provider_gate_timeouts_total",
      help: "Mount calls whose deadline ran out while waiting for the provider's limits, by priority", labels: ["provider", "priority"])
    coalesced = r.counter(
      "secrets_store_rotation_coalesced_total",
      help: "Refreshes served by another volume's identical provider call (provider calls saved by --rotation-coalesce-window)",
      labels: ["provider"])
    volumesInBackoff = r.gauge(
      "secrets_store_rotation_volumes_in_backoff", help: "Mounted volumes whose class and identity are backing off after failed refreshes")
    volumesStale = r.gauge(
      "secrets_store_rotation_volumes_stale",
      help: "Mounted volumes whose last refresh failed; they keep their last good content (see secrets_store_volume_content_age_max_seconds)")
    // Weak, as in DriverMetrics: the registry outlives neither, and a strong capture is a cycle.
    r.beforeScrape { [weak self] in
      guard let self else { return }
      volumesStale.set(Double(stale.withLock { $0.count }))
    }
  }

  static func label(_ priority: ProviderGate.Priority) -> String {
    switch priority {
    case .firstMount: "first_mount"
    case .refresh: "refresh"
    }
  }

  func refreshFailed(target: String) { stale.withLock { _ = $0.insert(target) } }
  func fetched(target: String) { stale.withLock { _ = $0.remove(target) } }
  func gone(target: String) { stale.withLock { _ = $0.remove(target) } }
  func setVolumesInBackoff(_ n: Int) { volumesInBackoff.set(Double(n)) }
  func coalesced(provider: String, admit: LabelLimiter) { coalesced.inc(LabelValues(admit.admit(provider))) }
  public var staleCount: Int { stale.withLock { $0.count } }
}

extension ProviderCallMetrics {
  /// A Mount call passed the gate (`waited`: after queueing).
  func gated(_ priority: ProviderGate.Priority, waited: Bool) {
    let labels = LabelValues(label, RotationGateMetrics.label(priority))
    metrics.rotationGate.mountCalls.inc(labels)
    if waited { metrics.rotationGate.gateWaits.inc(labels) }
  }

  func gateTimedOut(_ priority: ProviderGate.Priority) {
    let labels = LabelValues(label, RotationGateMetrics.label(priority))
    metrics.rotationGate.gateWaits.inc(labels)
    metrics.rotationGate.gateTimeouts.inc(labels)
  }
}

extension DriverMetrics {
  /// A refresh was answered by another volume's call.
  func coalescedRefresh(provider: String) { rotationGate.coalesced(provider: provider, admit: providerNames) }
}
