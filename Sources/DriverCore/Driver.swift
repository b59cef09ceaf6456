import GRPCCore
import CSIMessages
import GRPCH2
import KubeClient
import Glibc
public import Logging
import Telemetry
public import UVRuntime

/// What the mount path needs beyond the CSI basics (from flags).
public struct MountConfig: Sendable {
  public var classes: any SecretProviderClassSource
  public var providers: ProviderSettings
  public var volumes: VolumeSettings
  /// `--provider-health-check`: call every provider's Version this often.
  public var healthCheckInterval: Duration?
  /// In a cluster: the Kubernetes API (classes from it, status objects, Secrets, events).
  /// When set, its class source replaces `classes`.
  public var cluster: ClusterMode.Settings?
  /// `--state-dir`: where a record per volume is kept, so that a restarted driver keeps
  /// serving its volumes (nil: no records; volumes are adopted at their next republish).
  public var stateDirectory: String?

  public init(
    classes: any SecretProviderClassSource = EmptySecretProviderClassSource(), providers: ProviderSettings = ProviderSettings(),
    volumes: VolumeSettings = VolumeSettings(), healthCheckInterval: Duration? = nil, cluster: ClusterMode.Settings? = nil,
    stateDirectory: String? = nil
  ) {
    self.stateDirectory = stateDirectory
    self.classes = classes
    self.providers = providers
    self.volumes = volumes
    self.healthCheckInterval = healthCheckInterval
    self.cluster = cluster
  }
}

/// The running driver: a group of loops, the CSI gRPC server on loop 0, volumes
/// sharded over all loops by target path, provider connections per loop, signal
/// handling. `run()` is its lifetime: it returns after a graceful shutdown, with
/// every libuv handle of every loop closed and every loop thread joined.
/// Who runs where: docs/architecture.md, "Threads and loops".
public final class Driver: Sendable {
  public let config: DriverConfig
  public let endpoint: Endpoint
  /// Loop 0: the CSI listener, the metrics endpoint, signals, rotation timing,
  /// cluster mode (Kubernetes API), provider health checks.
  public let loop: EventLoop
  /// Every loop; volumes and their provider connections are spread over them.
  public let loops: EventLoopGroup
  public let volumes: VolumeRegistry
  public let providers: ProviderConnections
  let mount: MountConfig
  let logger: Logger
  let server: GRPCServer<H2ServerTransport>
  let transport: H2ServerTransport
  let publisher: MountingPublisher
  /// What the Identity service's Probe answers.
  public let readiness: Readiness
  let loopHealth: LoopHealthSettings
  /// The Kubernetes side, in a cluster.
  public let cluster: ClusterMode?
  /// With rotation on: refreshes volumes when they are due, republished or not.
  public let rotation: RotationScheduler?
  public let metrics: DriverMetrics
  public let health: DriverHealth
  /// Serves `/metrics`, `/healthz`, `/readyz` (`--metrics-addr`); nil when turned off.
  let http: HTTPServer?
  let httpEndpoints: [Endpoint]

