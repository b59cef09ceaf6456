import ArgumentParser
import CDriverStartup
import DriverCore
import FoundationEssentials
import GRPCCore
import GRPCH2
import KubeClient
import Glibc
import Logging
import Telemetry
import TextFormats
import UVRuntime
import VolumeFiles
import LogOutput

/// Turns flags into a validated configuration and runs the driver; nothing else.
@main
struct DriverCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "secrets-store-csi-driver",
    abstract: "Secrets Store CSI driver: mounts secrets from external stores into pods as tmpfs volumes.",
    discussion: """
      kubelet talks to the driver over CSI gRPC on --endpoint; the driver answers the CSI Identity and Node services.

      Example: secrets-store-csi-driver --endpoint unix:///csi/csi.sock --nodeid "$KUBE_NODE_NAME"

      SIGTERM or SIGINT starts a graceful shutdown: the listener closes, calls in flight finish, and the socket file is removed. A second signal stops at once.

      Go-style spellings work as upstream's: -flag, --flag=value, --bool-flag=true|false, klog's -v=N.

      Accepted so that upstream's DaemonSet and chart work unchanged, but not implemented yet: \(UpstreamFlag.ignored.map { $0.name + ($0.isBool ? "" : "=<\($0.valueName)>") }.joined(separator: ", ")). Each one given is ignored with one warning at startup that says what it would do (a boolean given as false asks for nothing and is ignored silently).
      """
  )

  @Option(help: ArgumentHelp("CSI endpoint: unix:///path/to/csi.sock or tcp://host:port.", valueName: "url"))
  var endpoint = "unix://tmp/csi.sock"

  @Option(help: ArgumentHelp("This node's name, as kubelet registers it (required).", valueName: "name"))
  var nodeid: String?

  @Option(help: ArgumentHelp("Name the driver registers under.", valueName: "name"))
  var drivername = DriverConfig.defaultDriverName

  @Option(
    name: .customLong("max-call-recv-msg-size"),
    help: ArgumentHelp("Largest gRPC message accepted, in bytes (from kubelet and from providers).", valueName: "bytes"))
  var maxCallRecvMsgSize = 4 << 20

  @Option(
    name: .customLong("provider-volume"),
    help: ArgumentHelp("Directory where provider plugins create their sockets (<dir>/<provider>.sock).", valueName: "dir"))
  var providerVolume = ProviderSettings.defaultProviderVolume

  @Option(
    name: .customLong("kubelet-root-dir"),
    help: ArgumentHelp(
      "kubelet's root directory (its --root-dir; upstream chart value linux.kubeletRootDir). Target paths must lie under <dir>/pods and are reached from <dir> without following symlinks; any other target is refused with INVALID_ARGUMENT.",
      valueName: "dir"))
  var kubeletRootDir = DriverConfig.defaultKubeletRootDir

  @Option(
    name: .customLong("additional-provider-volume-paths"),
    help: ArgumentHelp("More provider socket directories, comma-separated; searched before --provider-volume.", valueName: "dirs"))
  var additionalProviderVolumePaths = ProviderSettings.defaultAdditionalProviderVolumePaths.joined(separator: ",")

  @Flag(
    name: .customLong("enable-secret-rotation"),
    help:
      "Refresh mounted content once it is due (by the driver's own timer, and on kubelet's republish), and at once for every volume of a SecretProviderClass whose annotation secrets-store.csi.x-k8s.io/refresh-requested-at takes a new value (with --spc-dir: whose file changes).")
  var enableSecretRotation = false

  @Option(
    name: .customLong("rotation-poll-interval"),
    help: ArgumentHelp("How long after its last successful fetch a volume is due for a refresh (Go duration).", valueName: "duration"))
  var rotationPollInterval = "2m"

  @Option(
    name: .customLong("rotation-min-interval"),
    help: ArgumentHelp(
      "The shortest refresh interval a SecretProviderClass may ask for with the annotation secrets-store.csi.x-k8s.io/rotation-poll-interval (Go duration).",
      valueName: "duration"))
  var rotationMinInterval = "10s"

  @Option(
    name: .customLong("provider-max-concurrency"),
    help: ArgumentHelp(
      "Mount calls in flight at once, per provider (0: no limit). Calls beyond it wait, first mounts ahead of refreshes; the wait counts against the call's deadline.",
      valueName: "n"))
  var providerMaxConcurrency = ProviderSettings.defaultGate.concurrency

  @Option(
    name: .customLong("provider-qps"),
    help: ArgumentHelp(
      "Refresh calls started per second, per provider, sustained (token bucket; 0: no limit), shared by every event loop. Refreshes leave half of --provider-burst in the bucket; first mounts (pods waiting to start) spend tokens when there are some but never wait for one: only --provider-max-concurrency bounds them.",
      valueName: "qps"))
  var providerQPS: Double = ProviderSettings.defaultGate.ratePerSecond ?? 0

  @Option(
    name: .customLong("provider-burst"),
    help: ArgumentHelp("Refresh calls per provider allowed at once above --provider-qps (the bucket's size). Refreshes may take tokens only while more than half of it is left; first mounts never wait for tokens.", valueName: "n"))
  var providerBurst = ProviderSettings.defaultGate.burst

  @Option(
    name: .customLong("rotation-coalesce-window"),
    help: ArgumentHelp(
      "Refreshes of volumes that would send a provider the same request for the same identity (namespace, service account, class parameters, nodePublishSecretRef, token audiences) share one call within this window (Go duration; 0 turns it off). First mounts never share. See docs/rotation-and-sync.md for what sharing means for security.",
      valueName: "duration"))
  var rotationCoalesceWindow = "0"

  @Option(
    name: .customLong("rotation-backoff-base"),
    help: ArgumentHelp(
      "After a failed refresh, the volumes of its class and identity wait this long before they retry, timer and republish alike (Go duration); it doubles with every failed retry.",
      valueName: "duration"))
  var rotationBackoffBase = "5s"

  @Option(
    name: .customLong("rotation-backoff-max"),
    help: ArgumentHelp("The longest wait after failed refreshes (Go duration).", valueName: "duration"))
  var rotationBackoffMax = "5m"

  @Flag(name: .customLong("provider-health-check"), help: "Call every provider's Version periodically and log failures.")
  var providerHealthCheck = false

  @Option(
    name: .customLong("provider-health-check-interval"),
    help: ArgumentHelp("How often the provider health check runs (Go duration).", valueName: "duration"))
  var providerHealthCheckInterval = "2m"

  @Option(
    name: .customLong("spc-dir"),
    help: ArgumentHelp(
      "Read SecretProviderClasses from YAML files in this directory instead of the Kubernetes API (standalone mode).",
      valueName: "dir"))
  var spcDir: String?

  @Option(
    help: ArgumentHelp(
      "A kubeconfig for the Kubernetes API (development; its current context). In a pod the driver uses its service account (KUBERNETES_SERVICE_HOST, the projected token, re-read when kubelet rotates it). Without either, and without --spc-dir, no SecretProviderClass can be found.",
      valueName: "path"))
  var kubeconfig: String?

  @Option(
    name: .customLong("kube-api-qps"),
    help: ArgumentHelp(
      "Requests per second to the Kubernetes API, sustained (client-side limit). The default lets a node's burst of first mounts (one status write each) through at once.",
      valueName: "qps"))
  var kubeAPIQPS: Double = 50

  @Option(
    name: .customLong("kube-api-burst"),
    help: ArgumentHelp("Requests to the Kubernetes API allowed at once above --kube-api-qps.", valueName: "n"))
  var kubeAPIBurst = 300

  @Option(
    name: .customLong("spc-namespaces"),
    help: ArgumentHelp(
      "Watch SecretProviderClasses only in these namespaces (comma-separated), one watch each; default: all namespaces with one watch.",
      valueName: "namespaces"))
  var spcNamespaces = ""

  @Option(
    name: .customLong("loop-spin"),
    help: ArgumentHelp(
      "Off by default (0). After handling work, keep polling the socket without sleeping for this long (Go duration, at most 1ms), and poll for a provider's answer when it usually comes within 500us. A call that arrives meanwhile needs no thread wakeup, which can shave tens of microseconds off back-to-back calls on an idle node; the cost is up to this much CPU after every burst of work (a publish+unpublish pair has several) and while waiting for a fast provider, taken from other processes when the node is busy. See docs/performance.md (Knobs).",
      valueName: "duration"))
  var loopSpin = "0"

  @Option(
    name: .customLong("state-dir"),
    help: ArgumentHelp(
      "Keep a small record per served volume here (no secret values, no tokens), so that a restarted driver finds the volumes it served and keeps serving them without a remount. Under /run by default, so records vanish with the node's mounts at a reboot; the DaemonSet mounts it from the host. Empty: keep no records.",
      valueName: "dir"))
  var stateDir = "/run/secrets-store-csi-driver"

  @Option(
    name: .customLong("event-loops"),
    help: ArgumentHelp(
      "Event loop threads (1-64). Volumes are spread over them by target path, so publishes of different volumes use different cores; the CSI socket, metrics and the Kubernetes API stay on the first. 0 (the default): one per core the driver may use (its CPU affinity and cgroup CPU quota, rounded up), at most 8. 1: everything on one thread.",
      valueName: "n"))
  var eventLoops = 0

  // Metrics and health (`--metrics-addr`): kept together so the flag's wiring stays in one place.
  @Option(
    name: .customLong("metrics-addr"),
    help: ArgumentHelp(
      "Serve Prometheus /metrics, /healthz and /readyz over HTTP on this address: :8095 (every interface), host:port or [v6]:port; 0 (or an empty value) turns it off. A port that cannot be bound is logged and the driver serves CSI without it.",
      valueName: "[host]:port"))
  var metricsAddr = ":8095"

  @Flag(name: .customLong("log-format-json"), help: "Log one JSON object per line instead of text.")
  var logFormatJSON = false

  @Option(
    name: .customLong("log-level"),
    help: ArgumentHelp("Log level: trace, debug, info, notice, warning, error, critical. -v=N (klog) also works: 4 and 5 are debug, 6 and up trace.", valueName: "level"))
  var logLevel: String = "info"

  @Flag(help: "Print the version and exit.")
  var version = false

  /// Boolean flags existing manifests pass Go-style, as `--flag=true`.
  static let goBoolFlags = Set(
    ["--enable-secret-rotation", "--provider-health-check", "--log-format-json", "--version"]
      + UpstreamFlag.ignored.filter(\.isBool).map(\.name))

  /// Turns what upstream's Go flag parser accepts into what this parser does:
  /// klog's `-v=N` becomes `--log-level`, `--bool-flag=true|false` becomes the
  /// flag or nothing, single-dash long flags (`-endpoint`) get two dashes, and an
  /// empty `--flag=` (upstream's chart renders one for an emptied list) becomes
  /// the flag with an empty value.
  static func rewriteGoFlags(_ arguments: [String]) -> [String] {
    rewriteKlogVerbosity(arguments).flatMap { a -> [String] in
      var a = a
      if a.hasPrefix("-"), !a.hasPrefix("--"), a.count > 2, a.dropFirst().first?.isLetter == true { a = "-" + a }
      let parts = a.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
      if parts.count == 2, goBoolFlags.contains(parts[0]) {
        switch parts[1].lowercased() {
        case "true", "1", "t": return [parts[0]]
        case "false", "0", "f": return []
        default: return [a]
        }
      }
      if parts.count == 2, parts[0].hasPrefix("--"), parts[1].isEmpty { return [parts[0], ""] }
      return [a]
    }
  }

  /// klog-style `-v=N` / `--v=N`, which existing manifests pass, becomes `--log-level`.
  static func rewriteKlogVerbosity(_ arguments: [String]) -> [String] {
    var out: [String] = []
    var i = 0
    while i < arguments.count {
      let a = arguments[i]
      var level: Int?
      if a.hasPrefix("-v=") || a.hasPrefix("--v=") {
        level = Int(a.split(separator: "=", maxSplits: 1)[1])
      } else if (a == "-v" || a == "--v"), i + 1 < arguments.count, let n = Int(arguments[i + 1]) {
        level = n
        i += 1
      }
      if let level {
        out += ["--log-level", level >= 6 ? "trace" : level >= 4 ? "debug" : "info"]
      } else {
        out.append(a)
      }
      i += 1
    }
    return out
  }

  static func main() async {
    _ = sscd_startup_malloc_arenas()  // links CDriverStartup, whose constructor ran before main
    await main(UpstreamFlag.removingIgnored(from: rewriteGoFlags(Array(CommandLine.arguments.dropFirst()))).arguments)
  }

  func validate() throws {
    if version { return }
    guard let nodeid, !nodeid.isEmpty else {
      throw ValidationError("--nodeid is required: pass this node's name, as kubelet registers it")
    }
    do {
      _ = try Endpoint(parsing: endpoint)
    } catch {
      throw ValidationError("--endpoint: \(error)")
    }
    guard maxCallRecvMsgSize > 0 else { throw ValidationError("--max-call-recv-msg-size must be positive") }
    guard providerMaxConcurrency >= 0 else { throw ValidationError("--provider-max-concurrency must be 0 (no limit) or positive") }
    guard providerQPS >= 0, providerQPS.isFinite else { throw ValidationError("--provider-qps must be 0 (no limit) or positive") }
    guard providerBurst >= 1 else { throw ValidationError("--provider-burst must be at least 1") }
    do {
      let base = try GoDuration.parse(rotationBackoffBase), max = try GoDuration.parse(rotationBackoffMax)
      guard base > .zero, max >= base else {
        throw ValidationError("--rotation-backoff-base must be positive and --rotation-backoff-max at least as long")
      }
    } catch let error as GoDuration.ParseError {
      throw ValidationError("--rotation-backoff-base/--rotation-backoff-max: \(error)")
    }
    do {
      // A kept answer serves refreshes for this long: a window as long as an interval
      // could hand a volume the same answer twice, and content would age past it.
      let window = try GoDuration.parse(rotationCoalesceWindow)
      if window > .zero, let poll = try? GoDuration.parse(rotationPollInterval), let floor = try? GoDuration.parse(rotationMinInterval),
        window >= min(poll, floor)
      {
        throw ValidationError(
          "--rotation-coalesce-window must be shorter than --rotation-poll-interval and --rotation-min-interval (the shortest interval a volume can have)")
      }
    } catch let error as GoDuration.ParseError {
      throw ValidationError("--rotation-coalesce-window: \(error)")
    }
    guard kubeAPIQPS > 0, kubeAPIBurst >= 1 else { throw ValidationError("--kube-api-qps must be positive and --kube-api-burst at least 1") }
    guard Logger.Level(rawValue: logLevel) != nil else {
      throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
    }
    guard !drivername.isEmpty else { throw ValidationError("--drivername must not be empty") }
    guard DriverConfig.lexicallyClean(kubeletRootDir) != nil else {
      throw ValidationError("--kubelet-root-dir must be an absolute path, got \(kubeletRootDir.debugDescription)")
    }
    for (flag, value) in [("--rotation-poll-interval", rotationPollInterval), ("--provider-health-check-interval", providerHealthCheckInterval)] {
      do {
        guard try GoDuration.parse(value) > .zero else { throw ValidationError("\(flag) must be positive") }
      } catch let error as GoDuration.ParseError {
        throw ValidationError("\(flag): \(error)")
      }
    }
    do {
      let spin = try GoDuration.parse(loopSpin)
      guard spin >= .zero && spin <= EventLoop.maxSpin else { throw ValidationError("--loop-spin must be between 0 and 1ms") }
    } catch let error as GoDuration.ParseError {
      throw ValidationError("--loop-spin: \(error)")
    }
    guard (0...EventLoopGroup.maxLoops).contains(eventLoops) else {
      throw ValidationError("--event-loops must be between 0 (one per usable core) and \(EventLoopGroup.maxLoops)")
    }
    do {
      _ = try ListenAddress.parse(metricsAddr)
    } catch {
      throw ValidationError("--metrics-addr: \(error)")
    }
    if let spcDir {
      var isDir = stat()
      guard (try? sys("stat", spcDir) { stat(spcDir, &isDir) }) != nil, (isDir.st_mode & S_IFMT) == S_IFDIR else {
        throw ValidationError("--spc-dir \(spcDir) is not a directory")
      }
    }
  }

  /// Provider sockets, message size, and the limits on Mount calls.
  func providerSettings(searchDirectories dirs: [String]) throws -> ProviderSettings {
    var settings = ProviderSettings(
      searchDirectories: dirs, maxReceiveMessageBytes: maxCallRecvMsgSize,
      gate: ProviderGate.Limits(
        concurrency: providerMaxConcurrency, ratePerSecond: providerQPS > 0 ? providerQPS : nil, burst: providerBurst))
    settings.coalesceWindow = try GoDuration.parse(rotationCoalesceWindow)
    return settings
  }

  func run() async throws {
    if version {
      print("secrets-store-csi-driver \(DriverVersion.current)")
      return
    }
    let json = logFormatJSON
    let level = Logger.Level(rawValue: logLevel)!
    LoggingSystem.bootstrap { StderrLogHandler(label: $0, json: json, level: level) }
    let logger = Logger(label: "secrets-store-csi-driver")
    // The same arguments `main` parsed; each ignored flag once, however often it was given.
    let ignored = UpstreamFlag.removingIgnored(from: Self.rewriteGoFlags(Array(CommandLine.arguments.dropFirst()))).ignored
    for (flag, value) in ignored {
      logger.warning(
        "flag accepted for compatibility with upstream, not implemented yet: ignored",
        metadata: ["flag": "\(flag.name)", "value": "\(value)", "effect": "\(flag.help)"])
    }
    let config = DriverConfig(
      driverName: drivername, version: DriverVersion.current, nodeID: nodeid!,
      kubeletRootDir: DriverConfig.lexicallyClean(kubeletRootDir)!)
    let endpoint = try Endpoint(parsing: endpoint)
    let dirs = additionalProviderVolumePaths.split(separator: ",").map { String($0) }.filter { !$0.isEmpty } + [providerVolume]
    let classes: any SecretProviderClassSource =
      if let spcDir { DirectorySecretProviderClassSource(directory: spcDir, logger: logger) } else { EmptySecretProviderClassSource() }
    var volumes = VolumeSettings(
      rotationEnabled: enableSecretRotation,
      rotationPollInterval: try GoDuration.parse(rotationPollInterval),
      rotationMinInterval: try GoDuration.parse(rotationMinInterval),
      // An update holds the old and the new content for a moment.
      tmpfsSizeBytes: max(8 << 20, 2 * maxCallRecvMsgSize))
    volumes.rotationBackoffBase = try GoDuration.parse(rotationBackoffBase)
    volumes.rotationBackoffMax = try GoDuration.parse(rotationBackoffMax)
    var mount = MountConfig(
      classes: classes,
      providers: try providerSettings(searchDirectories: dirs),
      volumes: volumes,
      healthCheckInterval: providerHealthCheck ? try GoDuration.parse(providerHealthCheckInterval) : nil,
      stateDirectory: stateDir.isEmpty ? nil : stateDir)
    if spcDir == nil {
      let environment = ProcessInfo.processInfo.environment
      let kube: KubeConfig?
      do {
        if let kubeconfig, !kubeconfig.isEmpty {
          kube = try KubeConfig.load(kubeconfig: kubeconfig)
        } else if environment["KUBERNETES_SERVICE_HOST"] != nil {
          kube = try KubeConfig.inCluster(environment: environment)
        } else {
          kube = nil
        }
      } catch {
        logger.error("cannot use the Kubernetes API: \(error)")
        throw ExitCode.failure
      }
      if let kube {
        var settings = KubeClient.Settings()
        settings.qps = kubeAPIQPS
        settings.burst = kubeAPIBurst
        settings.userAgent = "secrets-store-csi-driver/\(DriverVersion.current)"
        mount.cluster = ClusterMode.Settings(
          kube: kube, client: settings, namespaces: spcNamespaces.split(separator: ",").map(String.init), nodeName: nodeid!)
      } else {
        logger.warning(
          "no SecretProviderClass source: not in a cluster (no KUBERNETES_SERVICE_HOST), and neither --kubeconfig nor --spc-dir was given")
      }
    }
    let loops = EventLoopGroup(
      count: eventLoops == 0 ? EventLoopGroup.defaultLoopCount() : eventLoops, name: "csi-loop", spin: try GoDuration.parse(loopSpin))
    let driver = Driver(
      config: config, endpoint: endpoint, maxReceiveMessageBytes: maxCallRecvMsgSize, logger: logger, mount: mount, loops: loops,
      metricsEndpoints: try ListenAddress.parse(metricsAddr))
    do {
      try await driver.run()
    } catch {
      logger.error("driver stopped: \(error)")
      throw ExitCode.failure
    }
  }
}

