import CSIMessages
import DriverCore
import GRPCCore
import GRPCInProcessTransport
import Logging
import Synchronization

let testConfig = DriverConfig(version: "v9.9.9-test", nodeID: "node-a")

/// Runs `body` against the Identity and Node services over the in-process transport.
func withDriver<Result: Sendable>(
  config: DriverConfig = testConfig,
  publisher: any VolumePublisher = RecordingPublisher(),
  readiness: Readiness = Readiness(),
  interceptors: [any ServerInterceptor] = [],
  _ body: (GRPCClient<InProcessTransport.Client>) async throws -> Result
) async throws -> Result {
  let transport = InProcessTransport()
  return try await withGRPCServer(
    transport: transport.server,
    services: [IdentityService(config: config, readiness: readiness), NodeService(config: config, publisher: publisher)],
    interceptors: interceptors
  ) { _ in
    try await withGRPCClient(transport: transport.client) { client in
      try await body(client)
    }
  }
}

/// The status code and message a call ends with.
func status<Request, Response>(
  _ client: GRPCClient<InProcessTransport.Client>,
  _ method: UnaryMethod<Request, Response>,
  _ request: Request
) async -> (code: RPCError.Code?, message: String) {
  do {
    _ = try await client.call(method, request)
    return (nil, "")
  } catch let error as RPCError {
    return (error.code, error.message)
  } catch {
    return (nil, "unexpected \(error)")
  }
}

/// A publisher that succeeds and remembers what it was asked.
final class RecordingPublisher: VolumePublisher {
  let published = Mutex<[CSI.NodePublishVolumeRequest]>([])
  let unpublished = Mutex<[CSI.NodeUnpublishVolumeRequest]>([])

  func publish(_ request: ValidPublishRequest, deadline: ContinuousClock.Instant?) async throws -> CSI.NodePublishVolumeResponse {
    self.published.withLock { $0.append(request.csi) }
    return CSI.NodePublishVolumeResponse()
  }

  func unpublish(_ request: CSI.NodeUnpublishVolumeRequest, deadline: ContinuousClock.Instant?) async throws -> CSI.NodeUnpublishVolumeResponse {
    self.unpublished.withLock { $0.append(request) }
    return CSI.NodeUnpublishVolumeResponse()
  }
}

/// Collects every formatted log line, metadata included.
final class CapturedLogs: Sendable {
  let lines = Mutex<[String]>([])

  var all: [String] { self.lines.withLock { $0 } }

  func logger(level: Logger.Level) -> Logger {
    var logger = Logger(label: "test") { _ in CapturingHandler(sink: self) }
    logger.logLevel = level
    return logger
  }
}

struct CapturingHandler: LogHandler {
  let sink: CapturedLogs
  var metadata: Logger.Metadata = [:]
  var logLevel: Logger.Level = .trace

  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { self.metadata[key] }
    set { self.metadata[key] = newValue }
  }

  func log(event: LogEvent) {
    let merged = self.metadata.merging(event.metadata ?? [:]) { $1 }
    let rendered = merged.keys.sorted().map { "\($0)=\(merged[$0]!)" }.joined(separator: " ")
    self.sink.lines.withLock { $0.append("\(event.level) \(event.message) \(rendered)") }
  }
}

let validPublish = CSI.NodePublishVolumeRequest(
  volumeID: "csi-4f2a",
  targetPath: "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/secrets/mount",
  volumeCapability: .init(accessType: .mount(.init()), accessMode: .init(mode: .singleNodeWriter)),
  readonly: true,
  volumeContext: [
    "secretProviderClass": "my-spc", "csi.storage.k8s.io/pod.name": "web-0", "csi.storage.k8s.io/pod.namespace": "default",
  ]
)
