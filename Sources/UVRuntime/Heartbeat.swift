import CUV

/// A loop's pulse: a repeating timer that notes when it fires and how late.
/// Readable from any thread, so a stalled loop shows from outside it (the
/// latest beat grows old) and, once it recovers, to code on the loop (the late
/// beat is remembered: libuv runs due timers before it polls for the I/O that
/// brings the next request, so a request that waited out a stall sees it).
public final class LoopHeartbeat: Sendable {
  /// What the beats have shown so far, on `uv_hrtime`'s clock (nanoseconds).
  public struct Reading: Sendable, Equatable {
    /// When the latest beat fired (or the heartbeat started).
    public var lastBeatNs: UInt64
    /// The latest beat that came more than `stallAfter` late: when it fired
    /// (the end of the stall) and how late it was (the stall's length).
    public var lastStall: (endNs: UInt64, lengthNs: UInt64)?

    public init(lastBeatNs: UInt64, lastStall: (endNs: UInt64, lengthNs: UInt64)? = nil) {
      self.lastBeatNs = lastBeatNs
      self.lastStall = lastStall
    }

    public static func == (a: Reading, b: Reading) -> Bool {
      a.lastBeatNs == b.lastBeatNs && a.lastStall?.endNs == b.lastStall?.endNs && a.lastStall?.lengthNs == b.lastStall?.lengthNs
    }

    /// How long the loop has been stalled at `nowNs`, or was in a stall that
    /// ended less than `recovery` ago; nil when it is healthy.
    public func stall(nowNs: UInt64, interval: Duration, stallAfter: Duration, recovery: Duration) -> Duration? {
      let sinceBeat = nowNs &- lastBeatNs
      if nowNs > lastBeatNs, sinceBeat > (interval + stallAfter).nanoseconds {
        return .nanoseconds(sinceBeat &- interval.nanoseconds)
      }
      if let stall = lastStall, nowNs &- stall.endNs < recovery.nanoseconds || nowNs < stall.endNs {
        return .nanoseconds(stall.lengthNs)
      }
      return nil
    }
  }

  public let loop: EventLoop
  /// Time between beats.
  public let interval: Duration
  /// A beat later than this marks a stall.
  public let stallAfter: Duration
  private let state: Locked<Reading>
  private let timer = Locked<UVTimer?>(nil)
  private let onStall: (@Sendable (Duration) -> Void)?

  /// Starts beating. Loop thread only; `stop()` closes the timer. `onStall`
  /// runs on the loop with the length of each stall, once it is over.
  public init(
    on loop: EventLoop, interval: Duration = .milliseconds(250), stallAfter: Duration = .seconds(1),
    onStall: (@Sendable (Duration) -> Void)? = nil
  ) {
    loop.preconditionInLoop()
    self.loop = loop
    self.interval = interval
    self.stallAfter = stallAfter
    self.onStall = onStall
    state = Locked(Reading(lastBeatNs: uv_hrtime()))
    let timer = UVTimer(on: loop)
    self.timer.withLock { $0 = timer }
    let ms = max(1, interval.timerMilliseconds)
    timer.start(timeoutMs: ms, repeatMs: ms) { [weak self] in self?.beat() }
  }

  private func beat() {
    let now = uv_hrtime()
    let intervalNs = interval.nanoseconds
    let stallAfterNs = stallAfter.nanoseconds
    let stalled = state.withLock { reading -> UInt64? in
      let previous = reading.lastBeatNs
      reading.lastBeatNs = now
      guard now > previous, now - previous > intervalNs, now - previous - intervalNs > stallAfterNs else { return nil }
      let late = now - previous
      reading.lastStall = (now, late - intervalNs)
      return late - intervalNs
    }
    if let stalled { onStall?(.nanoseconds(stalled)) }
  }

  /// What the beats have shown so far. Any thread.
  public var reading: Reading { state.withLock { $0 } }

  /// The loop's stall now (see `Reading.stall`), nil when healthy. Any thread.
  public func stall(recovery: Duration) -> Duration? {
    reading.stall(nowNs: uv_hrtime(), interval: interval, stallAfter: stallAfter, recovery: recovery)
  }

  /// Stops beating and closes the timer; idempotent. Loop thread only.
  public func stop() {
    loop.preconditionInLoop()
    let timer = self.timer.withLock { t -> UVTimer? in
      defer { t = nil }
      return t
    }
    timer?.close()
  }
}

extension Duration {
  /// Whole nanoseconds; negative is 0.
  var nanoseconds: UInt64 {
    let (seconds, attoseconds) = components
    guard seconds >= 0 else { return 0 }
    return UInt64(seconds) &* 1_000_000_000 &+ UInt64(max(0, attoseconds) / 1_000_000_000)
  }
}
