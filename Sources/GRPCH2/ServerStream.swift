import CNGHTTP2
import GRPCCore
import UVRuntime

/// The server side of one gRPC call on an HTTP/2 stream. Loop thread only,
/// except `cancellation`, which is locked.
final class GRPCServerStream: H2Stream, @unchecked Sendable {
  typealias Inbound = InboundParts<RPCRequestPart<[UInt8]>>

  private let server: H2ServerTransport
  private var deframer: GRPCMessageDeframer
  private var inbound: Inbound?
  private var started = false
  private var responseHeadersSent = false
  private var statusSent = false
  /// When the caller's `grpc-timeout` runs out; the transport ends the call then.
  private(set) var deadline: ContinuousClock.Instant?
  /// Lets an RST_STREAM from the client cancel the handler, whenever it is attached.
  let cancellation = Locked<(handle: ServerContext.RPCCancellationHandle?, cancelled: Bool)>((nil, false))

  init(connection: H2Connection, server: H2ServerTransport) {
    self.server = server
    deframer = GRPCMessageDeframer(limit: server.config.maxReceiveMessageBytes)
    super.init(connection: connection)
  }

  // MARK: Inbound

  override func didReceiveHeaders(_ headers: HeaderList, endStream: Bool) {
    guard !started else {
      // Request trailers carry nothing for gRPC; only the end of stream matters.
      if endStream { didReceiveEndStream() }
      return
    }
    started = true
    var method = ""
    var path = ""
    var contentType = ""
    var encoding = "identity"
    var metadata = Metadata()
    for (name, value) in headers {
      switch name {
      case ":method": method = value
      case ":path": path = value
      case ":authority", ":scheme", "te", "user-agent": continue
      case "content-type": contentType = value
      case "grpc-encoding": encoding = value
      case "grpc-accept-encoding": continue
      case "grpc-timeout":
        // The transport owns the deadline: its loop timer ends the call, and the
        // handler reads it from `ServerContext.callDeadline`. GRPCCore never
        // sees `grpc-timeout`, so it starts no Task.sleep of its own (on Linux a
        // cancelled sleep keeps its memory until it would have fired: minutes,
        // at kubelet's deadlines, for every call). The first valid one counts.
        if deadline == nil, let timeout = GRPCTimeout.decode(value) {
          deadline = .now + timeout
          startDeadline(timeout)
        }
      case GRPCTimeout.clientDeadlineKey:
        continue  // our client transport's private request, never a peer's to make
      default:
        if name.hasPrefix(":") { continue }
        if name.hasSuffix("-bin") {
          if let bytes = Base64.decode(value) { metadata.addBinary(bytes, forKey: name) }
        } else {
          metadata.addString(value, forKey: name)
        }
      }
    }
    guard method == "POST" else {
      rejectHTTP(status: "405", code: .internalError, message: "gRPC requires POST, got \(method)")
      return
    }
    guard contentType.hasPrefix("application/grpc") else {
      rejectHTTP(status: "415", code: .internalError, message: "invalid content-type \(contentType.isEmpty ? "(none)" : contentType)")
      return
    }
    guard encoding == "identity" else {
      rejectHTTP(status: "200", code: .unimplemented, message: "message compression \(encoding) is not supported")
      return
    }
    guard let descriptor = Self.descriptor(fromPath: path) else {
      rejectHTTP(status: "200", code: .unimplemented, message: "malformed method path \(path)")
      return
    }
    let continuation = Inbound()
    inbound = continuation
    continuation.yield(.metadata(metadata))
    continuation.onTermination = { [weak self, loop = connection.loop] reason in
      guard case .cancelled = reason, let self else { return }
      loop.execute { self.handlerStoppedReading() }
    }
    if endStream { didReceiveEndStream() }
    let rpc = RPCStream(
      descriptor: descriptor,
      inbound: RPCAsyncSequence<RPCRequestPart<[UInt8]>, any Error>(wrapping: ServerInboundParts(parts: continuation)),
      outbound: RPCWriter<RPCResponsePart<[UInt8]>>.Closable(wrapping: ServerStreamWriter(stream: self))
    )
    server.accept(
      AcceptedStream(
        rpc: rpc, stream: self, remotePeer: connection.transport.remoteAddress, localPeer: connection.transport.localAddress,
        call: H2CallContext(deadline: deadline)))
  }

  /// Enforces `grpc-timeout` in the transport, so a call whose request never
  /// arrives still ends.
  private func startDeadline(_ timeout: Duration) {
    startDeadline(timeout) { stream in
      guard let stream = stream as? GRPCServerStream, !stream.statusSent else { return }
      stream.fail(.deadlineExceeded, "deadline of \(timeout) exceeded")
    }
  }

  /// `/service/method`, judged by its bytes: splitting the String into Substrings cost
  /// ~15 000 instructions per call.
  static func descriptor(fromPath path: String) -> MethodDescriptor? {
    let bytes = path.utf8
    let slash = UInt8(ascii: "/")
    guard bytes.first == slash else { return nil }
    let afterFirst = bytes.index(after: bytes.startIndex)
    guard let second = bytes[afterFirst...].firstIndex(of: slash) else { return nil }
    let methodStart = bytes.index(after: second)
    guard second != afterFirst, methodStart != bytes.endIndex, !bytes[methodStart...].contains(slash) else { return nil }
    return MethodDescriptor(
      fullyQualifiedService: String(Substring(bytes[afterFirst..<second])), method: String(Substring(bytes[methodStart...])))
  }

