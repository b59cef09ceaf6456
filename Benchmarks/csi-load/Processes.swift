import Glibc
import UVRuntime

/// A process the harness started (driver or reference provider), its output
/// going to a log file. Each child gets its own process group so that Ctrl-C
/// reaches only the harness, which then tears the node down in order.
final class ChildProcess: @unchecked Sendable {
  let name: String
  let pid: pid_t
  let logPath: String
  let arguments: [String]
  /// Set once reaped; guarded by `lock`.
  private var status: Int32?
  private let lock = Lock()

  struct SpawnError: Error, CustomStringConvertible {
    var description: String
  }

  init(name: String, executable: String, arguments: [String], logPath: String) throws {
    self.name = name
    self.logPath = logPath
    self.arguments = arguments
    let actions = UnsafeMutablePointer<posix_spawn_file_actions_t>.allocate(capacity: 1)
    let attributes = UnsafeMutablePointer<posix_spawnattr_t>.allocate(capacity: 1)
    defer {
      posix_spawn_file_actions_destroy(actions)
      posix_spawnattr_destroy(attributes)
      actions.deallocate()
      attributes.deallocate()
    }
    posix_spawn_file_actions_init(actions)
    posix_spawnattr_init(attributes)
    posix_spawn_file_actions_addopen(actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(actions, 1, logPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(actions, 1, 2)
    posix_spawnattr_setpgroup(attributes, 0)
    // The spawning thread may be one of the runtime's, which block every signal; a child
    // would inherit that mask and never see SIGTERM. Children start as kubelet's would:
    // nothing blocked, SIGTERM, SIGINT, SIGHUP and SIGPIPE at their defaults.
    var noSignals = sigset_t()
    sigemptyset(&noSignals)
    posix_spawnattr_setsigmask(attributes, &noSignals)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for signum in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, signum) }
    posix_spawnattr_setsigdefault(attributes, &defaults)
    posix_spawnattr_setflags(attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { for a in argv { free(a) } }
    var child: pid_t = 0
    let rc = posix_spawn(&child, executable, actions, attributes, argv, environ)
    guard rc == 0 else {
      throw SpawnError(description: "cannot start \(executable): \(String(cString: strerror(rc)))")
    }
    pid = child
  }

  /// nil while running, else the wait status (reaps the child once).
  func exitStatus() -> Int32? {
    lock.withLock {
      if let status { return status }
      var s: Int32 = 0
      let r = waitpid(pid, &s, WNOHANG)
      if r == pid { status = s }
      return status
    }
  }

  var isRunning: Bool { exitStatus() == nil }

  /// "exit 0", "signal 9": for messages.
  static func describe(_ status: Int32) -> String {
    let sig = status & 0x7f
    return sig == 0 ? "exit \((status >> 8) & 0xff)" : "signal \(sig)"
  }

  /// SIGTERM, then SIGKILL after `graceSeconds`. Returns the wait status.
  @discardableResult
  func stop(graceSeconds: Double, loop: EventLoop) async -> Int32 {
    if let s = exitStatus() { return s }
    kill(pid, SIGTERM)
    let deadline = monotonicNs() + UInt64(graceSeconds * 1e9)
    while monotonicNs() < deadline {
      if let s = exitStatus() { return s }
      try? await loop.sleep(milliseconds: 20)
    }
    kill(pid, SIGKILL)
    while true {
      if let s = exitStatus() { return s }
      try? await loop.sleep(milliseconds: 20)
    }
  }

  /// The last lines of the child's log, for error messages.
  func logTail(lines: Int = 15) -> String {
    guard let text = Files.readText(logPath) else { return "(no log)" }
    return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
  }
}

/// A throwaway node: temporary directory with the provider's data files, an
/// SPC file, provider and driver sockets and a kubelet root; then the reference
/// provider and the driver started on them (standalone mode, `--spc-dir`).
final class Fixture: @unchecked Sendable {
  struct Options: Sendable {
    var driverBinary: String
    var providerBinary: String
    var driverArguments: [String]
    var providerArguments: [String]
    var spcName: String
    var namespace: String
    var objects: [ObjectFile]
  }

  struct ObjectFile: Sendable {
    var name: String
    var contents: [UInt8]
  }

  let root: String
  let providerDirectory: String
  let dataDirectory: String
  let spcDirectory: String
  let kubeletRoot: String
  let driverSocket: String
  let providerStatsPath: String
  private(set) var provider: ChildProcess?
  private(set) var driver: ChildProcess?

  struct SetupError: Error, CustomStringConvertible {
    var description: String
  }

