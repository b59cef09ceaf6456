import ArgumentParser
import CurlHTTP
import Glibc
import KubeClient
import Logging
import OperatorCore
import UVRuntime
import LogOutput

/// Turns flags into a validated configuration and runs the operator; nothing else.
@main
struct OperatorCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "secrets-store-csi-driver-operator",
    abstract: "Installs and keeps the Secrets Store CSI driver from one cluster resource.",
    discussion: """
      Watches one cluster-scoped resource (OpenShift's ClusterCSIDriver named secrets-store.csi.k8s.io, or a SecretsStoreCSIDriver of group operator.secrets-store.csi.x-k8s.io on any cluster) and reconciles the driver's CRDs, CSIDriver, DaemonSet, RBAC and metrics Service from the manifests compiled into this binary. spec.managementState: Managed, Unmanaged or Removed. docs/operator.md has the fields.

      In a pod it uses the service account (in-cluster configuration); elsewhere pass --kubeconfig. SIGTERM or SIGINT stops it.
      """
  )

  @Option(help: ArgumentHelp("A kubeconfig file (default: the in-cluster configuration).", valueName: "path"))
  var kubeconfig: String?

  @Option(
    name: .customLong("resource-kind"),
    help: ArgumentHelp("The cluster resource to watch: ClusterCSIDriver (OpenShift), SecretsStoreCSIDriver, or auto (ClusterCSIDriver where the API serves it).", valueName: "kind"))
  var resourceKind = "auto"

  @Option(help: ArgumentHelp("Namespace of the driver's objects (default: $POD_NAMESPACE, the operator's own, in a pod; else openshift-cluster-csi-drivers for ClusterCSIDriver, kube-system for SecretsStoreCSIDriver).", valueName: "name"))
  var namespace: String?

  @Option(name: .customLong("driver-image"), help: ArgumentHelp("The driver image when the cluster resource names none (default: deploy/'s).", valueName: "image"))
  var driverImage: String?

  @Option(name: .customLong("resync-interval"), help: ArgumentHelp("Check everything this often even without events, in seconds.", valueName: "seconds"))
  var resyncInterval = 600

  @Flag(name: .customLong("log-format-json"), help: "Log one JSON object per line instead of text.")
  var logFormatJSON = false

  @Option(name: .customLong("log-level"), help: ArgumentHelp("trace, debug, info, notice, warning, error, critical.", valueName: "level"))
  var logLevel = "info"

  func validate() throws {
    guard resourceKind == "auto" || ClusterResource.named(resourceKind) != nil else {
      throw ValidationError("--resource-kind must be ClusterCSIDriver, SecretsStoreCSIDriver or auto")
    }
    guard Logger.Level(rawValue: logLevel) != nil else {
      throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
    }
    if let driverImage, DriverSettings.imageProblem(driverImage) != nil {
      throw ValidationError("--driver-image: \(DriverSettings.imageProblem(driverImage)!)")
    }
    guard resyncInterval > 0 else { throw ValidationError("--resync-interval must be positive") }
  }

  func run() async throws {
    let json = logFormatJSON
    let level = Logger.Level(rawValue: logLevel)!
    LoggingSystem.bootstrap { StderrLogHandler(label: $0, json: json, level: level) }
    let logger = Logger(label: "secrets-store-csi-driver-operator")
    let kubeConfig: KubeConfig
    do {
      if let kubeconfig {
        kubeConfig = try KubeConfig.load(kubeconfig: kubeconfig)
      } else {
        var env: [String: String] = [:]
        for key in ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"] {
          if let v = getenv(key) { env[key] = String(cString: v) }
        }
        kubeConfig = try KubeConfig.inCluster(environment: env)
      }
    } catch {
      logger.error("no Kubernetes API configuration: \(error)")
      throw ExitCode.failure
    }
    let loop = EventLoop(name: "operator-loop")
    let http = HTTPClient(loop: loop)
    var settings = KubeClient.Settings()
    settings.userAgent = "secrets-store-csi-driver-operator"
    settings.qps = 20
    settings.burst = 100
    let client = KubeClient(config: kubeConfig, transport: CurlKubeTransport(config: kubeConfig, http: http), loop: loop, settings: settings)
    let kind: ClusterResource
    if let named = ClusterResource.named(resourceKind) {
      kind = named
    } else {
      do {
        kind = try await ClusterResource.detect(client: client) { try await loop.sleep(milliseconds: $0) }
      } catch {
        await http.shutdown()
        await loop.shutdownAndWait()
        throw ExitCode.failure
      }
    }
    let podNamespace = getenv("POD_NAMESPACE").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
    var config = OperatorConfig(clusterResource: kind, namespace: namespace ?? podNamespace, defaultDriverImage: driverImage)
    config.resyncInterval = .seconds(resyncInterval)
    logger.info(
      "starting",
      metadata: [
        "resource": "\(config.clusterResource.resource)/\(config.clusterResource.name)", "namespace": "\(config.namespace)",
        "flavour": "\(config.flavour.rawValue)", "server": "\(kubeConfig.server)",
      ])

    let op = Operator(reconciler: Reconciler(client: client, config: config, logger: logger), loop: loop)

    let task = Task { await op.run() }
    // SIGTERM / SIGINT cancel the operator; the handles close on the loop.
    let signals = Locked<[UVSignal]>([])
    loop.execute {
      for sig in [UVSignal.terminate, UVSignal.interrupt] {
        if let s = try? UVSignal(on: loop, signal: sig, { _ in task.cancel() }) { signals.withLock { $0.append(s) } }
      }
    }
    await task.value
    logger.info("stopping")
    await http.shutdown()
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
      loop.execute {
        for s in signals.withLock({ $0 }) { s.close() }
        c.resume()
      }
    }
    await loop.shutdownAndWait()
    // Every handle must have been closed by its owner; the tests fail on this line.
    if !loop.leakedHandles.isEmpty || loop.closeResult != 0 {
      logger.error("libuv handles left open at shutdown", metadata: ["handles": "\(loop.leakedHandles)", "uv_loop_close": "\(loop.closeResult)"])
      throw ExitCode.failure
    }
  }
}
