/// When each volume is due for a refresh: the decisions of rotation, with no I/O and no
/// clock of its own, so tests drive it with a manual clock.
///
/// - A volume is due at its last successful fetch + its interval − jitter. The jitter is
///   a fixed fraction of the interval per volume (derived from its target path, so a
///   restart keeps the spread), up to `maxJitterFraction` of the interval and never more
///   than `maxJitter`: a node's volumes spread out instead of refreshing in lockstep,
///   and no volume is ever refreshed later than one interval after its last fetch.
/// - Intervals come from the class (an annotation, never below `floor`) or the default
///   (`--rotation-poll-interval`, which the operator sets knowingly).
/// - A failed refresh backs off exponentially per key (class and identity), with jitter,
///   from `backoffBase` up to `backoffCap`; a success resets it.
/// - A volume whose tokens have expired is not due until a republish brings new ones.
public struct RotationPlan: Sendable {
  public struct Settings: Sendable, Hashable {
    public var defaultInterval: Duration
    public var floor: Duration
    public var maxJitterFraction: Double = 0.1
    public var maxJitter: Duration = .seconds(10)
    public var backoffBase: Duration = .seconds(5)
    public var backoffCap: Duration = .seconds(300)

    public init(defaultInterval: Duration, floor: Duration) {
      self.defaultInterval = defaultInterval
      self.floor = floor
    }
  }

  public struct Volume: Sendable, Hashable {
    public var target: String
    /// The key refreshes back off by: same class and identity share a backoff.
    public var backoffKey: String
    public var interval: Duration?
    public var lastFetch: Duration
    /// When the tokens kubelet last gave expire (nil: no tokens, or none that expire).
    public var tokensExpire: Duration?
    /// Whose jitter this volume takes (nil: its own target's). A volume refreshed with
    /// another volume's shared answer takes that volume's, so volumes of one identity
    /// come due together and keep sharing one call.
    public var jitterSeed: String?
    /// The SecretProviderClass the volume uses, `namespace/name`: an on-demand refresh
    /// of the class finds its volumes by this.
    public var classKey: String

    public init(
      target: String, backoffKey: String, interval: Duration?, lastFetch: Duration, tokensExpire: Duration?, jitterSeed: String? = nil,
      classKey: String = ""
    ) {
      self.target = target
      self.backoffKey = backoffKey
      self.interval = interval
      self.lastFetch = lastFetch
      self.tokensExpire = tokensExpire
      self.jitterSeed = jitterSeed
      self.classKey = classKey
    }

    public static func classKey(namespace: String, name: String) -> String { "\(namespace)/\(name)" }
  }

  public let settings: Settings
  private var volumes: [String: (volume: Volume, generation: Int)] = [:]
  /// Due times; an entry whose generation is not its volume's current one is stale
  /// (the volume was upserted or removed since) and is dropped when it surfaces.
  private var heap: [(due: Duration, target: String, generation: Int)] = []
  private var generation = 0
  private var backoff: [String: (failures: Int, until: Duration)] = [:]
  /// Volumes per backoff key (for the count of volumes in backoff).
  private var perKey: [String: Int] = [:]
  /// Volumes whose tokens had expired when they came due: refreshed at their next republish.
  public private(set) var waitingForRepublish: Set<String> = []

  public init(settings: Settings) {
    self.settings = settings
  }

  public var count: Int { volumes.count }

  /// The interval for a class that asks for `requested` (floored), or the default.
  public func interval(for requested: Duration?) -> Duration {
    requested.map { max($0, settings.floor) } ?? settings.defaultInterval
  }

  /// A stable number in [0, 1) for a target path (FNV-1a): the same after a restart.
  static func unit(_ target: String) -> Double {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in target.utf8 {
      hash ^= UInt64(byte)
      hash &*= 0x0000_0100_0000_01b3
    }
    return Double(hash % 10_000) / 10_000
  }

  /// This volume's jitter: a stable fraction of its interval, bounded.
  public func jitter(target: String, interval: Duration) -> Duration {
    let unit = Self.unit(target)
    let bound = min(interval * settings.maxJitterFraction, settings.maxJitter)
    return bound * unit
  }

  public func due(_ volume: Volume) -> Duration {
    let interval = interval(for: volume.interval)
    var due = volume.lastFetch + interval - jitter(target: volume.jitterSeed ?? volume.target, interval: interval)
    if let b = backoff[volume.backoffKey], b.until > due { due = b.until }
    return due
  }

  /// Adds or replaces a volume (after a first mount, a refresh, a republish).
  public mutating func upsert(_ volume: Volume) {
    generation += 1
    if let old = volumes[volume.target]?.volume.backoffKey { uncount(old) }
    perKey[volume.backoffKey, default: 0] += 1
    volumes[volume.target] = (volume, generation)
    waitingForRepublish.remove(volume.target)
    push(due(volume), volume.target, generation)
  }

