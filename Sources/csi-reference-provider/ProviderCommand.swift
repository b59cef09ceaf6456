import ArgumentParser
import Glibc
import UVRuntime
import VolumeFiles

/// Turns flags into a validated configuration and runs the provider; nothing else.
@main
struct ProviderCommand: AsyncParsableCommand {
  static let runtimeVersion = "0.1.0"

  static let configuration = CommandConfiguration(
    commandName: "csi-reference-provider",
    abstract: "A Secrets Store CSI provider plugin for demos, tests and load runs: secrets from files or parameters, with optional faults.",
    discussion: """
      Serves v1alpha1.CSIDriverProvider (Version, Mount) on --endpoint. The driver finds a provider at <dir>/<provider>.sock: name the socket after the SecretProviderClass's spec.provider.

      Parameter objects (SecretProviderClass spec.parameters): a JSON array of {"objectName": "db-password", "path": "db/password", "mode": 256 or "0400", "value": "inline contents"}. path defaults to objectName; mode 0 or absent lets the driver use its permission; without value, the contents are read from <data-dir>/<objectName> on every call. An object's version is the first 16 hex digits of the SHA-256 of its contents.

      Parameters fault.latency, fault.errorRate, fault.errorKind, fault.throttleEvery, fault.throttleFor, fault.hostile and fault.hostileRate override the flags of the same names for one class. fault.throttleCode sets what a throttled call answers: a MountResponse error code (default Throttled; e.g. ThrottlingException as AWS names it), or RESOURCE_EXHAUSTED or UNAVAILABLE for that gRPC status.

      Latency: 0, 50ms, normal:MEAN,STDDEV or longtail:MEDIAN,P99 (log-normal). Durations: 250ms, 1.5s, 2m. Hostile modes: dotdot (../escape), absolute (/etc/evil), oversized (8 MiB file), reserved (..data), empty-versions, bad-mode (mode 0170000), duplicate (a path twice), nul (a NUL byte in a path), many (100 000 files), tmpfs-full (a 32 MiB file), symlink (mode S_IFLNK|0777), through-link (files link and link/inner), huge-mode (mode 0x7fffffff).

      Example: csi-reference-provider --endpoint unix:///var/run/secrets-store-csi-providers/reference.sock --data-dir /srv/secrets

      SIGTERM or SIGINT: calls in flight finish, the socket file is removed and the stats file is written a last time.
      """
  )

  @Option(help: ArgumentHelp("Where to listen: unix:///dir/<provider>.sock (or tcp://host:port).", valueName: "url"))
  var endpoint = "unix:///var/run/secrets-store-csi-providers/reference.sock"

  @Option(name: .customLong("data-dir"), help: ArgumentHelp("Directory holding one file per object without an inline value.", valueName: "dir"))
  var dataDir: String?

  @Option(name: .customLong("runtime-name"), help: ArgumentHelp("runtime_name answered by Version.", valueName: "name"))
  var runtimeName = "csi-reference-provider"

  @Option(name: .customLong("max-recv-bytes"), help: ArgumentHelp("Largest request message accepted, in bytes.", valueName: "bytes"))
  var maxRecvBytes = 4 << 20

  @Option(
    name: .customLong("loop-spin-us"),
    help: ArgumentHelp("Microseconds to keep polling without sleeping after work (0 to 1000), as the driver's --loop-spin.", valueName: "us"))
  var loopSpinUs = 50

  @Option(help: ArgumentHelp("Answer each Mount this long after it arrived (the provider's own work happens within it): 0, 50ms, normal:50ms,10ms or longtail:5ms,200ms.", valueName: "spec"))
  var latency = "0"

  @Option(name: .customLong("error-rate"), help: ArgumentHelp("Fraction of Mounts that fail, 0.0 to 1.0.", valueName: "fraction"))
  var errorRate = "0"

  @Option(
    name: .customLong("error-kind"),
    help: ArgumentHelp(
      "How an injected failure looks: response (error code InjectedError), unavailable, internal or resource-exhausted (gRPC status).",
      valueName: "kind"))
  var errorKind = "response"

  @Option(name: .customLong("throttle-every"), help: ArgumentHelp("Length of a throttle period, e.g. 60s (0: never throttle).", valueName: "duration"))
  var throttleEvery = "0"

  @Option(
    name: .customLong("throttle-for"),
    help: ArgumentHelp("How long the end of each period answers error code Throttled, e.g. 10s.", valueName: "duration"))
  var throttleFor = "0"

  @Option(help: ArgumentHelp("Answer every Mount with a response the driver must reject (see above); none to disable.", valueName: "mode"))
  var hostile = "none"

  @Option(name: .customLong("hostile-rate"), help: ArgumentHelp("Fraction of Mounts that get the --hostile answer, 0.0 to 1.0; the rest are answered normally.", valueName: "fraction"))
  var hostileRate = "1"

  @Option(name: .customLong("stats-file"), help: ArgumentHelp("Write call counters here as JSON, each second while they change and at exit.", valueName: "path"))
  var statsFile: String?

