import KubeClient
public import Logging
public import UVRuntime

/// Refreshes every mounted volume on time, whether or not kubelet republishes it: one
/// `RotationPlan` (a heap of due times) and one libuv timer for all volumes, on the
/// driver's loop. A volume that is due refreshes itself through its `VolumeActor` (the
/// same serialized refresh path a republish takes), with the most recent pod tokens
/// kubelet gave it while they are valid; after that it waits for the next republish.
/// Failures back off per class and identity; calls go through the provider's gate,
/// behind any first mount.
///
/// On demand (`refreshClass`): every volume of one SecretProviderClass refreshes at once,
/// due or not, through the same path (a user asked, by annotating the class or touching
/// its file). A volume already refreshing refreshes once more after, so that no answer
/// fetched before the request counts as the answer to it.
public actor RotationScheduler {
  /// Why a volume refreshes (the metrics' `trigger` label).
  public enum Trigger: String, Sendable {
    /// It was due (last successful fetch + interval).
    case timer
    /// Its class asked for a refresh (annotation or class file).
    case onDemand = "on_demand"
  }

  nonisolated let loop: EventLoop
  public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
  let logger: Logger
  private var plan: RotationPlan
  private var timer: UVTimer?
  private var armedFor: Duration?
  private var refresh: (@Sendable (String, Trigger) async -> Bool)?
  private var running: [String: Task<Void, Never>] = [:]
  /// Volumes asked for an on-demand refresh while one was running: they go again after.
  private var again: Set<String> = []
  private var stopped = false
  /// Refreshes started by the timer (a counter for metrics and tests).
  public private(set) var timerRefreshes = 0
  let metrics: DriverMetrics?
  public nonisolated let settings: RotationPlan.Settings
  /// Until when each backing-off key waits (monotonic), readable without a hop to this
  /// actor: a republish checks it before calling the provider.
  private nonisolated let backoffView = Locked([String: Duration]())
  /// Refreshes started on demand, and the class requests that started them.
  public private(set) var onDemandRefreshes = 0
  public private(set) var classRequests = 0

  public init(settings: RotationPlan.Settings, loop: EventLoop, logger: Logger, metrics: DriverMetrics? = nil) {
    self.plan = RotationPlan(settings: settings)
    self.settings = settings
    self.loop = loop
    self.logger = logger
    self.metrics = metrics
  }

  /// Whether refreshes of this class and identity are backing off now.
  public nonisolated func isBackingOff(key: String) -> Bool {
    guard let until = backoffView.withLock({ $0[key] }) else { return false }
    return until > KubeClient.monotonicNow()
  }

  /// The key refreshes back off by: the class and the identity (namespace, service account).
  public static func backoffKey(namespace: String, serviceAccount: String, className: String) -> String {
    "\(namespace)/\(serviceAccount)/\(className)"
  }

  /// How a volume is refreshed: by target path and why; answers whether it succeeded.
  public func start(refresh: @escaping @Sendable (String, Trigger) async -> Bool) {
    self.refresh = refresh
  }

  /// Asks for an on-demand refresh of every volume of a class, without waiting
  /// (for the class sources' change handlers).
  public nonisolated func requestClassRefresh(namespace: String, name: String) {
    Task { await self.refreshClass(namespace: namespace, name: name) }
  }

  /// Refreshes every tracked volume of the class now, due or not, and answers how many
  /// it started (or queued behind a refresh in flight). Volumes whose tokens have
  /// expired are skipped: they refresh at kubelet's next republish, which brings new ones.
  /// The provider gate still applies (refresh priority, behind first mounts).
  @discardableResult
  public func refreshClass(namespace: String, name: String) -> Int {
    guard !stopped, refresh != nil else { return 0 }
    classRequests += 1
    let now = KubeClient.monotonicNow()
    var count = 0
    for volume in plan.volumes(ofClass: RotationPlan.Volume.classKey(namespace: namespace, name: name)) {
      if let expiry = volume.tokensExpire, expiry <= now { continue }
      count += 1
      if running[volume.target] != nil {
        again.insert(volume.target)
      } else {
        launch(volume, trigger: .onDemand)
      }
    }
    if count > 0 {
      logger.info("on-demand refresh", metadata: ["class": "\(namespace)/\(name)", "volumes": "\(count)"])
    }
    return count
  }

  private enum Event {
    case fetched(RotationPlan.Volume)
    case failed(RotationPlan.Volume)
    case gone
  }

  /// The latest news per target, handed over from the volumes' actors. Tasks that carry
  /// it may run in any order; only the latest per target counts, so an unpublish right
  /// after a refresh always ends with the volume out of the plan.
  private nonisolated let inbox = Locked<[String: Event]>([:])

  /// A volume fetched successfully (first mount, refresh): it is due again later.
  public nonisolated func noteFetched(_ volume: RotationPlan.Volume) {
    inbox.withLock { $0[volume.target] = .fetched(volume) }
    Task { await self.drainInbox() }
  }

  /// A refresh of a volume failed (by the timer or on a republish): its key backs off
  /// and the volume retries when the backoff ends. The backoff is visible at once to
  /// `isBackingOff`, before the plan hears of it.
  public nonisolated func noteFailed(_ volume: RotationPlan.Volume) {
    backoffView.withLock { view in
      if (view[volume.backoffKey] ?? .zero) < KubeClient.monotonicNow() + settings.backoffBase {
        view[volume.backoffKey] = KubeClient.monotonicNow() + settings.backoffBase
      }
    }
    inbox.withLock { $0[volume.target] = .failed(volume) }
    Task { await self.drainInbox() }
  }

  /// A volume was unpublished.
  public nonisolated func noteGone(target: String) {
    inbox.withLock { $0[target] = .gone }
    Task { await self.drainInbox() }
  }

  private func drainInbox() {
    let events = inbox.withLock { inbox -> [String: Event] in
      defer { inbox = [:] }
      return inbox
    }
    for (target, event) in events {
      switch event {
      case .fetched(let volume): fetched(volume)
      case .failed(let volume): failed(volume)
      case .gone: gone(target: target)
      }
    }
  }

  /// A volume fetched successfully (first mount, refresh, adoption).
  public func fetched(_ volume: RotationPlan.Volume) {
    guard !stopped else { return }
    plan.succeeded(backoffKey: volume.backoffKey)
    plan.upsert(volume)
    publishBackoff(volume.backoffKey)
    rearm()
  }

  /// A refresh of this volume failed.
  public func failed(_ volume: RotationPlan.Volume) {
    guard !stopped else { return }
    plan.failed(volume, now: KubeClient.monotonicNow())
    publishBackoff(volume.backoffKey)
    rearm()
  }

  public func gone(target: String) {
    plan.remove(target: target)
    running[target]?.cancel()
    running[target] = nil
    metrics?.rotationGate.setVolumesInBackoff(plan.volumesInBackoff)
    again.remove(target)
    rearm()
  }

  /// Until when `key` backs off, for `isBackingOff`; and the gauge of volumes in backoff.
  private func publishBackoff(_ key: String) {
    let until = plan.backoffUntil(key: key, now: KubeClient.monotonicNow())
    backoffView.withLock { $0[key] = until }
    metrics?.rotationGate.setVolumesInBackoff(plan.volumesInBackoff)
  }

  /// How many failures this key has had since its last success (tests, metrics).
  public func backoffFailures(key: String) -> Int { plan.backoffFailures(key: key) }

  /// Volumes whose tokens had expired when they came due (they refresh at the next republish).
  public var waitingForRepublish: Set<String> { plan.waitingForRepublish }
  public var tracked: Int { plan.count }

  /// Stops the timer and every refresh it started (shutdown).
  public func stop() async {
    stopped = true
    timer?.close()
    timer = nil
    let tasks = running.values
    running = [:]
    again = []
    for t in tasks { t.cancel() }
    for t in tasks { await t.value }
  }

  private func rearm() {
    guard !stopped else { return }
    guard let next = plan.nextDue() else {
      timer?.stop()
      armedFor = nil
      return
    }
    if armedFor == next { return }
    let now = KubeClient.monotonicNow()
    let wait = next > now ? next - now : .zero
    if timer == nil { timer = UVTimer(on: loop) }
    armedFor = next
    timer!.start(timeoutMs: wait.timerMilliseconds) { [self] in
      Task { self.fire() }
    }
  }

  private func fire() {
    armedFor = nil
    guard !stopped, refresh != nil else { return }
    let due = plan.takeDue(now: KubeClient.monotonicNow())
    for volume in due where running[volume.target] == nil {
      launch(volume, trigger: .timer)
    }
    rearm()
  }

  private func launch(_ volume: RotationPlan.Volume, trigger: Trigger) {
    guard let refresh else { return }
    switch trigger {
    case .timer: timerRefreshes += 1
    case .onDemand: onDemandRefreshes += 1
    }
    running[volume.target] = Task { [self] in
      let ok = await refresh(volume.target, trigger)
      self.finished(volume, ok: ok)
    }
  }

  private func finished(_ volume: RotationPlan.Volume, ok: Bool) {
    running[volume.target] = nil
    // A refresh reports itself: `fetched` on success, `noteFailed` on failure. One that
    // found nothing to refresh (unmounted meanwhile) has left the plan.
    if again.remove(volume.target) != nil, ok, !stopped { launch(volume, trigger: .onDemand) }
  }
}
