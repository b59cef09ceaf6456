/// Keys waiting to be reconciled, as client-go's workqueue: a key added many times
/// before a worker takes it is reconciled once; a key added while it is being
/// reconciled is queued again after (never two workers on one key); failures come
/// back after a per-key exponential delay, which `forget` resets.
///
/// Time-free: `addAfterFailure` returns the delay and the caller sleeps (on the loop's
/// timer) before calling `add`, so tests drive it without clocks.
public actor WorkQueue {
  private var queue: [String] = []
  private var queued = Set<String>()
  private var processing = Set<String>()
  /// Added while processing: queued again by `done`.
  private var dirty = Set<String>()
  private var failures: [String: Int] = [:]
  private var waiters: [CheckedContinuation<String?, Never>] = []
  private var isShutDown = false

  public let baseDelay: Duration
  public let maxDelay: Duration

  public init(baseDelay: Duration = .milliseconds(100), maxDelay: Duration = .seconds(300)) {
    self.baseDelay = baseDelay
    self.maxDelay = maxDelay
  }

  public func add(_ key: String) {
    guard !isShutDown else { return }
    if processing.contains(key) {
      dirty.insert(key)
      return
    }
    guard queued.insert(key).inserted else { return }
    if !waiters.isEmpty {
      queued.remove(key)
      processing.insert(key)
      waiters.removeFirst().resume(returning: key)
    } else {
      queue.append(key)
    }
  }

  /// The next key, marked as processing; nil once shut down.
  public func next() async -> String? {
    if isShutDown { return nil }
    if !queue.isEmpty {
      let key = queue.removeFirst()
      queued.remove(key)
      processing.insert(key)
      return key
    }
    return await withCheckedContinuation { waiters.append($0) }
  }

  /// The worker finished `key`: if it was added meanwhile, it is queued again.
  public func done(_ key: String) {
    processing.remove(key)
    if dirty.remove(key) != nil { add(key) }
  }

  /// Counts a failure of `key` and returns how long to wait before adding it again:
  /// baseDelay × 2^(failures-1), at most maxDelay.
  public func addAfterFailure(_ key: String) -> Duration {
    let n = (failures[key] ?? 0) + 1
    failures[key] = n
    var delay = baseDelay
    for _ in 1..<min(n, 40) {
      delay = delay * 2
      if delay >= maxDelay { return maxDelay }
    }
    return min(delay, maxDelay)
  }

  public func forget(_ key: String) { failures[key] = nil }

  public func failureCount(_ key: String) -> Int { failures[key] ?? 0 }

  public var length: Int { queue.count }

  public func shutDown() {
    isShutDown = true
    queue = []
    queued = []
    for w in waiters { w.resume(returning: nil) }
    waiters = []
  }
}