  public mutating func remove(target: String) {
    if let old = volumes[target]?.volume.backoffKey { uncount(old) }
    volumes[target] = nil
    waitingForRepublish.remove(target)
  }

  /// When the next volume is due (arm one timer for this), or nil when none is.
  public mutating func nextDue() -> Duration? {
    dropStale()
    return heap.first?.due
  }

  /// Volumes due at `now`, earliest first; each leaves the plan until it is upserted
  /// again (after its refresh) or fails (`failed`). Volumes whose tokens have expired go
  /// to `waitingForRepublish` instead.
  public mutating func takeDue(now: Duration) -> [Volume] {
    var out: [Volume] = []
    while true {
      dropStale()
      guard let top = heap.first, top.due <= now else { break }
      popTop()
      let volume = volumes[top.target]!.volume
      if let b = backoff[volume.backoffKey], b.until > now {
        // Its class and identity are backing off (another volume's refresh failed):
        // it waits with them.
        push(b.until, top.target, top.generation)
        continue
      }
      if let expiry = volume.tokensExpire, expiry <= now {
        waitingForRepublish.insert(volume.target)
        continue
      }
      out.append(volume)
    }
    return out
  }

  /// The volumes of one class (`Volume.classKey`), in no order: an on-demand refresh
  /// takes them all at once, whether or not they are due. A linear pass: on-demand
  /// requests are rare, and a node holds a few thousand volumes at most.
  public func volumes(ofClass classKey: String) -> [Volume] {
    volumes.values.compactMap { $0.volume.classKey == classKey ? $0.volume : nil }
  }

  /// A refresh failed: back off this key and put the volume back at the backoff's end.
  ///
  /// The backoff grows once per round: a failure that arrives while the key is already
  /// backing off (a call that started before the first failure came back) only puts
  /// its volume back at the backoff's end, so ten volumes of one key failing together
  /// wait 5 s, not 5 × 2⁹ s.
  public mutating func failed(_ volume: Volume, now: Duration, retryable: Bool = true) {
    var entry = backoff[volume.backoffKey] ?? (0, .zero)
    if entry.failures > 0 && now < entry.until {
      if retryable { requeue(volume.target, at: entry.until) }
      return
    }
    entry.failures += 1
    let exponent = min(entry.failures - 1, 16)
    var wait = settings.backoffBase * Double(1 << exponent)
    if wait > settings.backoffCap { wait = settings.backoffCap }
    // Up to +25 % so volumes of one key do not retry in lockstep.
    wait = wait + wait * 0.25 * Self.unit(volume.target)
    entry.until = max(entry.until, now + wait)
    backoff[volume.backoffKey] = entry
    if retryable { requeue(volume.target, at: entry.until) }
  }

  /// Puts a tracked volume back at `due`; any earlier due time of it no longer counts.
  private mutating func requeue(_ target: String, at due: Duration) {
    guard var current = volumes[target] else { return }
    generation += 1
    current.generation = generation
    volumes[target] = current
    waitingForRepublish.remove(target)
    push(due, target, generation)
  }

  /// A refresh of this key succeeded: its backoff is over.
  public mutating func succeeded(backoffKey: String) {
    backoff[backoffKey] = nil
  }

  public func backoffFailures(key: String) -> Int { backoff[key]?.failures ?? 0 }

  /// Until when refreshes of this key wait (nil: not backing off at `now`).
  public func backoffUntil(key: String, now: Duration) -> Duration? {
    guard let b = backoff[key], b.until > now else { return nil }
    return b.until
  }

  /// Tracked volumes whose key has failed since its last success (they retry at the
  /// backoff's end and keep their content meanwhile).
  public var volumesInBackoff: Int {
    backoff.keys.reduce(0) { $0 + (perKey[$1] ?? 0) }
  }

  private mutating func uncount(_ key: String) {
    let n = (perKey[key] ?? 1) - 1
    perKey[key] = n > 0 ? n : nil
  }

  // MARK: heap

  private mutating func dropStale() {
    while let top = heap.first, volumes[top.target]?.generation != top.generation || waitingForRepublish.contains(top.target) {
      popTop()
    }
  }

  private mutating func push(_ due: Duration, _ target: String, _ generation: Int) {
    heap.append((due, target, generation))
    var i = heap.count - 1
    while i > 0 {
      let parent = (i - 1) / 2
      guard heap[i].due < heap[parent].due else { break }
      heap.swapAt(i, parent)
      i = parent
    }
  }

  private mutating func popTop() {
    heap.swapAt(0, heap.count - 1)
    heap.removeLast()
    var i = 0
    while true {
      let l = 2 * i + 1, r = l + 1
      var m = i
      if l < heap.count && heap[l].due < heap[m].due { m = l }
      if r < heap.count && heap[r].due < heap[m].due { m = r }
      if m == i { return }
      heap.swapAt(i, m)
      i = m
    }
  }
}
