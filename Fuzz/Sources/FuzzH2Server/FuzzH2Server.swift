// Bytes from an untrusted client into the driver's gRPC server: the server side of one
// HTTP/2 connection (nghttp2's session, GRPCServerStream: headers, grpc-timeout, metadata,
// the 5-byte message deframer, size limits, rejections), GRPCCore's routing, the logging
// interceptor and the driver's Identity and Node services, as `Driver` assembles them,
// with a publisher that touches no disk. Each input is one connection on the real event
// loop. The input follows the client connection preface, which the harness sends first.
// After the input the connection is closed; every stream and the connection must then be
// released, or the run counts as a leak and stops the fuzzer.
import CSIMessages
import Dispatch
import DriverCore
import GRPCCore
@testable import GRPCH2
import Logging
import UVRuntime

/// Takes what the server writes and drops it: the client side is the fuzzer.
final class SinkStream: ByteStream, @unchecked Sendable {
  let loop: EventLoop
  weak var delegate: (any ByteStreamDelegate)?
  let remoteAddress = "in-process:fuzz/client"
  let localAddress = "in-process:fuzz/server"
  var pendingWriteBytes: Int { 0 }
  private(set) var isOpen = true
  private(set) var written = 0

  init(loop: EventLoop) { self.loop = loop }

  func startReading() {}
  func stopReading() {}
  func write(_ bytes: UnsafeRawBufferPointer) { written += bytes.count }

  func close() {
    guard isOpen else { return }
    isOpen = false
    // As a socket does: the delegate hears of the close on a later turn.
    closing = delegate
    delegate = nil
    loop.execute { self.reportClose() }
  }

  private var closing: (any ByteStreamDelegate)?

  private func reportClose() {
    let delegate = closing
    closing = nil
    delegate?.byteStreamDidClose(self, error: nil)
  }

  func closeAfterFlush() { close() }
}

/// One input: a connection fed the input, then closed, then checked for leaks. Loop thread only.
final class Run: H2ConnectionOwner, @unchecked Sendable {
  static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
  /// Turns of the loop's queue between the input and the close, so handlers get to answer.
  static let settleTurns = 8
  /// Turns allowed for everything to be released after the close; beyond that it leaked.
  static let releaseTurns = 100_000

  let server: H2ServerTransport
  let input: [UInt8]
  let done: DispatchSemaphore
  private var connection: H2Connection?
  private weak var releasedConnection: H2Connection?
  private var streams: [WeakStream] = []

  struct WeakStream { weak var stream: H2Stream? }

  init(server: H2ServerTransport, input: [UInt8], done: DispatchSemaphore) {
    self.server = server
    self.input = input
    self.done = done
  }

  func start() {
    let sink = SinkStream(loop: server.loop)
    let connection = H2Connection(role: .server, transport: sink, owner: self, maxConcurrentStreams: 16)
    self.connection = connection
    releasedConnection = connection
    let bytes = Run.preface + input
    bytes.withUnsafeBytes { connection.byteStream(sink, didRead: $0) }
    settle(Run.settleTurns)
  }

  private func settle(_ turns: Int) {
    if turns > 0 {
      server.loop.execute { self.settle(turns - 1) }
      return
    }
    connection?.close()
    connection = nil
    awaitRelease(Run.releaseTurns)
  }

  private func awaitRelease(_ turns: Int) {
    let alive = streams.filter { $0.stream != nil }.count
    if alive == 0 && releasedConnection == nil {
      done.signal()
      return
    }
    guard turns > 0 else {
      fatalError("leak: \(alive) stream(s) and \(releasedConnection == nil ? "no" : "the") connection still held after close")
    }
    server.loop.execute { self.awaitRelease(turns - 1) }
  }

  // H2ConnectionOwner
  func connection(_ connection: H2Connection, openStream id: Int32) -> H2Stream? {
    let stream = GRPCServerStream(connection: connection, server: server)
    streams.append(WeakStream(stream: stream))
    return stream
  }

  func connectionDidClose(_ connection: H2Connection) {}
  func connectionDidReceiveGoAway(_ connection: H2Connection) {}
}

/// Answers every publish and unpublish that passed validation, as a mounted volume would.
struct DisklessPublisher: VolumePublisher {
  func publish(_ request: ValidPublishRequest, deadline: ContinuousClock.Instant?) async throws -> CSI.NodePublishVolumeResponse {
    CSI.NodePublishVolumeResponse()
  }

  func unpublish(_ request: CSI.NodeUnpublishVolumeRequest, deadline: ContinuousClock.Instant?) async throws
    -> CSI.NodeUnpublishVolumeResponse
  {
    CSI.NodeUnpublishVolumeResponse()
  }
}

/// Renders every log line at every level (the request sanitizer runs), then drops it.
struct DiscardingLogHandler: LogHandler {
  var metadata: Logger.Metadata = [:]
  var metadataProvider: Logger.MetadataProvider?
  var logLevel: Logger.Level = .trace
  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }
  func log(event: LogEvent) { _ = event.message.description }
}

let harness: (loop: EventLoop, server: H2ServerTransport) = {
  // Spinning: the next input comes from libFuzzer's thread right after the last one is
  // done, and a sleeping loop thread must be woken for each. Each input costs ~0.2 ms of
  // CPU; on a loaded machine the two thread wakeups per input were most of its time.
  let loop = EventLoop(name: "fuzz-h2", spin: EventLoop.maxSpin)
  // Small limits, so inputs reach them.
  let config = H2ServerTransport.Config(
    endpoint: .memory(name: "fuzz-h2-server"), maxReceiveMessageBytes: 16 << 10, maxConcurrentStreams: 16)
  let transport = H2ServerTransport(config: config, loop: loop)
  let driver = DriverConfig(version: "fuzz", nodeID: "fuzz-node")
  let server = GRPCServer(
    transport: transport,
    services: [IdentityService(config: driver), NodeService(config: driver, publisher: DisklessPublisher())],
    interceptors: [LoggingInterceptor(logger: Logger(label: "fuzz", factory: { _ in DiscardingLogHandler() }))])
  let ready = DispatchSemaphore(value: 0)
  Task {
    async let serving: Void = server.serve()
    await transport.waitUntilListening()
    ready.signal()
    try await serving
  }
  ready.wait()
  return (loop, transport)
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
  let done = DispatchSemaphore(value: 0)
  let run = Run(server: harness.server, input: input, done: done)
  harness.loop.execute { run.start() }
  done.wait()
  return 0
}
