public import KubeClient
public import UVRuntime

/// Bounds the calls the driver makes to one provider (`--provider-max-concurrency`,
/// `--provider-qps`/`--provider-burst`), and orders the waiting ones: a first mount
/// (a pod waiting to start) always goes ahead of every refresh, whatever arrived first.
/// Within a priority, calls go in arrival order.
///
/// The token bucket paces refreshes (the driver's own traffic): a refresh takes a token
/// only while more than ``Limits/refreshReserve`` tokens (half the burst) stay in the
/// bucket afterwards. First mounts (kubelet's traffic, a pod waiting) are bounded only by
/// the concurrency limit: they spend a token when one is there, so refreshes slow down
/// while pods start, but never wait for one (docs/rotation-and-sync.md, "Provider gate").
///
/// One gate per provider, shared by every event loop: its state is behind a lock, so
/// a call that passes at once (a free slot and a token, nobody queued ahead of it)
/// takes the lock once to acquire and once to release and never leaves its loop.
/// A call that must wait parks its continuation in the queue; whoever frees a slot
/// or a pacing timer resumes it, and it continues on its own executor (its provider
/// connection's loop). Continuations are resumed outside the lock. Timers (the
/// pacing one, and each waiter's budget) run on the gate's `loop`.
public final class ProviderGate: Sendable {
  public enum Priority: Sendable {
    case firstMount
    case refresh
  }

  public struct Limits: Sendable, Hashable {
    /// Calls in flight at once (0: unbounded).
    public var concurrency: Int
    /// Calls started per second, with a burst (nil: unbounded).
    public var ratePerSecond: Double?
    public var burst: Int
    public init(concurrency: Int = 0, ratePerSecond: Double? = nil, burst: Int = 1) {
      self.concurrency = concurrency
      self.ratePerSecond = ratePerSecond
      self.burst = burst
    }

    /// Tokens refreshes leave in the bucket for first mounts: half the burst
    /// (rounded down; zero with a burst of one).
    public var refreshReserve: Int { max(1, burst) / 2 }
  }

  private struct Waiter {
    var id: Int
    var continuation: CheckedContinuation<Void, any Error>
    /// Ends the wait with ``TimedOut`` when the call's budget runs out first.
    var timer: Task<Void, Never>?
  }

  /// The call's budget ran out while it waited for a slot or a token.
  public struct TimedOut: Error, Sendable, CustomStringConvertible {
    public var waited: Duration
    public var description: String { "waited \(waited) for the provider's call limit" }
  }

  private struct State {
    var inFlight = 0
    var firstMounts: [Waiter] = []
    var refreshes: [Waiter] = []
    var nextID = 0
    var bucket: TokenBucket?
    var pacer: Task<Void, Never>?
    var waited: (firstMounts: Int, refreshes: Int) = (0, 0)
  }

  /// What to do once the lock is let go.
  private struct Wakeups {
    var resume: [CheckedContinuation<Void, any Error>] = []
    var fail: [(CheckedContinuation<Void, any Error>, any Error)] = []
    var cancel: [Task<Void, Never>] = []
    func run() {
      for t in cancel { t.cancel() }
      for c in resume { c.resume() }
      for (c, e) in fail { c.resume(throwing: e) }
    }
  }

  public let limits: Limits
  /// Where the gate's timers run.
  public let loop: EventLoop
  private let now: @Sendable () -> Duration
  private let state: Locked<State>

  /// `now` is the monotonic clock the token bucket refills by (tests pass a manual one).
  public init(limits: Limits, loop: EventLoop, now: @escaping @Sendable () -> Duration = { KubeClient.monotonicNow() }) {
    self.limits = limits
    self.loop = loop
    self.now = now
    var s = State()
    if let rate = limits.ratePerSecond {
      s.bucket = TokenBucket(ratePerSecond: rate, burst: max(1, limits.burst), now: now())
    }
    state = Locked(s)
  }

  public var queued: (firstMounts: Int, refreshes: Int) { state.withLock { ($0.firstMounts.count, $0.refreshes.count) } }
  /// Calls that had to wait for a slot or a token, by priority (metrics and tests).
  public var waited: (firstMounts: Int, refreshes: Int) { state.withLock { $0.waited } }
  /// Tokens in the bucket now (nil: no rate limit).
  public var tokens: Double? {
    let t = now()
    return state.withLock { s in
      guard var b = s.bucket else { return nil }
      defer { s.bucket = b }
      return b.available(now: t)
    }
  }

  /// Runs `body` once the gate lets this call through.
  public func withPermit<T: Sendable>(
    _ priority: Priority, timeout: Duration? = nil, _ body: () async throws -> T
  ) async throws -> T {
    try await acquire(priority, timeout: timeout)
    defer { release() }
    return try await body()
  }

  /// Takes a permit now if one is free for `priority` without waiting; answers whether it did.
  public func tryAcquire(_ priority: Priority) -> Bool {
    let t = now()
    var wake = Wakeups()
    let got = state.withLock { s in passesAtOnce(priority, &s, t, &wake) }
    wake.run()
    return got
  }

