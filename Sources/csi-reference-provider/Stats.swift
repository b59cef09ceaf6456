import FoundationEssentials
import Glibc
import UVRuntime
import VolumeFiles

/// Call counters, shared by every handler (any thread), written as JSON for the
/// load harness.
final class Stats: Sendable {
  struct Snapshot: Encodable, Equatable {
    var pid: Int32 = getpid()
    var version_calls = 0
    var mount_calls = 0
    /// Mounts answered without an error code (hostile responses included).
    var mount_ok = 0
    /// By MountResponse error code ("InvalidParameters", "InjectedError", ...) or,
    /// for failures sent as a gRPC status, the status name ("UNAVAILABLE", ...).
    var mount_errors: [String: Int] = [:]
    var hostile_responses: [String: Int] = [:]
    /// Mount calls by `namespace/serviceAccount` of the pod they were made for.
    var mount_calls_by_identity: [String: Int] = [:]
    var objects_served = 0
    var in_flight = 0
    var in_flight_max = 0
  }

  private let state = Locked((snapshot: Snapshot(), generation: UInt64(1)))

  func versionCalled() {
    state.withLock {
      $0.snapshot.version_calls += 1
      $0.generation &+= 1
    }
  }

  /// Returns the number of Mounts in flight, this one included.
  @discardableResult
  func mountStarted() -> Int {
    state.withLock {
      $0.snapshot.mount_calls += 1
      $0.snapshot.in_flight += 1
      $0.snapshot.in_flight_max = max($0.snapshot.in_flight_max, $0.snapshot.in_flight)
      $0.generation &+= 1
      return $0.snapshot.in_flight
    }
  }

  /// `error` is nil for a successful answer.
  func mountFinished(error: String?, hostile: HostileMode?, objects: Int, identity: String? = nil) {
    state.withLock {
      $0.snapshot.in_flight -= 1
      if let identity { $0.snapshot.mount_calls_by_identity[identity, default: 0] += 1 }
      if let error {
        $0.snapshot.mount_errors[error, default: 0] += 1
      } else {
        $0.snapshot.mount_ok += 1
        $0.snapshot.objects_served += objects
        if let hostile { $0.snapshot.hostile_responses[hostile.rawValue, default: 0] += 1 }
      }
      $0.generation &+= 1
    }
  }

  func read() -> (snapshot: Snapshot, generation: UInt64) {
    state.withLock { ($0.snapshot, $0.generation) }
  }
}

/// Writes `Stats` to a file atomically (temporary file, then rename), once per
/// second while something changed, and once more at shutdown. Loop thread only.
final class StatsWriter {
  let path: String
  let stats: Stats
  let log: Log
  private var timer: UVTimer?
  private var written: UInt64 = 0
  private var failing = false

  init(path: String, stats: Stats, log: Log) {
    self.path = path
    self.stats = stats
    self.log = log
  }

  func start(on loop: EventLoop) {
    writeIfChanged()
    let timer = UVTimer(on: loop)
    timer.start(timeoutMs: 1000, repeatMs: 1000) { [self] in writeIfChanged() }
    self.timer = timer
  }

  /// Stops the timer and writes the final counters.
  func stop() {
    timer?.close()
    timer = nil
    writeIfChanged()
  }

  func writeIfChanged() {
    let (snapshot, generation) = stats.read()
    guard generation != written else { return }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    guard var bytes = try? Array(encoder.encode(snapshot)) else { return }
    bytes.append(UInt8(ascii: "\n"))
    if let problem = Self.writeAtomically(bytes, to: path) {
      // Once per failing stretch: a full disk must not flood the log every second.
      if !failing { log.warning("cannot write the stats file", ["path": path, "error": problem]) }
      failing = true
      return
    }
    failing = false
    written = generation
  }

  /// nil on success, else what failed.
  static func writeAtomically(_ bytes: [UInt8], to path: String) -> String? {
    let tmp = "\(path).tmp.\(getpid())"
    let fd: Int32
    do {
      fd = try sys("open", tmp) { open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
    } catch {
      return "\(error)"
    }
    var problem: (any Error)?
    do {
      var offset = 0
      while offset < bytes.count {
        offset += try bytes.withUnsafeBytes { buffer in try sys("write", tmp) { write(fd, buffer.baseAddress! + offset, buffer.count - offset) } }
      }
    } catch {
      problem = error
    }
    close(fd)
    if problem == nil {
      do { _ = try sys("rename", path) { rename(tmp, path) } } catch { problem = error }
    }
    guard let problem else { return nil }
    _ = try? sys("unlink", tmp) { unlink(tmp) }
    return "\(problem)"
  }
}
