import ArgumentParser
import CSIMessages
import GRPCCore
import GRPCH2
import Glibc
import UVRuntime

/// Turns flags into a validated plan, sets up the node (or finds the running
/// driver), runs the simulated kubelet and writes the results.
@main
struct LoadCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "csi-load",
    abstract: "Simulate kubelet on a busy node against the driver: pods arriving, republishing and churning; latency, throughput, errors, driver RSS and CPU.",
    discussion: """
      Either starts the driver and the reference provider itself (--driver-bin, --provider-bin: a temporary directory with generated data files and a SecretProviderClass, standalone mode), or drives a running driver (--endpoint, optionally --driver-pid and --provider-stats).

      Workloads: kubelet (default): --pods arrive by --arrival, later waves with --wave, each mounted pod republished every --republish seconds with fresh service-account tokens, --churn pods per second unpublished and replaced, for --duration; then every remaining volume is unpublished (teardown). cycles: --concurrency workers each publish and unpublish one pod's volume back to back (a microbenchmark of the RPC path).

      Example, "what happens on a node with 500 pods when 100 start at once?":
        csi-load --driver-bin .build/release/secrets-store-csi-driver --pods 500 --arrival rate:100 --spread-first-republish --wave 100@40s --duration 60s --provider-latency normal:50ms,10ms --enable-secret-rotation --out results.json

      Only successful, verified work is measured. After every NodePublishVolume that answers OK the harness reads the volume back: a tmpfs mounted at the target, kubelet's atomic-writer layout (..data -> ..<timestamp>/, every object name a link to ..data/<name>), exactly the objects the provider serves and each one's bytes equal to a value the store has held. --verify-every N checks every N-th successful publish instead (1, the default, checks all: about 25 system calls for 3 objects, reported as verify.cpu_per_check_us, made after the answer is timed so they cost the harness's CPU, not the latency). A NodeUnpublishVolume that answers OK but leaves the target is a failure too. Failures are counted by code (gRPC status names; VERIFY_EMPTY, VERIFY_NOT_MOUNTED, VERIFY_NOT_TMPFS, VERIFY_MISSING_OBJECT, VERIFY_WRONG_CONTENT, VERIFY_LAYOUT, VERIFY_EXTRA_ENTRY, VERIFY_TARGET_LEFT for verification) and timed in a histogram of their own, never in the latency histograms.

      Latency runs from each call's scheduled time (a pod's arrival, a republish or churn due, a retry's backoff ending, the start of the drain), not from when the harness got round to sending it: queueing inside the harness during a burst counts (coordinated omission). The cycles workload is a closed loop: each call is due when its worker is ready. schedule_lag reports the harness's share (timed calls go out up to ~1 ms late: the loop's timers count milliseconds). CPU per call (harness.cpu_per_call_us, driver.cpu_per_call_us) divides each process's CPU time by the calls sent, from the start to the end of the measured part.

      Targets: besides --target, every run has verify_errors<=0, and errors<=0 (all calls, all codes) unless a --target names errors or the provider injects faults (--provider-error-rate, --provider-throttle-*: then give the expected range, e.g. --target errors>=1 --target errors<=40).

      Results: a summary on stdout, a progress line on stderr, JSON with --out (render it with Benchmarks/report.py). Exit status 0; 3 when a target is missed (a failed call or volume included); 1 when the run could not be made or the driver died.
      """
  )

  // MARK: what to drive

  @Option(name: .customLong("driver-bin"), help: ArgumentHelp("Start this driver binary (with the reference provider) in a temporary directory.", valueName: "path"))
  var driverBin: String?

  @Option(name: .customLong("provider-bin"), help: ArgumentHelp("The reference provider binary (default: csi-reference-provider next to --driver-bin).", valueName: "path"))
  var providerBin: String?

  @Option(help: ArgumentHelp("A running driver's endpoint (unix:///path or tcp://host:port) instead of starting one.", valueName: "url"))
  var endpoint: String?

  @Option(name: .customLong("driver-pid"), help: ArgumentHelp("With --endpoint: the driver's pid, to sample its RSS and CPU.", valueName: "pid"))
  var driverPid: Int32?

  @Option(name: .customLong("provider-stats"), help: ArgumentHelp("With --endpoint: the reference provider's --stats-file.", valueName: "path"))
  var providerStats: String?

  @Option(name: .customLong("kubelet-root"), help: ArgumentHelp("With --endpoint: where pod volume directories are made (<dir>/pods/<uid>/volumes/kubernetes.io~csi/<volume>/mount); give the driver the same --kubelet-root-dir.", valueName: "dir"))
  var kubeletRoot = "/tmp/csi-load-kubelet"

  @Option(help: ArgumentHelp("With --endpoint: the SecretProviderClass the pods use.", valueName: "name"))
  var spc = "load"

  @Option(help: ArgumentHelp("The pods' namespace.", valueName: "name"))
  var namespace = "default"

  @Option(name: .customLong("data-dir"), help: ArgumentHelp("With --endpoint: the provider's data directory (for --change-secret-at).", valueName: "dir"))
  var dataDir: String?

  @Option(name: .customLong("change-object"), help: ArgumentHelp("With --endpoint: the object to rewrite (file name in --data-dir and path in the volume).", valueName: "name"))
  var changeObject = "secret-0"

  @Option(
    name: .customLong("expect-object"),
    help: ArgumentHelp(
      "With --endpoint and --data-dir: an object every volume must hold, with the bytes of <data-dir>/<name>; repeatable. Without it only the layout is checked.",
      valueName: "name"))
  var expectObjects: [String] = []

  // MARK: started processes

  @Option(
    name: .customLong("driver-arg"), parsing: .unconditionalSingleValue,
    help: ArgumentHelp("An extra driver flag, repeatable: --driver-arg --max-call-recv-msg-size --driver-arg 8388608.", valueName: "arg"))
  var driverArgs: [String] = []

  @Flag(name: .customLong("enable-secret-rotation"), help: "Pass --enable-secret-rotation to the driver.")
  var enableSecretRotation = false

  @Option(name: .customLong("rotation-poll-interval"), help: ArgumentHelp("Pass --rotation-poll-interval to the driver.", valueName: "duration"))
  var rotationPollInterval: String?

  @Option(name: .customLong("driver-log-level"), help: ArgumentHelp("The driver's --log-level (logging costs CPU too).", valueName: "level"))
  var driverLogLevel = "warning"

  @Option(name: .customLong("provider-latency"), help: ArgumentHelp("Provider latency: 0, 50ms, normal:MEAN,SD or longtail:MEDIAN,P99.", valueName: "spec"))
  var providerLatency = "0"

  @Option(name: .customLong("provider-error-rate"), help: ArgumentHelp("Fraction of provider Mounts that fail.", valueName: "fraction"))
  var providerErrorRate = "0"

  @Option(name: .customLong("provider-error-kind"), help: ArgumentHelp("response, unavailable or internal.", valueName: "kind"))
  var providerErrorKind = "response"

  @Option(name: .customLong("provider-throttle-every"), help: ArgumentHelp("Throttling period, e.g. 60s.", valueName: "duration"))
  var providerThrottleEvery = "0"

  @Option(name: .customLong("provider-throttle-for"), help: ArgumentHelp("Throttled stretch at the end of each period, e.g. 10s.", valueName: "duration"))
  var providerThrottleFor = "0"

  @Option(name: .customLong("tmp-parent"), help: ArgumentHelp(
    "Where the temporary directory (kubelet root, sockets, data) is made. Pod directory creation costs what this file system charges for mkdir: put it on the kind of file system a node's /var/lib/kubelet uses.",
    valueName: "dir"))
  var tmpParent = "/tmp"

  @Option(name: .customLong("loop-spin-us"), help: ArgumentHelp(
    "Microseconds the harness's loop keeps polling after work before sleeping (0 to 1000), as kubelet's Go runtime spins before parking.",
    valueName: "us"))
  var loopSpinUs = 50

  @Flag(name: .customLong("keep-tmp"), help: "Keep the temporary directory (logs, data files) after the run.")
  var keepTmp = false

  // MARK: workload

  @Option(help: ArgumentHelp("kubelet or cycles.", valueName: "kind"))
  var workload = "kubelet"

  @Option(help: ArgumentHelp("Pods at the start (kubelet workload).", valueName: "n"))
  var pods = 10

  @Option(help: ArgumentHelp("How the initial pods arrive: burst, rate:R (pods/s) or ramp:DURATION.", valueName: "pattern"))
  var arrival = "burst"

  @Option(help: ArgumentHelp("A later group of pods, repeatable: COUNT@TIME[:ARRIVAL], e.g. 100@30s.", valueName: "spec"))
  var wave: [String] = []

  @Option(help: ArgumentHelp("Seconds between republishes of a pod, uniformly random: MIN-MAX, or off.", valueName: "range"))
  var republish = "60s-90s"

  @Flag(
    name: .customLong("spread-first-republish"),
    help: "The initial pods' first republish comes at a uniformly random time from 0 to the --republish maximum, as on a node whose pods have been running for a while (default: like new pods).")
  var spreadFirstRepublish = false

  @Option(help: ArgumentHelp("Pods per second unpublished and replaced by new ones.", valueName: "rate"))
  var churn = 0.0

  @Option(help: ArgumentHelp("Objects per pod (started provider).", valueName: "n"))
  var objects = 3

  @Option(name: .customLong("object-size"), help: ArgumentHelp("Bytes per object (started provider).", valueName: "bytes"))
  var objectSize = 256

  @Option(help: ArgumentHelp("Measured run length.", valueName: "duration"))
  var duration = "30s"

  @Option(help: ArgumentHelp("cycles: not measured before this.", valueName: "duration"))
  var warmup = "1s"

  @Option(name: .customLong("cycles"), help: ArgumentHelp("cycles: stop after this many measured publish+unpublish cycles (--duration still caps the run); a fixed amount of work for driver.cpu_per_pair_us.", valueName: "n"))
  var cycleLimit = 0

  @Option(help: ArgumentHelp("cycles: concurrent workers.", valueName: "n"))
  var concurrency = 1

  @Option(name: .customLong("change-secret-at"), help: ArgumentHelp("Rewrite one secret in the store at this time and measure until every volume shows it.", valueName: "duration"))
  var changeSecretAt: String?

  @Option(name: .customLong("token-audiences"), help: ArgumentHelp("Service-account token audiences sent on every publish, comma-separated; none for no tokens.", valueName: "list"))
  var tokenAudiences = "csi-load"

  @Option(name: .customLong("call-timeout"), help: ArgumentHelp("Deadline of each call (kubelet: about 2 minutes).", valueName: "duration"))
  var callTimeout = "2m"

  @Option(name: .customLong("steady-from"), help: ArgumentHelp("Start of the steady-state window for CPU (default: 10 s after the initial pods are mounted).", valueName: "duration"))
  var steadyFrom: String?

  @Option(help: ArgumentHelp("Random seed: same seed, same pods and schedule.", valueName: "n"))
  var seed: UInt64 = 1

  // MARK: output

  @Option(help: ArgumentHelp("Scenario name in the results.", valueName: "name"))
  var scenario = "custom"

  @Option(help: ArgumentHelp("One line describing the scenario.", valueName: "text"))
  var title = ""

  @Option(help: ArgumentHelp("Write the results as JSON here.", valueName: "path"))
  var out: String?

  @Option(help: ArgumentHelp("Pass/fail threshold on a metric, repeatable: first_publish.p99_ms<=80, cycles_per_s>=2000.", valueName: "expr"))
  var target: [String] = []

  @Option(name: .customLong("verify-every"), help: ArgumentHelp("Read back every N-th successfully published volume (1: every one).", valueName: "n"))
  var verifyEvery = 1

  @Flag(help: "No progress line.")
  var quiet = false

  // MARK: validation

  func validate() throws {
    if driverBin == nil && endpoint == nil { throw ValidationError("pass --driver-bin (start a driver) or --endpoint (use a running one)") }
    if driverBin != nil && endpoint != nil { throw ValidationError("--driver-bin and --endpoint exclude each other") }
    if let endpoint { do { _ = try Endpoint(parsing: endpoint) } catch { throw ValidationError("--endpoint: \(error)") } }
    _ = try makePlan(kubeletRoot: kubeletRoot, dataDirectory: dataDir, objectValue: nil, expected: nil)
    for t in target where Target(parsing: t) == nil {
      throw ValidationError("--target \(t): write METRIC<=VALUE or METRIC>=VALUE")
    }
    guard verifyEvery >= 1 else { throw ValidationError("--verify-every must be at least 1") }
    if !expectObjects.isEmpty {
      guard endpoint != nil, dataDir != nil else { throw ValidationError("--expect-object needs --endpoint and --data-dir") }
      for name in expectObjects where name.isEmpty || name.contains("/") || name.hasPrefix("..") {
        throw ValidationError("--expect-object \(name): a file name in --data-dir, without / and not starting with ..")
      }
    }
    guard objects >= 1, objectSize >= 1 else { throw ValidationError("--objects and --object-size must be at least 1") }
    if changeSecretAt != nil && endpoint != nil && dataDir == nil {
      throw ValidationError("--change-secret-at with --endpoint needs --data-dir (the provider's data directory)")
    }
  }

  func makePlan(kubeletRoot: String, dataDirectory: String?, objectValue: [UInt8]?, expected: [ExpectedObject]?) throws -> Plan {
    let kind: Plan.Workload
    switch workload {
    case "kubelet": kind = .kubelet
    case "cycles":
      guard concurrency >= 1 else { throw ValidationError("--concurrency must be at least 1") }
      kind = .cycles(concurrency: concurrency)
    default: throw ValidationError("--workload must be kubelet or cycles")
    }
    guard let initialArrival = Arrival(parsing: arrival) else {
      throw ValidationError("--arrival must be burst, rate:R or ramp:DURATION")
    }
    guard pods >= 0 else { throw ValidationError("--pods must not be negative") }
    var groups = [PodGroup(count: pods, atSeconds: 0, arrival: initialArrival)]
    for w in wave {
      guard let g = PodGroup(parsing: w) else { throw ValidationError("--wave \(w): write COUNT@TIME[:ARRIVAL], e.g. 100@30s") }
      groups.append(g)
    }
    var range: ClosedRange<Double>?
    if republish != "off" {
      let parts = republish.split(separator: "-").map { DurationText.seconds(String($0)) }
      guard parts.count == 2, let lo = parts[0], let hi = parts[1], lo > 0, hi >= lo else {
        throw ValidationError("--republish must be MIN-MAX (e.g. 60s-90s) or off")
      }
      range = lo...hi
    }
    guard churn >= 0, churn.isFinite else { throw ValidationError("--churn must not be negative") }
    func seconds(_ text: String, _ flag: String) throws -> Double {
      guard let s = DurationText.seconds(text) else { throw ValidationError("\(flag) must be a duration like 500ms, 30s or 3m") }
      return s
    }
    guard cycleLimit >= 0 else { throw ValidationError("--cycles must not be negative") }
    let durationS = try seconds(duration, "--duration")
    guard durationS > 0 else { throw ValidationError("--duration must be positive") }
    var change: SecretChange?
    if let at = changeSecretAt {
      let atS = try seconds(at, "--change-secret-at")
      change = SecretChange(
        dataFile: (dataDirectory ?? "") + "/" + changeObject, volumePath: changeObject, newValue: objectValue ?? [], atSeconds: atS)
    }
    let audiences = tokenAudiences == "none" ? [] : tokenAudiences.split(separator: ",").map(String.init)
    return Plan(
      workload: kind, groups: groups, republish: range, spreadFirstRepublish: spreadFirstRepublish, churnPerSecond: churn, durationSeconds: durationS,
      warmupSeconds: try seconds(warmup, "--warmup"), cycleLimit: cycleLimit, change: change, kubeletRoot: kubeletRoot, spc: spc,
      namespace: namespace, volumeName: "secrets-store-inline", serviceAccount: "csi-load", tokenAudiences: audiences,
      callTimeoutSeconds: try seconds(callTimeout, "--call-timeout"),
      steadyFromSeconds: try steadyFrom.map { try seconds($0, "--steady-from") }, seed: seed, progress: !quiet,
      expectedObjects: expected, verifyEvery: verifyEvery)
  }

  /// The provider injects failures: calls may fail, and the expected count is the user's to give.
  var injectsFaults: Bool {
    (Double(providerErrorRate) ?? 0) > 0 || (DurationText.seconds(providerThrottleFor) ?? 0) > 0
  }

  /// --target, plus the error targets every run has (see the discussion in --help).
  var targets: [Target] {
    var all = target.compactMap(Target.init(parsing:))
    if !all.contains(where: { $0.metric == "verify_errors" }) {
      all.append(Target(metric: "verify_errors", op: .atMost, threshold: 0))
    }
    if !injectsFaults && !all.contains(where: { $0.metric == "errors" }) {
      all.append(Target(metric: "errors", op: .atMost, threshold: 0))
    }
    return all
  }

  /// Every option as given, for the results file.
  var configJSON: JSON {
    .object([
      ("workload", .string(workload)), ("pods", .int(pods)), ("arrival", .string(arrival)),
      ("waves", .array(wave.map { .string($0) })), ("republish", .string(republish)),
      ("spread_first_republish", .bool(spreadFirstRepublish)), ("churn_per_s", .number(churn)),
      ("objects", .int(objects)), ("object_size", .int(objectSize)), ("duration", .string(duration)),
      ("warmup", .string(warmup)), ("concurrency", .int(concurrency)),
      ("change_secret_at", changeSecretAt.map { .string($0) } ?? .null), ("token_audiences", .string(tokenAudiences)),
      ("call_timeout", .string(callTimeout)), ("seed", .int(Int(truncatingIfNeeded: seed))),
      ("enable_secret_rotation", .bool(enableSecretRotation)),
      ("rotation_poll_interval", rotationPollInterval.map { .string($0) } ?? .null),
      ("driver_args", .array(driverArgs.map { .string($0) })), ("driver_log_level", .string(driverLogLevel)),
      ("provider_latency", .string(providerLatency)), ("provider_error_rate", .string(providerErrorRate)),
      ("provider_error_kind", .string(providerErrorKind)), ("provider_throttle_every", .string(providerThrottleEvery)),
      ("provider_throttle_for", .string(providerThrottleFor)),
      ("driver_bin", driverBin.map { .string($0) } ?? .null), ("endpoint", endpoint.map { .string($0) } ?? .null),
      ("verify_every", .int(verifyEvery)), ("expect_objects", .array(expectObjects.map { .string($0) })),
    ])
  }

  // MARK: running

  func run() async throws {
    let loop = EventLoop(name: "csi-load", spin: EventLoop.spin(microseconds: loopSpinUs))
    let stop = Locked(false)
    let startedAt = rfc3339()
    var fixture: Fixture?
    var rng = SeededRandom(seed: seed ^ 0x5EC2E7)
    // Same length as the original, so only the content changes.
    func value(_ version: String) -> [UInt8] {
      Array((version + ":" + rng.base64url(Swift.max(0, objectSize - version.count - 1))).utf8.prefix(objectSize))
    }

    var plan: Plan
    var watched = Watched()
    let driverEndpoint: Endpoint
    do {
      if let driverBin {
        let f = try Fixture(parent: tmpParent)
        fixture = f
        let files = (0..<objects).map { Fixture.ObjectFile(name: "secret-\($0)", contents: value("v1")) }
        let changed = value("v2")
        // The volume may show the changed object's old or new value, depending on whether it was refreshed.
        let expected = files.enumerated().map { i, file in
          ExpectedObject(name: file.name, versions: i == 0 && changeSecretAt != nil ? [file.contents, changed] : [file.contents])
        }
        plan = try makePlan(
          kubeletRoot: f.kubeletRoot, dataDirectory: f.dataDirectory, objectValue: changed, expected: expected)
        plan.change?.volumePath = files[0].name
        plan.change?.dataFile = f.dataDirectory + "/" + files[0].name
        var driverArguments = ["--log-level", driverLogLevel]
        if enableSecretRotation { driverArguments.append("--enable-secret-rotation") }
        if let rotationPollInterval { driverArguments += ["--rotation-poll-interval", rotationPollInterval] }
        let providerArguments = [
          "--latency", providerLatency, "--error-rate", providerErrorRate, "--error-kind", providerErrorKind,
          "--throttle-every", providerThrottleEvery, "--throttle-for", providerThrottleFor, "--log-level", "warning",
        ]
        let providerBinary = providerBin ?? Self.sibling(of: driverBin, named: "csi-reference-provider")
        try await f.start(
          Fixture.Options(
            driverBinary: driverBin, providerBinary: providerBinary, driverArguments: driverArguments + driverArgs,
            providerArguments: providerArguments, spcName: spc, namespace: namespace, objects: files),
          loop: loop)
        watched = Watched(driverPid: f.driver?.pid, driver: f.driver, providerPid: f.provider?.pid, providerStatsPath: f.providerStatsPath)
        driverEndpoint = .unix(path: f.driverSocket)
      } else {
        guard Files.makeDirectories(kubeletRoot + "/pods") else { throw ValidationError("cannot create \(kubeletRoot)/pods") }
        var newValue: [UInt8] = []
        if changeSecretAt != nil, let dataDir, let old = Files.read(dataDir + "/" + changeObject) {
          newValue = Array(("v2-" + rng.base64url(Swift.max(1, old.count))).utf8.prefix(Swift.max(old.count, 4)))
        }
        var expected: [ExpectedObject]?
        if !expectObjects.isEmpty, let dataDir {
          expected = try expectObjects.map { name in
            guard let bytes = Files.read(dataDir + "/" + name) else { throw ValidationError("--expect-object \(name): cannot read \(dataDir)/\(name)") }
            return ExpectedObject(name: name, versions: name == changeObject && !newValue.isEmpty ? [bytes, newValue] : [bytes])
          }
        }
        plan = try makePlan(kubeletRoot: kubeletRoot, dataDirectory: dataDir, objectValue: newValue, expected: expected)
        watched = Watched(driverPid: driverPid, driver: nil, providerPid: nil, providerStatsPath: providerStats)
        driverEndpoint = try Endpoint(parsing: endpoint!)
      }
    } catch {
      if let fixture {
        _ = await fixture.stopProcesses(loop: loop)
        if !keepTmp { fixture.remove() }
      }
      await loop.shutdownAndWait()
      if error is ValidationError { throw error }
      printError("csi-load: \(error)")
      throw ExitCode.failure
    }

    let signals = try await loop.submit {
      try [UVSignal.interrupt, UVSignal.terminate].map { signum in
        try UVSignal(on: loop, signal: signum) { _ in
          let again = stop.withLock { already -> Bool in
            defer { already = true }
            return already
          }
          if again { _exit(130) }
          printError("\ncsi-load: stopping early (again to quit at once)")
        }
      }
    }

    let transport = H2ClientTransport(config: .init(endpoint: driverEndpoint, authority: "localhost"), loop: loop)
    let frozenPlan = plan
    let frozenWatched = watched
    var outcome: Result<RunRecord, any Error>
    do {
      let record = try await withGRPCClient(transport: transport) { client in
        try await withTaskExecutorPreference(loop) {
          try await Self.waitUntilServing(client: client, loop: loop)
          let kubelet = Kubelet(client: client, loop: loop, plan: frozenPlan, watched: frozenWatched, stopRequested: stop)
          return await kubelet.run()
        }
      }
      outcome = .success(record)
    } catch {
      outcome = .failure(error)
    }

    var exits: (driver: Int32?, provider: Int32?) = (nil, nil)
    if let fixture {
      exits = await fixture.stopProcesses(loop: loop)
      if keepTmp { printError("csi-load: kept \(fixture.root)") } else { fixture.remove() }
    }
    _ = try? await loop.submit { for s in signals { s.close() } }
    await loop.shutdownAndWait()

    let record: RunRecord
    switch outcome {
    case .failure(let error):
      printError("csi-load: the run failed: \(error)")
      throw ExitCode.failure
    case .success(let r): record = r
    }
    let results = Results(
      scenario: scenario, title: title, startedAt: startedAt, command: Array(CommandLine.arguments), config: configJSON,
      plan: plan, record: record, targets: targets,
      driverMode: driverBin == nil ? "external" : "started", kubeletRootFileSystem: Files.fileSystem(holding: plan.kubeletRoot),
      driverExit: exits.driver.map(ChildProcess.describe),
      providerExit: exits.provider.map(ChildProcess.describe))
    print(results.summary)
    if let out {
      guard Files.write(results.json.serialized(indent: 1) + "\n", to: out) else {
        printError("csi-load: cannot write \(out)")
        throw ExitCode.failure
      }
    }
    if record.aborted != nil { throw ExitCode.failure }
    if results.verdicts.contains(where: { !$0.2 }) { throw ExitCode(3) }
  }

  static func sibling(of path: String, named name: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return name }
    return String(path[...slash]) + name
  }

  /// The socket exists before the server accepts; NodeGetInfo until it answers (30 s at most).
  static func waitUntilServing(client: GRPCClient<H2ClientTransport>, loop: EventLoop) async throws {
    let deadline = monotonicNs() + 30_000_000_000
    while true {
      do {
        _ = try await client.call(CSI.Node.nodeGetInfo, CSI.NodeGetInfoRequest())
        return
      } catch {
        if monotonicNs() > deadline { throw error }
        try await loop.sleep(milliseconds: 50)
      }
    }
  }
}