  public init(
    config: DriverConfig, endpoint: Endpoint, maxReceiveMessageBytes: Int, logger: Logger, mount: MountConfig = MountConfig(),
    loop: EventLoop? = nil, loops: EventLoopGroup? = nil, loopHealth: LoopHealthSettings = LoopHealthSettings(), metricsEndpoints: [Endpoint]? = nil
  ) {
    self.config = config
    self.endpoint = endpoint
    self.logger = logger
    self.mount = mount
    self.loopHealth = loopHealth
    readiness = Readiness(recovery: loopHealth.recovery)
    // `loops` wins; a single `loop` is a group of one; neither: one new loop.
    let loops = loops ?? EventLoopGroup(loops: [loop ?? EventLoop(name: "csi-loop")])
    self.loops = loops
    let loop = loops.first
    self.loop = loop
    let metrics = DriverMetrics(version: config.version)
    self.metrics = metrics
    providers = ProviderConnections(loops: loops, settings: mount.providers, metrics: metrics)
    volumes = VolumeRegistry(loops: loops)
    let cluster = mount.cluster.map { ClusterMode(settings: $0, loop: loop, logger: logger, metrics: metrics) }
    self.cluster = cluster
    if let cluster {
      let classes = cluster.classes
      readiness.require("SecretProviderClass cache synced") { classes.isSynced }
    }
    var plan = RotationPlan.Settings(defaultInterval: mount.volumes.rotationPollInterval, floor: mount.volumes.rotationMinInterval)
    plan.backoffBase = mount.volumes.rotationBackoffBase
    plan.backoffCap = mount.volumes.rotationBackoffMax
    let rotation = mount.volumes.rotationEnabled ? RotationScheduler(settings: plan, loop: loop, logger: logger, metrics: metrics) : nil
    self.rotation = rotation
    let health = DriverHealth(endpoint: endpoint, readiness: readiness, providers: providers, metrics: metrics)
    self.health = health
    httpEndpoints = metricsEndpoints ?? []
    http = metricsEndpoints.map { _ in HTTPServer(loop: loop, routes: health.routes()) }
    var volumeSettings = mount.volumes
    volumeSettings.mountSource = config.driverName
    volumeSettings.kubeletRootDir = config.kubeletRootDir  // one flag, one value: the config's
    var env = VolumeEnvironment(
      classes: cluster?.classes ?? mount.classes, providers: providers, settings: volumeSettings, logger: logger,
      status: cluster?.status, events: cluster?.events, rotation: rotation, metrics: metrics)
    if let directory = mount.stateDirectory {
      do {
        env.state = try VolumeStateStore(directory: directory)
      } catch {
        logger.error(
          "cannot use the state directory: volumes are not recorded, and after a restart they are adopted only at their next republish",
          metadata: ["state_dir": "\(directory)", "error": "\(error)"])
      }
    }
    let publisher = MountingPublisher(registry: volumes, env: env)
    self.publisher = publisher
    transport = H2ServerTransport(config: .init(endpoint: endpoint, maxReceiveMessageBytes: maxReceiveMessageBytes), loop: loop)
    server = GRPCServer(
      transport: transport,
      services: [IdentityService(config: config, readiness: readiness), NodeService(config: config, publisher: publisher)],
      interceptors: [LoggingInterceptor(logger: logger)])
  }

  /// Serves until SIGTERM/SIGINT (or `beginGracefulShutdown`), then drains.
  public func run() async throws {
    let signals = try await loop.submit { [self] in
      try [UVSignal.terminate, UVSignal.interrupt].map { signum in
        try UVSignal(on: loop, signal: signum) { [self] signum in onSignal(signum) }
      }
    }
    // Every loop has a heartbeat: a stall on any of them makes the driver not ready.
    var heartbeats: [LoopHeartbeat] = []
    for each in loops.loops {
      let heartbeat = try await each.submit { [logger, loopHealth] in
        LoopHeartbeat(on: each, interval: loopHealth.interval, stallAfter: loopHealth.stallAfter) { length in
          logger.warning("event loop stalled; Probe answers not ready for a while", metadata: ["loop": "\(each.name)", "stall": "\(length)"])
        }
      }
      readiness.watch(heartbeat)
      heartbeats.append(heartbeat)
    }
    logger.info(
      "serving CSI",
      metadata: [
        "endpoint": "\(endpoint)", "event_loops": "\(loops.count)", "driver": "\(config.driverName)", "node": "\(config.nodeID)", "version": "\(config.version)", "kubelet_root": "\(config.kubeletRootDir)",
        "provider_dirs": "\(mount.providers.searchDirectories)", "rotation": "\(mount.volumes.rotationEnabled)",
        "classes": "\(cluster.map { "cluster \($0.client.config.server)" } ?? "\(type(of: mount.classes))")",
      ])
    let providerChecks = mount.healthCheckInterval.map { interval in
      Task(executorPreference: loop) { [self] in await healthChecks(every: interval) }
    }
    var classWatch: Task<Void, Never>?
    if let rotation {
      let publisher = self.publisher
      await rotation.start { target, trigger in await publisher.refreshDue(target: target, trigger: trigger) }
      classWatch = watchRefreshRequests(rotation)
    }
    let caches = cluster.map { cluster in Task(executorPreference: loop) { await cluster.run() } }
    let settling = await recoverVolumes()
    let httpRetry = await startHTTP()
    let serving = Task(executorPreference: loop) { [server] in try await server.serve() }
    let served = Task { [transport, health] in
      await transport.waitUntilListening()
      health.csiServing()
    }
    let result = await serving.result
    served.cancel()
    readiness.beginShutdown()
    httpRetry?.cancel()
    await httpRetry?.value
    await http?.shutdown()
    providerChecks?.cancel()
    await providerChecks?.value
    settling?.cancel()
    await settling?.value
    caches?.cancel()
    await caches?.value
    classWatch?.cancel()
    await classWatch?.value
    await rotation?.stop()
    await cluster?.shutdown()
    await providers.closeAll()
    try await loop.submit {
      for s in signals { s.close() }
    }
    for (each, heartbeat) in zip(loops.loops, heartbeats) {
      try await each.submit { heartbeat.stop() }
    }
    await loops.shutdownAndWait()
    let leaked = loops.leakedHandles
    if !leaked.isEmpty {
      logger.warning("libuv handles left open at shutdown", metadata: ["handles": "\(leaked)"])
    }
    try result.get()
    logger.info("stopped")
  }

