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
public actor RotationScheduler {
  nonisolated let loop: EventLoop
  public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
  let logger: Logger
  private var plan: RotationPlan
  private var timer: UVTimer?
  private var armedFor: Duration?
  private var refresh: (@Sendable (String) async -> Bool)?
  private var running: [String: Task<Void, Never>] = [:]
  private var stopped = false
  /// Refreshes started by the timer (a counter for metrics and tests).
  public private(set) var timerRefreshes = 0

  public init(settings: RotationPlan.Settings, loop: EventLoop, logger: Logger) {
    self.plan = RotationPlan(settings: settings)
    self.loop = loop
    self.logger = logger
  }

  /// How a due volume is refreshed: by target path; answers whether it succeeded.
  public func start(refresh: @escaping @Sendable (String) async -> Bool) {
    self.refresh = refresh
  }

  /// A volume fetched successfully (first mount, refresh, adoption).
  public func fetched(_ volume: RotationPlan.Volume) {
    guard !stopped else { return }
    plan.succeeded(backoffKey: volume.backoffKey)
    plan.upsert(volume)
    rearm()
  }

  /// A timer-driven refresh of this volume failed.
  public func failed(_ volume: RotationPlan.Volume) {
    guard !stopped else { return }
    plan.failed(volume, now: KubeClient.monotonicNow())
    rearm()
  }

  public func gone(target: String) {
    plan.remove(target: target)
    running[target]?.cancel()
    running[target] = nil
    rearm()
  }

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
    guard !stopped, let refresh else { return }
    let due = plan.takeDue(now: KubeClient.monotonicNow())
    for volume in due where running[volume.target] == nil {
      timerRefreshes += 1
      running[volume.target] = Task { [self] in
        let ok = await refresh(volume.target)
        self.finished(volume, ok: ok)
      }
    }
    rearm()
  }

  private func finished(_ volume: RotationPlan.Volume, ok: Bool) {
    running[volume.target] = nil
    // A success reports itself through `fetched`; a failure backs off here.
    if !ok { failed(volume) }
  }
}
