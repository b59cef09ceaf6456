public import CurlHTTP
public import KubeClient
public import Logging
public import UVRuntime

/// The driver in a cluster: SecretProviderClasses from a watch-fed cache, status objects,
/// synced Secrets and events written through the API, all on the driver's loop (CurlHTTP
/// drives libcurl from it: no thread of its own, no second event loop).
public final class ClusterMode: Sendable {
  public struct Settings: Sendable {
    public var kube: KubeConfig
    public var client: KubeClient.Settings
    /// `--spc-namespaces`: watch only these (empty: all namespaces with one watch).
    public var namespaces: [String]
    public var nodeName: String

    public init(kube: KubeConfig, client: KubeClient.Settings = .init(), namespaces: [String] = [], nodeName: String) {
      self.kube = kube
      self.client = client
      self.namespaces = namespaces
      self.nodeName = nodeName
    }
  }

  public let http: HTTPClient
  public let client: KubeClient
  public let classes: ClusterSecretProviderClassSource
  public let status: StatusWriter
  public let events: EventRecorder
  let logger: Logger

  public init(settings: Settings, loop: EventLoop, logger: Logger, metrics: DriverMetrics? = nil) {
    http = HTTPClient(loop: loop)
    client = KubeClient(
      config: settings.kube, transport: CurlKubeTransport(config: settings.kube, http: http), loop: loop, settings: settings.client)
    classes = ClusterSecretProviderClassSource(client: client, namespaces: settings.namespaces)
    events = EventRecorder(client: client, nodeName: settings.nodeName, loop: loop, logger: logger)
    status = StatusWriter(client: client, nodeName: settings.nodeName, loop: loop, logger: logger, events: events, metrics: metrics)
    self.logger = logger
  }

  /// Runs the caches until the task is cancelled.
  public func run() async {
    let synced = Task { [classes, logger] in
      await classes.waitUntilSynced()
      logger.info("SecretProviderClass cache synced")
    }
    await classes.run()
    synced.cancel()
  }

  /// After the CSI server has drained: give queued status writes a moment to land,
  /// then close the HTTP client (its libuv handles with it).
  public func shutdown(grace: Duration = .seconds(5)) async {
    var waited = Duration.zero
    while await !status.isIdle, waited < grace {
      try? await http.loop.sleep(milliseconds: 50)
      waited += .milliseconds(50)
    }
    await http.shutdown()
  }
}