/// Flags upstream's driver accepts (its own, klog's and controller-runtime's, all on Go's
/// command line) that this driver does not implement yet. Accepted, so that upstream's
/// DaemonSet and chart start this image unchanged, and warned about once at startup.
struct UpstreamFlag: Sendable {
  var name: String
  /// A boolean takes no value (`--flag`, or `--flag=true|false` before `rewriteGoFlags`).
  var isBool: Bool
  var valueName: String
  /// What upstream does with it, and what this driver does instead.
  var help: String

  static func bool(_ name: String, _ help: String) -> UpstreamFlag {
    UpstreamFlag(name: name, isBool: true, valueName: "", help: help)
  }

  static func value(_ name: String, _ valueName: String, _ help: String) -> UpstreamFlag {
    UpstreamFlag(name: name, isBool: false, valueName: valueName, help: help)
  }

  static let ignored: [UpstreamFlag] = [
    .value("--metrics-backend", "name", "upstream's metrics exporter (Prometheus); this driver always serves Prometheus text on --metrics-addr"),
    .bool("--enable-pprof", "upstream's Go profiling endpoint; there is no Go runtime to profile"),
    .value("--pprof-port", "port", "port of upstream's Go profiling endpoint; see --enable-pprof"),
    .bool("--filtered-watch-secret", "removed upstream in v1.3 (always on since); no Secret watch yet"),
    .value("--vmodule", "pattern=N", "klog's per-file verbosity; use -v or --log-level"),
    .bool("--logtostderr", "klog; this driver always logs to stderr"),
    .bool("--alsologtostderr", "klog; this driver always logs to stderr"),
    .value("--stderrthreshold", "level", "klog; this driver always logs to stderr"),
    .value("--log_dir", "dir", "klog's log files; this driver logs to stderr only"),
    .value("--log_file", "path", "klog's log files; this driver logs to stderr only"),
    .value("--log_file_max_size", "MB", "klog's log files; this driver logs to stderr only"),
    .bool("--skip_headers", "klog's line headers; always written"),
    .bool("--skip_log_headers", "klog's log file headers; no log files"),
    .bool("--add_dir_header", "klog's line headers; always written"),
    .bool("--one_output", "klog's log files; this driver logs to stderr only"),
    .value("--log_backtrace_at", "file:N", "klog's stack traces on a line; not supported"),
  ]