  /// Waits for a permit; with a `timeout`, throws ``TimedOut`` once it has waited that
  /// long (the wait counts against the call's deadline), and `CancellationError` when
  /// the task is cancelled. Every permit is given back with `release()`.
  /// Answers whether the call had to wait.
  @discardableResult
  public func acquire(_ priority: Priority, timeout: Duration? = nil) async throws -> Bool {
    if tryAcquire(priority) { return false }
    let id = state.withLock { s in
      switch priority {
      case .firstMount: s.waited.firstMounts += 1
      case .refresh: s.waited.refreshes += 1
      }
      s.nextID += 1
      return s.nextID
    }
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
        var waiter = Waiter(id: id, continuation: c)
        if let timeout {
          let started = ContinuousClock.now
          waiter.timer = Task(executorPreference: loop) { [loop] in
            do { try await loop.sleep(milliseconds: max(1, timeout.timerMilliseconds)) } catch { return }
            self.expire(id, error: TimedOut(waited: ContinuousClock.now - started))
          }
        }
        let t = now()
        var wake = Wakeups()
        state.withLock { s in
          // Cancelled before it queued: the cancellation handler found nothing to remove.
          if Task.isCancelled {
            wake.fail.append((c, CancellationError()))
            if let timer = waiter.timer { wake.cancel.append(timer) }
            return
          }
          switch priority {
          case .firstMount: s.firstMounts.append(waiter)
          case .refresh: s.refreshes.append(waiter)
          }
          dispatch(&s, t, &wake)
        }
        wake.run()
      }
    } onCancel: {
      self.expire(id, error: CancellationError())
    }
    return true
  }

  public func release() {
    let t = now()
    var wake = Wakeups()
    state.withLock { s in
      s.inFlight -= 1
      dispatch(&s, t, &wake)
    }
    wake.run()
  }

  /// Ends a wait that is still queued (cancelled or timed out); a waiter already let
  /// through holds its permit and is left alone.
  private func expire(_ id: Int, error: any Error) {
    var wake = Wakeups()
    state.withLock { s in
      var removed: Waiter?
      if let i = s.firstMounts.firstIndex(where: { $0.id == id }) {
        removed = s.firstMounts.remove(at: i)
      } else if let i = s.refreshes.firstIndex(where: { $0.id == id }) {
        removed = s.refreshes.remove(at: i)
      }
      if let removed {
        if let timer = removed.timer { wake.cancel.append(timer) }
        wake.fail.append((removed.continuation, error))
      }
      if s.firstMounts.isEmpty && s.refreshes.isEmpty, let pacer = s.pacer {
        // Nobody left to pace for: stop the timer rather than leave it on the loop.
        wake.cancel.append(pacer)
        s.pacer = nil
      }
    }
    wake.run()
  }

  /// A call that nobody of its priority (or above) waits ahead of, with a slot and a
  /// token for it, passes without queueing. A first mount does not wait behind queued
  /// refreshes: they are behind it in any case.
  private func passesAtOnce(_ priority: Priority, _ s: inout State, _ t: Duration, _ wake: inout Wakeups) -> Bool {
    let ahead = priority == .firstMount ? !s.firstMounts.isEmpty : !(s.firstMounts.isEmpty && s.refreshes.isEmpty)
    guard !ahead, hasSlot(s), takeToken(priority, &s, t, pacing: false) else { return false }
    s.inFlight += 1
    return true
  }

  private func hasSlot(_ s: State) -> Bool { limits.concurrency <= 0 || s.inFlight < limits.concurrency }

  /// A token for `priority`: a refresh leaves the reserve in the bucket. Without one,
  /// and `pacing` (a waiter is queued for it), a timer looks again when one is due.
  private func takeToken(_ priority: Priority, _ s: inout State, _ t: Duration, pacing: Bool) -> Bool {
    guard var b = s.bucket else { return true }
    if priority == .firstMount {
      // A pod waiting to start goes at kubelet's pace, bounded only by the concurrency
      // limit: it spends a token when there is one (so refreshes see the store's budget
      // used) but never waits for one. Rate-limiting first mounts capped a node at
      // --provider-qps publishes a second (100 by default), whatever its cores.
      _ = b.take(keeping: 0, now: t)
      s.bucket = b
      return true
    }
    let wait = b.take(keeping: Double(limits.refreshReserve), now: t)
    s.bucket = b
    if wait > .zero {
      if pacing { pace(after: wait, &s) }
      return false
    }
    return true
  }

  /// Lets waiters through while there are slots and tokens, first mounts first.
  private func dispatch(_ s: inout State, _ t: Duration, _ wake: inout Wakeups) {
    while hasSlot(s) {
      let priority: Priority
      if !s.firstMounts.isEmpty {
        priority = .firstMount
      } else if !s.refreshes.isEmpty {
        priority = .refresh
      } else {
        return
      }
      guard takeToken(priority, &s, t, pacing: true) else { return }
      let next = priority == .firstMount ? s.firstMounts.removeFirst() : s.refreshes.removeFirst()
      s.inFlight += 1
      if let timer = next.timer { wake.cancel.append(timer) }
      wake.resume.append(next.continuation)
    }
  }

  /// Out of tokens: look again when the next one is due (one timer at a time).
  private func pace(after wait: Duration, _ s: inout State) {
    guard s.pacer == nil else { return }
    s.pacer = Task(executorPreference: loop) { [loop] in
      do {
        try await loop.sleep(milliseconds: max(1, wait.timerMilliseconds))
      } catch {
        return  // cancelled: the queue emptied
      }
      self.paced()
    }
  }

  private func paced() {
    let t = now()
    var wake = Wakeups()
    state.withLock { s in
      s.pacer = nil
      dispatch(&s, t, &wake)
    }
    wake.run()
  }
}
