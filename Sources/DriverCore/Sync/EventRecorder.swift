import Glibc
public import KubeClient
public import Logging
public import UVRuntime

/// Kubernetes Events on pods (`v1` Event, source component `secrets-store-csi-driver`).
///
/// Aggregated and rate-limited the way kubelet's recorder is, so a crash-looping pod
/// cannot flood the API: the same (pod, reason, message) within ten minutes bumps the
/// count of the existing Event instead of creating another; each pod may cause a burst
/// of 25 writes, then one every 5 minutes; the rest are dropped (and counted).
/// Messages are the callers' sentences, already free of secrets: callers pass scrubbed text.
public actor EventRecorder {
  public static let component = "secrets-store-csi-driver"

  struct Key: Hashable {
    var podUID: String
    var reason: String
    var message: String
  }

  struct Seen {
    var name: String
    var count: Int
    var first: String
    var at: Duration
  }

  let client: KubeClient
  let nodeName: String
  let logger: Logger
  nonisolated let loop: EventLoop
  public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

  private var seen: [Key: Seen] = [:]
  private var buckets: [String: TokenBucket] = [:]
  private var sequence = 0
  /// Events dropped by the rate limit.
  public private(set) var dropped = 0

  static let aggregationWindow = Duration.seconds(600)
  static let maxTracked = 4096

  public init(client: KubeClient, nodeName: String, loop: EventLoop, logger: Logger) {
    self.client = client
    self.nodeName = nodeName
    self.loop = loop
    self.logger = logger
  }

  public struct Pod: Sendable {
    public var name: String
    public var namespace: String
    public var uid: String
    public init(name: String, namespace: String, uid: String) {
      self.name = name
      self.namespace = namespace
      self.uid = uid
    }
  }

  /// Records without waiting for the API.
  public nonisolated func emit(_ pod: Pod, warning: Bool, reason: String, message: String) {
    Task { await self.record(pod, warning: warning, reason: reason, message: message) }
  }

  public func record(_ pod: Pod, warning: Bool, reason: String, message: String) async {
    let now = KubeClient.monotonicNow()
    var bucket = buckets[pod.uid] ?? TokenBucket(ratePerSecond: 1.0 / 300, burst: 25, now: now)
    let wait = bucket.reserve(now: now)
    if wait > .zero {
      bucket.refund()
      buckets[pod.uid] = bucket
      dropped += 1
      return
    }
    buckets[pod.uid] = bucket
    let key = Key(podUID: pod.uid, reason: reason, message: message)
    let stamp = Self.timestamp()
    do {
      if var previous = seen[key], now - previous.at < Self.aggregationWindow {
        previous.count += 1
        previous.at = now
        seen[key] = previous
        let patch = #"{"count":\#(previous.count),"lastTimestamp":"\#(stamp)"}"#
        _ = try await client.mergePatch(EventObject.self, namespace: pod.namespace, name: previous.name, patch: Array(patch.utf8))
        return
      }
      sequence += 1
      let name = "\(pod.name).\(Self.uniqueSuffix(sequence))"
      let event = EventObject(
        metadata: ObjectMeta(name: name, namespace: pod.namespace),
        involvedObject: .init(apiVersion: "v1", kind: "Pod", name: pod.name, namespace: pod.namespace, uid: pod.uid), reason: reason,
        message: message, type: warning ? "Warning" : "Normal", count: 1, firstTimestamp: stamp, lastTimestamp: stamp,
        source: .init(component: Self.component, host: nodeName))
      _ = try await client.create(event)
      if seen.count >= Self.maxTracked { seen = seen.filter { now - $0.value.at < Self.aggregationWindow } }
      seen[key] = Seen(name: name, count: 1, first: stamp, at: now)
    } catch {
      seen[key] = nil
      logger.info("event not recorded", metadata: ["pod": "\(pod.namespace)/\(pod.name)", "reason": "\(reason)", "error": "\(error)"])
    }
  }

  /// RFC 3339 in UTC with seconds, as the API stores event times.
  static func timestamp() -> String {
    var t = time(nil)
    var parts = tm()
    gmtime_r(&t, &parts)
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
  }

  /// Like client-go's `<object>.<hex nanoseconds>`: unique per process and time.
  static func uniqueSuffix(_ sequence: Int) -> String {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return String(UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec) + UInt64(sequence), radix: 16)
  }
}
