public import UVRuntime

/// Whether the driver can serve, for the Identity service's Probe: not once a
/// graceful shutdown has begun, and not while its event loop is stalled or
/// shortly after a stall.
///
/// A Probe runs on the loop it reports on, so while the loop is stuck the
/// probe itself waits, and the caller's timeout is what says "not ready"
/// (the livenessprobe sidecar's `--probe-timeout`). Once the loop moves again,
/// the heartbeat remembers the stall, and for `recovery` the Probe answers
/// not ready instead of pretending nothing happened. Read from another thread
/// (a future loop, a watchdog), `notReady` also shows a stall in progress.
public final class Readiness: Sendable {
  public enum NotReady: Sendable, Equatable, CustomStringConvertible {
    case shuttingDown
    /// The loop is stalled, or was until less than `recovery` ago, for this long.
    case loopStalled(Duration)
    /// Something the driver needs before it can serve is not there yet.
    case waitingFor(String)

    public var description: String {
      switch self {
      case .shuttingDown: "shutting down"
      case .loopStalled(let length): "event loop stalled for \(length)"
      case .waitingFor(let what): "waiting for: \(what)"
      }
    }
  }

  /// How long after a stall the driver still reports not ready.
  public let recovery: Duration
  private let state = Locked<(shuttingDown: Bool, heartbeats: [LoopHeartbeat])>((false, []))
  private let conditions = Locked<[(name: String, met: @Sendable () -> Bool)]>([])

  /// Not ready until `met` says so (e.g. the SecretProviderClass cache has synced).
  public func require(_ name: String, _ met: @escaping @Sendable () -> Bool) {
    conditions.withLock { $0.append((name, met)) }
  }

  public init(recovery: Duration = .seconds(5)) {
    self.recovery = recovery
  }

  /// From now on, this loop's health counts too (one heartbeat per loop).
  public func watch(_ heartbeat: LoopHeartbeat) {
    state.withLock { $0.heartbeats.append(heartbeat) }
  }

  /// A graceful shutdown has begun: never ready again.
  public func beginShutdown() {
    state.withLock { $0.shuttingDown = true }
  }

  /// Why the driver cannot serve now; nil when it can. Any thread.
  public var notReady: NotReady? {
    let (shuttingDown, heartbeats) = state.withLock { ($0.shuttingDown, $0.heartbeats) }
    if shuttingDown { return .shuttingDown }
    for heartbeat in heartbeats {
      if let stall = heartbeat.stall(recovery: recovery) { return .loopStalled(stall) }
    }
    for condition in conditions.withLock({ $0 }) where !condition.met() { return .waitingFor(condition.name) }
    return nil
  }
}

/// How the driver watches its loop (see `LoopHeartbeat`, `Readiness`).
public struct LoopHealthSettings: Sendable, Hashable {
  /// Time between heartbeats.
  public var interval: Duration
  /// A heartbeat this much later than due marks a stall.
  public var stallAfter: Duration
  /// Not ready for this long after a stall.
  public var recovery: Duration

  /// A loop that serves hundreds of volumes and answers in microseconds has
  /// no business being 2 s late; below that, load spikes on a shared node
  /// would make the Probe flap.
  public init(interval: Duration = .milliseconds(250), stallAfter: Duration = .seconds(2), recovery: Duration = .seconds(5)) {
    self.interval = interval
    self.stallAfter = stallAfter
    self.recovery = recovery
  }
}
