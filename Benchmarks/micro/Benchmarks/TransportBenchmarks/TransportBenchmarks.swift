import Benchmark
import GRPCCore
import GRPCH2
import Glibc
import MicroSupport
import UVRuntime

// One unary RPC per iteration through GRPCClient/GRPCServer (GRPCCore) over our HTTP/2
// transport, server and client on one EventLoop, as in the driver. The request is about the
// size of a kubelet NodePublishVolumeRequest, the response empty like NodePublishVolumeResponse.
// Malloc counts include the loop thread's: the whole process is counted.
let benchmarks: @Sendable () -> Void = {
  for kind in ["memory", "unix"] {
    let rig = Slot<SinkRig>()
    let configuration = Micro.configuration(
      mallocSlack: 1,
      setup: { rig.value = try await SinkRig.start(endpoint(kind)) },
      teardown: {
        try await rig.value?.stop()
        rig.value = nil
      }
    )
    Benchmark("unary.\(kind)", configuration: configuration) { benchmark in
      let running = try rig.get("the server")
      try await benchmark.measuringCPU { try await running.roundTrips(benchmark.scaledIterations.count) }
    }
  }
}

func endpoint(_ kind: String) -> Endpoint {
  switch kind {
  case "unix":
    var template = Array("/tmp/csi-micro-XXXXXX".utf8CString)
    let directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    return .unix(path: "\(directory)/echo.sock")
  default:
    return .memory(name: "micro-echo-\(getpid())")
  }
}

struct RawBytes: MessageSerializer, MessageDeserializer {
  func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
  func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> [UInt8] {
    bytes.withUnsafeBytes { Array($0) }
  }
}

/// Answers every request with an empty message.
struct SinkService: RegistrableRPCService {
  static let publish = MethodDescriptor(fullyQualifiedService: "micro.Sink", method: "Publish")

  func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    router.registerHandler(forMethod: Self.publish, deserializer: RawBytes(), serializer: RawBytes()) { request, _ in
      let single = try await ServerRequest(stream: request)
      guard single.message.count == SinkRig.requestBytes else {
        throw RPCError(code: .invalidArgument, message: "unexpected request size \(single.message.count)")
      }
      return StreamingServerResponse(single: ServerResponse(message: []))
    }
  }
}

/// A server and a connected client on one loop, running until `stop`.
final class SinkRig: Sendable {
  static let requestBytes = 1536

  let loop: EventLoop
  let endpoint: Endpoint
  let server: GRPCServer<H2ServerTransport>
  let client: GRPCClient<H2ClientTransport>
  let serving: Task<Void, any Error>
  let connected: Task<Void, any Error>
  let request = ClientRequest(message: [UInt8](repeating: 0x5A, count: SinkRig.requestBytes))

  private init(endpoint: Endpoint) async {
    loop = EventLoop(name: "micro-transport")
    self.endpoint = endpoint
    let serverTransport = H2ServerTransport(config: .init(endpoint: endpoint), loop: loop)
    server = GRPCServer(transport: serverTransport, services: [SinkService()])
    serving = Task(executorPreference: loop) { [server] in try await server.serve() }
    await serverTransport.waitUntilListening()
    client = GRPCClient(transport: H2ClientTransport(config: .init(endpoint: endpoint), loop: loop))
    connected = Task(executorPreference: loop) { [client] in try await client.runConnections() }
  }

  static func start(_ endpoint: Endpoint) async throws -> SinkRig {
    let rig = await SinkRig(endpoint: endpoint)
    do {
      try await rig.roundTrips(1)  // dials and opens the HTTP/2 connection outside the measurement
    } catch {
      try? await rig.stop()
      throw error
    }
    return rig
  }

  /// `count` RPCs one after another, from a task that prefers the loop (as the driver's
  /// clients do), so the numbers are the transport's and not the global pool's hops.
  func roundTrips(_ count: Int) async throws {
    try await withTaskExecutorPreference(loop) {
      for _ in 0..<count {
        let reply = try await client.unary(
          request: request, descriptor: SinkService.publish,
          serializer: RawBytes(), deserializer: RawBytes(), options: .defaults
        ) { try $0.message }
        guard reply.isEmpty else { throw BenchmarkFailure("unexpected reply of \(reply.count) bytes") }
      }
    }
  }

  func stop() async throws {
    client.beginGracefulShutdown()
    try await connected.value
    server.beginGracefulShutdown()
    try await serving.value
    await loop.shutdownAndWait()
    if case .unix(let path) = endpoint {
      unlink(path)
      rmdir(String(path.prefix(upTo: path.lastIndex(of: "/")!)))
    }
    guard loop.leakedHandles.isEmpty else { throw BenchmarkFailure("leaked handles: \(loop.leakedHandles)") }
  }
}