  override func didReceiveData(_ bytes: UnsafeRawBufferPointer) {
    guard let inbound else { return }
    deframer.append(bytes)
    do {
      while let message = try deframer.next() {
        inbound.yield(.message(message))
      }
    } catch .tooLarge(let length, let limit) {
      fail(.resourceExhausted, "request message of \(length) bytes exceeds the limit of \(limit) bytes")
    } catch {
      fail(.unimplemented, "compressed messages are not supported")
    }
  }

  override func didReceiveEndStream() {
    inbound?.finish()
  }

  override func didClose(errorCode: UInt32, connectionLost: Bool) {
    stopDeadline()
    let wasDone = statusSent
    statusSent = true
    if !wasDone {
      let reason = connectionLost ? "connection closed" : "stream reset by client (HTTP/2 error \(errorCode))"
      inbound?.finish(throwing: RPCError(code: .cancelled, message: reason))
      cancel()
    }
    inbound = nil
  }

  private func handlerStoppedReading() {
    inbound = nil
  }

  private func cancel() {
    let handle = cancellation.withLock { state -> ServerContext.RPCCancellationHandle? in
      state.cancelled = true
      return state.handle
    }
    handle?.cancel()
  }

  func attach(_ handle: ServerContext.RPCCancellationHandle) {
    let cancelled = cancellation.withLock { state -> Bool in
      state.handle = handle
      return state.cancelled
    }
    if cancelled { handle.cancel() }
  }

  /// Ends the call with `code` now: the status goes out, the handler is told.
  private func fail(_ code: Status.Code, _ message: String) {
    resetAfterEndStream = true
    send(.status(Status(code: code, message: message), [:]))
    inbound?.finish(throwing: RPCError(code: RPCError.Code(code) ?? .internalError, message: message))
    inbound = nil
    cancel()
  }

  private func rejectHTTP(status: String, code: Status.Code, message: String) {
    responseHeadersSent = true
    statusSent = true
    connection.submitResponse(self, headers: [
      (":status", status), ("content-type", "application/grpc"), ("grpc-accept-encoding", "identity"),
      ("grpc-status", String(code.rawValue)), ("grpc-message", PercentEncoding.encode(message)),
    ], endStream: true)
  }

  // MARK: Outbound

  func send(_ part: RPCResponsePart<[UInt8]>) {
    guard !isClosed, !statusSent else { return }
    switch part {
    case .metadata(let metadata):
      guard !responseHeadersSent else { return }
      responseHeadersSent = true
      var headers: HeaderList = [(":status", "200"), ("content-type", "application/grpc"), ("grpc-accept-encoding", "identity")]
      Self.append(metadata, to: &headers)
      connection.submitResponse(self, headers: headers, endStream: false)
    case .message(let bytes):
      if !responseHeadersSent { send(.metadata([:])) }
      var framed = [UInt8]()
      GRPCFraming.frame(bytes, into: &framed)
      queueOutbound(framed)
    case .status(let status, let metadata):
      statusSent = true
      stopDeadline()
      var trailers: HeaderList = [("grpc-status", String(status.code.rawValue))]
      if !status.message.isEmpty { trailers.append(("grpc-message", PercentEncoding.encode(status.message))) }
      Self.append(metadata, to: &trailers)
      if responseHeadersSent {
        finishOutbound(trailers: trailers)
      } else {
        // Trailers-only response: one HEADERS frame that ends the stream.
        responseHeadersSent = true
        connection.submitResponse(self, headers: [(":status", "200"), ("content-type", "application/grpc")] + trailers, endStream: true)
      }
    }
  }

  static func append(_ metadata: Metadata, to headers: inout HeaderList) {
    for (key, value) in metadata {
      let name = key.lowercased()
      // Reserved names belong to the transport.
      if name.hasPrefix(":") || name == "content-type" || name == "te" || name == "grpc-status" || name == "grpc-message" { continue }
      headers.append((name, value.encoded()))
    }
  }
}

struct AcceptedStream: Sendable {
  var rpc: RPCStream<H2ServerTransport.Inbound, H2ServerTransport.Outbound>
  var stream: GRPCServerStream
  var remotePeer: String
  var localPeer: String
  var call: H2CallContext
}

/// The handler's writer: runs on the loop thread, directly when already there.
struct ServerStreamWriter: ClosableRPCWriterProtocol {
  typealias Element = RPCResponsePart<[UInt8]>
  let stream: GRPCServerStream

  func write(_ element: Element) async throws {
    let loop = stream.connection.loop
    if loop.inLoop {
      stream.send(element)
    } else {
      let stream = self.stream
      try await loop.submit { stream.send(element) }
    }
  }

  func write(contentsOf elements: some Sequence<Element>) async throws {
    for element in elements { try await write(element) }
  }

  func finish() async {}

  func finish(throwing error: any Error) async {
    // GRPCCore always writes a status first; this is a last resort.
    let status: Status
    if let rpc = error as? RPCError {
      status = Status(code: Status.Code(rpc.code), message: rpc.message)
    } else {
      status = Status(code: .unknown, message: "handler failed")
    }
    try? await write(.status(status, [:]))
  }
}