  private static let byName: [String: UpstreamFlag] = Dictionary(uniqueKeysWithValues: ignored.map { ($0.name, $0) })

  /// Splits `arguments` (after `rewriteGoFlags`) into those for the parser and the ignored
  /// flags given, each once, in order of first appearance, with the value last given.
  static func removingIgnored(from arguments: [String]) -> (arguments: [String], ignored: [(UpstreamFlag, String)]) {
    var kept: [String] = []
    var found: [(UpstreamFlag, String)] = []
    func note(_ flag: UpstreamFlag, _ value: String) {
      if let i = found.firstIndex(where: { $0.0.name == flag.name }) {
        found[i].1 = value
      } else {
        found.append((flag, value))
      }
    }
    var i = 0
    while i < arguments.count {
      let argument = arguments[i]
      i += 1
      if argument == "--" {
        kept += arguments[(i - 1)...]
        break
      }
      let parts = argument.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
      guard let flag = byName[parts[0]] else {
        kept.append(argument)
        continue
      }
      if parts.count == 2 {
        note(flag, parts[1])
      } else if flag.isBool {
        note(flag, "true")
      } else if i < arguments.count {
        note(flag, arguments[i])
        i += 1
      } else {
        kept.append(argument)  // no value: let the parser say so
      }
    }
    return (kept, found)
  }
}