  /// On-demand refresh: a class whose refresh annotation changes (cluster), or whose
  /// file is touched (`--spc-dir`), refreshes all its volumes now. Returns the task
  /// that watches the class files (nil in a cluster: the class cache's watch calls back).
  private func watchRefreshRequests(_ rotation: RotationScheduler) -> Task<Void, Never>? {
    let metrics = self.metrics
    if let cluster {
      cluster.classes.onRefreshRequest { namespace, name in
        metrics.onDemandRefreshRequested(source: "annotation")
        rotation.requestClassRefresh(namespace: namespace, name: name)
      }
      return nil
    }
    guard let directory = mount.classes as? DirectorySecretProviderClassSource else { return nil }
    return Task(executorPreference: loop) { [loop] in
      await directory.watchChanges(loop: loop) { classes in
        for spc in classes {
          metrics.onDemandRefreshRequested(source: "file")
          rotation.requestClassRefresh(namespace: spc.namespace, name: spc.name)
        }
      }
    }
  }

  /// Calls Version on every provider with a socket, logging when one becomes
  /// unhealthy or recovers (upstream's `--provider-health-check`).
  private func healthChecks(every interval: Duration) async {
    var unhealthy: Set<String> = []
    let ms = max(1, interval.timerMilliseconds)
    while !Task.isCancelled {
      for name in providers.discoverProviders() {
        do {
          let v = try await providers.connection(for: name).version(timeout: .seconds(5))
          if unhealthy.remove(name) != nil {
            // The provider's own words: scrubbed like its errors.
            let runtime = SecretScrubber.unknownSecrets.scrub("\(v.runtimeName) \(v.runtimeVersion)", limitBytes: 128)
            logger.info("provider healthy again", metadata: ["provider": "\(name)", "runtime": "\(runtime)"])
          }
        } catch {
          if unhealthy.insert(name).inserted {
            logger.warning("provider health check failed", metadata: ["provider": "\(name)", "error": "\(error)"])
          }
        }
      }
      do { try await loop.sleep(milliseconds: ms) } catch { return }
    }
  }

  private let signalCount = Locked(0)

  private func onSignal(_ signum: Int32) {
    let count = signalCount.withLock { n -> Int in
      n += 1
      return n
    }
    if count == 1 {
      logger.info("signal received, shutting down gracefully", metadata: ["signal": "\(signum)"])
      beginGracefulShutdown()
    } else {
      logger.warning("second signal, stopping now", metadata: ["signal": "\(signum)"])
      _exit(1)
    }
  }

  /// Returns once the CSI endpoint is bound (or failed to bind).
  public func waitUntilServing() async {
    await transport.waitUntilListening()
  }

  public func beginGracefulShutdown() {
    readiness.beginShutdown()
    server.beginGracefulShutdown()
  }

  /// Serves `/metrics`, `/healthz` and `/readyz`. A port that cannot be bound
  /// does not stop the driver (the CSI service matters more than its metrics,
  /// and `/readyz` cannot be reached meanwhile, so the readiness probe says
  /// so): it is logged once and tried again every `retry` until it binds (a
  /// previous driver on the same host network may still be draining). Returns
  /// the retrying task, nil once bound or when the endpoint is off.
  private func startHTTP(retry: Duration = .seconds(5)) async -> Task<Void, Never>? {
    guard let http else { return nil }
    if await bindHTTP(http, logFailure: true) { return nil }
    return Task(executorPreference: loop) { [self] in
      while !Task.isCancelled {
        do { try await loop.sleep(milliseconds: retry.timerMilliseconds) } catch { return }
        if await bindHTTP(http, logFailure: false) { return }
      }
    }
  }

  private func bindHTTP(_ http: HTTPServer, logFailure: Bool) async -> Bool {
    do {
      let address = try await http.start(httpEndpoints)
      logger.info("serving metrics and health", metadata: ["address": "\(address)", "paths": "/metrics /healthz /readyz"])
      return true
    } catch {
      if logFailure {
        logger.error(
          "cannot serve metrics and health endpoints; trying again every 5s",
          metadata: ["metrics_addr": "\(httpEndpoints)", "error": "\(error)"])
      }
      return false
    }
  }
}
