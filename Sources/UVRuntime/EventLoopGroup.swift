import CUV
import Glibc

/// A fixed set of ``EventLoop``s, each on its own thread, so that work keyed by
/// something stable (a volume's target path) always runs on the same loop while
/// different keys spread over every core the process may use.
///
/// Threading contract: each loop is single-threaded as ``EventLoop`` describes;
/// the group itself is immutable after `init` and may be used from any thread.
/// Loop 0 (`first`) is where a program puts what there is one of (a listener,
/// timers, API clients); keyed work goes to `loop(forKey:)`.
public final class EventLoopGroup: Sendable {
  public let loops: [EventLoop]

  /// The most loops `defaultLoopCount` picks by itself. One listener loop feeds
  /// every volume loop, and beyond about eight cores it is the listener (HTTP/2,
  /// gRPC, logging of every request), not the volumes, that bounds a burst;
  /// each loop also holds its own provider connections. A flag can go higher.
  public static let defaultCap = 8
  /// The most loops a group accepts.
  public static let maxLoops = 64

  /// Adopts loops made elsewhere (a test's loop, a single given loop). Not empty.
  public init(loops: [EventLoop]) {
    precondition(!loops.isEmpty && loops.count <= Self.maxLoops, "a loop group needs 1...\(Self.maxLoops) loops")
    self.loops = loops
  }

  /// Starts `count` loops. Loop 0 is called `name` (so a single-loop group looks as
  /// one loop always did); loop i > 0 is called `name-i`.
  public convenience init(count: Int, name: String = "uv-loop", spin: Duration = .zero) {
    let count = min(max(1, count), Self.maxLoops)
    self.init(loops: (0..<count).map { i in EventLoop(name: i == 0 ? name : "\(name)-\(i)", spin: spin) })
  }

  public var count: Int { loops.count }

  /// Loop 0: the listener's loop, and the home of everything that is not sharded.
  public var first: EventLoop { loops[0] }

  /// The loop for `key`: always the same one for the same key and loop count, in
  /// this process and the next (the hash is not Swift's per-process seeded one).
  public func loop(forKey key: String) -> EventLoop {
    loops[index(forKey: key)]
  }

  /// The index of `loop(forKey:)`.
  public func index(forKey key: String) -> Int {
    loops.count == 1 ? 0 : Self.shard(of: key, count: loops.count)
  }

  /// `key`'s shard among `count`: FNV-1a over its UTF-8 bytes, then a final mix
  /// so that the low bits depend on every byte (paths differ mostly in a pod UID
  /// in the middle).
  public static func shard(of key: String, count: Int) -> Int {
    precondition(count > 0)
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    var key = key
    key.withUTF8 { bytes in
      for b in bytes {
        h ^= UInt64(b)
        h &*= 0x0000_0100_0000_01b3
      }
    }
    // splitmix64's finalizer
    h ^= h >> 30
    h &*= 0xbf58_476d_1ce4_e5b9
    h ^= h >> 27
    h &*= 0x94d0_49bb_1331_11eb
    h ^= h >> 31
    return Int(h % UInt64(count))
  }

  /// The loop whose thread is calling, or nil off every loop of the group.
  public var current: EventLoop? {
    for loop in loops where loop.inLoop { return loop }
    return nil
  }

  /// The index of `current`, or nil.
  public var currentIndex: Int? {
    for (i, loop) in loops.enumerated() where loop.inLoop { return i }
    return nil
  }

  /// Shuts every loop down (in reverse, so loop 0 goes last) and waits until every
  /// thread has ended.
  public func shutdownAndWait() async {
    for loop in loops.reversed() { loop.shutdown() }
    for loop in loops.reversed() { await loop.shutdownAndWait() }
  }

  /// Blocking variant for synchronous callers (never from a loop thread of the group).
  public func shutdownAndJoin() {
    for loop in loops.reversed() { loop.shutdown() }
    for loop in loops.reversed() { loop.shutdownAndJoin() }
  }

  /// Handles left open at shutdown on any loop, as `loop-name: type` (each a leak).
  public var leakedHandles: [String] {
    loops.flatMap { loop in loop.leakedHandles.map { "\(loop.name): \($0)" } }
  }

  /// One loop per core this process may use: its CPU affinity mask and, in a
  /// container, its cgroup v2 CPU quota (rounded up), at most `cap`.
  public static func defaultLoopCount(cap: Int = defaultCap) -> Int {
    max(1, min(CPUBudget.usableCores(), cap))
  }
}

/// How many cores this process may use.
public enum CPUBudget {
  /// CPUs in the affinity mask (`sched_getaffinity`, through libuv), at least 1.
  public static func affinityCount() -> Int {
    max(1, Int(uv_available_parallelism()))
  }

  /// The smaller of the affinity count and the cgroup v2 quota.
  public static func usableCores() -> Int {
    let affinity = affinityCount()
    guard let quota = cgroupQuota() else { return affinity }
    return max(1, min(affinity, quota))
  }

  /// The cgroup v2 CPU quota of this process in whole cores (rounded up), the
  /// smallest along its cgroup's path up to the root; nil when none is set.
  public static func cgroupQuota(root: String = "/sys/fs/cgroup") -> Int? {
    let own = readSmallFile("/proc/self/cgroup").flatMap(unifiedPath(procSelfCgroup:)) ?? "/"
    var best: Int?
    var path = own
    while true {
      let dir = path == "/" ? root : root + path
      if let text = readSmallFile(dir + "/cpu.max"), let cores = cores(cpuMax: text) {
        best = min(best ?? cores, cores)
      }
      if path == "/" { break }
      let parent = path[..<(path.lastIndex(of: "/") ?? path.startIndex)]
      path = parent.isEmpty ? "/" : String(parent)
    }
    return best
  }

  /// The cgroup v2 path in `/proc/self/cgroup` (the `0::/path` line), nil on a v1-only host.
  public static func unifiedPath(procSelfCgroup text: String) -> String? {
    for line in text.split(separator: "\n") where line.hasPrefix("0::") {
      let path = line.dropFirst(3)
      return path.hasPrefix("/") ? String(path) : nil
    }
    return nil
  }

  /// Whole cores from a `cpu.max` file ("$MAX $PERIOD", or "max $PERIOD" for no
  /// limit): MAX/PERIOD rounded up, at least 1; nil when unlimited or unreadable.
  public static func cores(cpuMax text: String) -> Int? {
    let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
    guard fields.count >= 1, fields[0] != "max", let quota = Int(fields[0]), quota > 0 else { return nil }
    let period = fields.count >= 2 ? Int(fields[1]) ?? 100_000 : 100_000
    guard period > 0 else { return nil }
    return max(1, (quota + period - 1) / period)
  }

  /// Up to 4 KiB of a file, nil when it cannot be read.
  static func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 4096)
    var used = 0
    while used < buffer.count {
      let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + used, $0.count - used) }
      if n < 0 && errno == EINTR { continue }
      guard n > 0 else { break }
      used += n
    }
    return String(decoding: buffer[..<used], as: UTF8.self)
  }
}
