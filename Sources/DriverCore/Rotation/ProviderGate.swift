import KubeClient
public import UVRuntime

/// Bounds the calls the driver makes to one provider (`--provider-max-concurrency`,
/// `--provider-qps`/`--provider-burst`), and orders the waiting ones: a first mount
/// (a pod waiting to start) always goes ahead of every refresh, whatever arrived first.
/// Within a priority, calls go in arrival order.
public actor ProviderGate {
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

  let limits: Limits
  nonisolated let loop: EventLoop
  public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

  private var inFlight = 0
  private var firstMounts: [Waiter] = []
  private var refreshes: [Waiter] = []
  private var nextID = 0
  private var bucket: TokenBucket?
  private var pacer: Task<Void, Never>?
  /// Calls that had to wait for a slot or a token, by priority (metrics and tests).
  public private(set) var waited: (firstMounts: Int, refreshes: Int) = (0, 0)

  public init(limits: Limits, loop: EventLoop) {
    self.limits = limits
    self.loop = loop
    if let rate = limits.ratePerSecond {
      bucket = TokenBucket(ratePerSecond: rate, burst: max(1, limits.burst), now: KubeClient.monotonicNow())
    }
  }

  public var queued: (firstMounts: Int, refreshes: Int) { (firstMounts.count, refreshes.count) }

  /// Runs `body` once the gate lets this call through.
  public func withPermit<T: Sendable>(
    _ priority: Priority, timeout: Duration? = nil, _ body: () async throws -> T
  ) async throws -> T {
    try await acquire(priority, timeout: timeout)
    defer { release() }
    return try await body()
  }

  /// Waits for a permit; with a `timeout`, throws ``TimedOut`` once it has waited that
  /// long (the wait counts against the call's deadline), and `CancellationError` when
  /// the task is cancelled. Every permit is given back with `release()`.
  /// Answers whether the call had to wait.
  @discardableResult
  public func acquire(_ priority: Priority, timeout: Duration? = nil) async throws -> Bool {
    if firstMounts.isEmpty && refreshes.isEmpty && hasSlot() && takeToken() {
      inFlight += 1
      return false
    }
    switch priority {
    case .firstMount: waited.firstMounts += 1
    case .refresh: waited.refreshes += 1
    }
    nextID += 1
    let id = nextID
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
        var waiter = Waiter(id: id, continuation: c)
        if let timeout {
          let started = ContinuousClock.now
          waiter.timer = Task { [loop] in
            do { try await loop.sleep(milliseconds: max(1, timeout.timerMilliseconds)) } catch { return }
            self.expire(id, error: TimedOut(waited: ContinuousClock.now - started))
          }
        }
        switch priority {
        case .firstMount: firstMounts.append(waiter)
        case .refresh: refreshes.append(waiter)
        }
        dispatch()
      }
    } onCancel: {
      Task { await self.expire(id, error: CancellationError()) }
    }
    return true
  }

  public func release() {
    inFlight -= 1
    dispatch()
  }

  /// Ends a wait that is still queued (cancelled or timed out); a waiter already let
  /// through holds its permit and is left alone.
  private func expire(_ id: Int, error: any Error) {
    var removed: Waiter?
    if let i = firstMounts.firstIndex(where: { $0.id == id }) {
      removed = firstMounts.remove(at: i)
    } else if let i = refreshes.firstIndex(where: { $0.id == id }) {
      removed = refreshes.remove(at: i)
    }
    if let removed {
      removed.timer?.cancel()
      removed.continuation.resume(throwing: error)
    }
    if firstMounts.isEmpty && refreshes.isEmpty {
      // Nobody left to pace for: stop the timer rather than leave it on the loop.
      pacer?.cancel()
      pacer = nil
    }
  }

  private func hasSlot() -> Bool { limits.concurrency <= 0 || inFlight < limits.concurrency }

  private func takeToken() -> Bool {
    guard var b = bucket else { return true }
    let wait = b.reserve(now: KubeClient.monotonicNow())
    if wait > .zero {
      b.refund()
      bucket = b
      pace(after: wait)
      return false
    }
    bucket = b
    return true
  }

  /// Lets waiters through while there are slots and tokens, first mounts first.
  private func dispatch() {
    while hasSlot(), !(firstMounts.isEmpty && refreshes.isEmpty), takeToken() {
      let next = firstMounts.isEmpty ? refreshes.removeFirst() : firstMounts.removeFirst()
      inFlight += 1
      next.timer?.cancel()
      next.continuation.resume()
    }
  }

  /// Out of tokens: look again when the next one is due (one timer at a time).
  private func pace(after wait: Duration) {
    guard pacer == nil else { return }
    pacer = Task {
      do {
        try await loop.sleep(milliseconds: wait.timerMilliseconds)
      } catch {
        return  // cancelled: the queue emptied
      }
      self.paced()
    }
  }

  private func paced() {
    pacer = nil
    dispatch()
  }
}