  @Option(
    name: .customLong("log-level"),
    help: ArgumentHelp("trace, debug (one line per call), info, warning or error.", valueName: "level"))
  var logLevel = "info"

  @Flag(help: "Print the version and exit.")
  var version = false

  func validate() throws {
    if version { return }
    do { _ = try Endpoint(parsing: endpoint) } catch { throw ValidationError("--endpoint: \(error)") }
    guard maxRecvBytes > 0 else { throw ValidationError("--max-recv-bytes must be positive") }
    guard Log.Level(name: logLevel) != nil else {
      throw ValidationError("--log-level must be one of trace, debug, info, warning, error")
    }
    guard !runtimeName.isEmpty else { throw ValidationError("--runtime-name must not be empty") }
    if let dataDir { guard !dataDir.isEmpty else { throw ValidationError("--data-dir must not be empty") } }
    if let statsFile { guard !statsFile.isEmpty else { throw ValidationError("--stats-file must not be empty") } }
    _ = try faults()
  }

  /// The process-wide fault settings from the flags.
  func faults() throws(ValidationError) -> FaultSettings {
    var f = FaultSettings()
    do {
      f.latency = try Latency(parsing: latency)
    } catch { throw ValidationError("--latency: \(error)") }
    do {
      f.errorRate = try FaultSettings.parseRate(errorRate)
    } catch { throw ValidationError("--error-rate: \(error)") }
    do {
      f.errorKind = try InjectedErrorKind(parsing: errorKind)
    } catch { throw ValidationError("--error-kind: \(error)") }
    do {
      f.throttle = try Throttle.validate(
        everyMs: FaultSettings.parseDuration(throttleEvery, "--throttle-every"),
        forMs: FaultSettings.parseDuration(throttleFor, "--throttle-for"))
    } catch { throw ValidationError("\(error)") }
    do {
      f.hostile = try HostileMode.parse(hostile)
    } catch { throw ValidationError("--hostile: \(error)") }
    do {
      f.hostileRate = try FaultSettings.parseRate(hostileRate)
    } catch { throw ValidationError("--hostile-rate: \(error)") }
    return f
  }

  func run() async throws {
    if version {
      print("csi-reference-provider \(Self.runtimeVersion)")
      return
    }
    let log = Log(label: "csi-reference-provider", level: Log.Level(name: logLevel)!)
    let endpoint = try Endpoint(parsing: endpoint)
    let faults = try faults()
    var dir: DataDir?
    if let dataDir {
      do { dir = try DataDir(path: dataDir) } catch {
        log.error("cannot use --data-dir", ["path": dataDir, "error": error.reason])
        throw ExitCode.failure
      }
    }
    if case .unix(let path) = endpoint {
      Self.checkSocketPath(path, log)
    }
    let stats = Stats()
    let mounter = Mounter(defaults: faults, dataDir: dir, startedMs: Mounter.monotonicMs())
    let server = ProviderServer(
      endpoint: endpoint, maxReceiveMessageBytes: maxRecvBytes,
      service: { [runtimeName] loop in
        ProviderService(
          runtimeName: runtimeName, runtimeVersion: Self.runtimeVersion, mounter: mounter, stats: stats, log: log, loop: loop)
      },
      stats: stats, statsPath: statsFile, log: log, spin: EventLoop.spin(microseconds: loopSpinUs))
    if faults != FaultSettings() {
      log.info("fault injection on", [
        "latency": "\(faults.latency)", "error_rate": "\(faults.errorRate)", "error_kind": faults.errorKind.rawValue,
        "throttle_every_ms": "\(faults.throttle.everyMs)", "throttle_for_ms": "\(faults.throttle.forMs)",
        "hostile": faults.hostile?.rawValue ?? "none", "hostile_rate": "\(faults.hostileRate)",
      ])
    }
    do {
      try await server.run()
    } catch {
      log.error("provider stopped: \(error)")
      throw ExitCode.failure
    }
  }

  /// The driver looks for `<dir>/<provider>.sock` with a provider name of at most
  /// 30 of [A-Za-z0-9_-]; say so early if this socket could never be found.
  /// Also creates the directory, as provider DaemonSets expect.
  static func checkSocketPath(_ path: String, _ log: Log) {
    let slash = path.lastIndex(of: "/")
    let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
    let name = base.hasSuffix(".sock") ? String(base.dropLast(5)) : nil
    let valid = name.map { n in
      n.utf8.count <= 30 && n.utf8.allSatisfy { c in
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2d || c == 0x5f
      }
    } ?? false
    if !valid {
      log.warning("the driver only finds sockets named <provider>.sock with a provider name of up to 30 letters, digits, '-' or '_'", ["socket": path])
    }
    if let slash, slash != path.startIndex {
      let dir = String(path[..<slash])
      do {
        _ = try sys("mkdir", dir) { mkdir(dir, 0o755) }
      } catch let error as VolumeFileError where error.errno == EEXIST {
      } catch {
        log.warning("cannot create the socket directory", ["dir": dir, "error": "\(error)"])
      }
    }
  }
}