  /// Makes a fresh `csi-load-XXXXXX` directory under `parent`.
  init(parent: String) throws {
    var template = Array((parent + "/csi-load-XXXXXX").utf8CString)
    guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
      throw SetupError(description: "mkdtemp: \(String(cString: strerror(errno)))")
    }
    root = String(cString: made)
    providerDirectory = root + "/providers"
    dataDirectory = root + "/store"
    spcDirectory = root + "/classes"
    kubeletRoot = root + "/kubelet"
    driverSocket = root + "/csi.sock"
    providerStatsPath = root + "/provider-stats.json"
    for dir in [providerDirectory, dataDirectory, spcDirectory, kubeletRoot + "/pods"] {
      guard Files.makeDirectories(dir) else { throw SetupError(description: "cannot create \(dir)") }
    }
  }

  /// Writes the data files and the SecretProviderClass, starts the provider,
  /// waits for its socket, then the driver and its socket.
  func start(_ options: Options, loop: EventLoop) async throws {
    for object in options.objects {
      guard Files.writeAtomically(object.contents, to: dataDirectory + "/" + object.name) else {
        throw SetupError(description: "cannot write \(dataDirectory)/\(object.name)")
      }
    }
    let objectsParameter = JSON.array(options.objects.map { .object([("objectName", .string($0.name))]) }).serialized()
    var quoted = ""
    JSON.quote(objectsParameter, into: &quoted)
    let yaml = """
      apiVersion: secrets-store.csi.x-k8s.io/v1
      kind: SecretProviderClass
      metadata:
        name: \(options.spcName)
        namespace: \(options.namespace)
      spec:
        provider: reference
        parameters:
          objects: \(quoted)

      """
    guard Files.write(yaml, to: "\(spcDirectory)/\(options.namespace)-\(options.spcName).yaml") else {
      throw SetupError(description: "cannot write the SecretProviderClass file")
    }
    let providerSocket = providerDirectory + "/reference.sock"
    let provider = try ChildProcess(
      name: "provider", executable: options.providerBinary,
      arguments: [
        "--endpoint", "unix://\(providerSocket)", "--data-dir", dataDirectory, "--stats-file", providerStatsPath,
      ] + options.providerArguments,
      logPath: root + "/provider.log")
    self.provider = provider
    try await waitForSocket(providerSocket, of: provider, loop: loop)
    // The driver's records on a tmpfs, as under its default /run on a node (not on the disk
    // this run happens to use); remove() detaches it.
    let stateDirectory = root + "/state"
    mkdir(stateDirectory, 0o700)
    if mount("tmpfs", stateDirectory, "tmpfs", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), "size=64m,mode=0700") != 0 {
      printError("csi-load: no tmpfs for the driver's state directory (errno \(errno)); records go to \(stateDirectory) on disk")
    }
    let driver = try ChildProcess(
      name: "driver", executable: options.driverBinary,
      arguments: [
        "--endpoint", "unix://\(driverSocket)", "--nodeid", "csi-load-node",
        "--provider-volume", providerDirectory, "--additional-provider-volume-paths", "",
        "--spc-dir", spcDirectory, "--state-dir", stateDirectory, "--kubelet-root-dir", kubeletRoot,
      ] + options.driverArguments,
      logPath: root + "/driver.log")
    self.driver = driver
    try await waitForSocket(driverSocket, of: driver, loop: loop)
  }

  private func waitForSocket(_ path: String, of child: ChildProcess, loop: EventLoop) async throws {
    let deadline = monotonicNs() + 60_000_000_000
    while !Files.isSocket(path) {
      if let status = child.exitStatus() {
        throw SetupError(
          description: "\(child.name) stopped before listening (\(ChildProcess.describe(status))); its log ends:\n\(child.logTail())")
      }
      if monotonicNs() > deadline {
        throw SetupError(description: "\(child.name) did not create \(path) within 60 s; its log ends:\n\(child.logTail())")
      }
      try await loop.sleep(milliseconds: 20)
    }
  }

  /// Driver first (it may still be finishing calls to the provider), then the provider.
  func stopProcesses(loop: EventLoop) async -> (driver: Int32?, provider: Int32?) {
    var d: Int32?
    var p: Int32?
    if let driver { d = await driver.stop(graceSeconds: 30, loop: loop) }
    if let provider { p = await provider.stop(graceSeconds: 10, loop: loop) }
    return (d, p)
  }

  /// Detaches any tmpfs left under the directory (a driver that died
  /// mid-run), then removes it, never crossing into another file system.
  func remove() {
    for mountPoint in Self.mountPoints(under: root).reversed() {
      umount2(mountPoint, Int32(MNT_DETACH))
    }
    let rm = try? ChildProcess(
      name: "rm", executable: "/bin/rm", arguments: ["-rf", "--one-file-system", root], logPath: "/dev/null")
    if let rm {
      var s: Int32 = 0
      while waitpid(rm.pid, &s, 0) < 0 && errno == EINTR {}
    }
  }

  static func mountPoints(under directory: String) -> [String] {
    Files.mounts().map(\.point).filter { $0.hasPrefix(directory + "/") }
  }
}
