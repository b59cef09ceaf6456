import CNGHTTP2
public import GRPCCore
public import UVRuntime

/// A gRPC client transport over HTTP/2 (nghttp2) on a libuv loop. Connects
/// lazily, multiplexes every call on one connection, and never keeps a dead
/// connection: after the peer goes away (restart, GOAWAY, error) the next call
/// dials again.
public final class H2ClientTransport: ClientTransport, @unchecked Sendable {
  public typealias Bytes = [UInt8]

  public struct Config: Sendable {
    public var endpoint: Endpoint
    /// Sent as `:authority`; providers expect `localhost`.
    public var authority: String
    /// Larger response messages fail with RESOURCE_EXHAUSTED.
    public var maxReceiveMessageBytes: Int

    public init(endpoint: Endpoint, authority: String = "localhost", maxReceiveMessageBytes: Int = 4 << 20) {
      self.endpoint = endpoint
      self.authority = authority
      self.maxReceiveMessageBytes = maxReceiveMessageBytes
    }
  }

  public let loop: EventLoop
  public let config: Config
  public var retryThrottle: RetryThrottle? { nil }

  // Loop thread only.
  private var connection: H2Connection?
  private var dialing: [CheckedContinuation<H2Connection, any Error>]?
  private var shuttingDown = false
  private var activeStreams = 0
  private var lifetime: CheckedContinuation<Void, Never>?
  private var lifetimeEnded = false
  /// Connections dialled so far (for tests: a restart shows as a second dial).
  public private(set) var dials = 0
  /// Moving average of recent successful calls, request sent to status received.
  private var typicalCall: Duration?

  /// A peer that usually answers within this is awaited by polling the loop
  /// (`EventLoop.expectReply`) rather than by sleeping and being woken; a
  /// slower one (any real secret store) never is.
  public static let longestReplyAwaitedByPolling = Duration.microseconds(500)

  public init(config: Config, loop: EventLoop) {
    self.config = config
    self.loop = loop
  }

  /// The transport's lifetime: returns after `beginGracefulShutdown` once the
  /// calls in flight have finished. Connections themselves are made lazily.
  public func connect() async throws {
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
      loop.execute { [self] in
        if lifetimeEnded { c.resume() } else { lifetime = c }
      }
    }
  }

  public func beginGracefulShutdown() {
    loop.executeOrRun { [self] in
      shuttingDown = true
      finishIfIdle()
    }
  }

  private func finishIfIdle() {
    guard shuttingDown, activeStreams == 0, !lifetimeEnded else { return }
    lifetimeEnded = true
    connection?.beginGracefulShutdown()
    connection?.close()
    connection = nil
    lifetime?.resume()
    lifetime = nil
  }

  public func config(forMethod descriptor: MethodDescriptor) -> MethodConfig? { nil }

  public func withStream<T: Sendable>(
    descriptor: MethodDescriptor,
    options: CallOptions,
    _ closure: (_ stream: RPCStream<Inbound, Outbound>, _ context: ClientContext) async throws -> T
  ) async throws -> T {
    let limit = options.maxResponseMessageBytes ?? config.maxReceiveMessageBytes
    let stream = try await openStream(descriptor: descriptor, limit: limit)
    defer { loop.execute { [self] in stream.abandon(); streamEnded() } }
    let rpc = RPCStream(
      descriptor: descriptor,
      inbound: RPCAsyncSequence<RPCResponsePart<[UInt8]>, any Error>(wrapping: ClientInboundParts(parts: stream.inbound)),
      outbound: RPCWriter<RPCRequestPart<[UInt8]>>.Closable(wrapping: ClientStreamWriter(stream: stream))
    )
    let context = ClientContext(descriptor: descriptor, remotePeer: config.endpoint.description, localPeer: "")
    return try await closure(rpc, context)
  }

  /// Loop thread only: a request has just been sent.
  fileprivate func requestSent() {
    guard let typical = typicalCall else { return }
    let expected = typical + typical / 2
    if expected <= Self.longestReplyAwaitedByPolling { loop.expectReply(within: expected) }
  }

  /// Loop thread only: a call succeeded after `took`.
  fileprivate func callSucceeded(after took: Duration) {
    typicalCall = typicalCall.map { ($0 * 7 + took) / 8 } ?? took
  }

  private func streamEnded() {
    activeStreams -= 1
    finishIfIdle()
  }

  private func openStream(descriptor: MethodDescriptor, limit: Int) async throws -> GRPCClientStream {
    let connection = try await liveConnection()
    return try await loop.submit { [self] in
      guard !shuttingDown else {
        throw RPCError(code: .unavailable, message: "client transport is shutting down")
      }
      activeStreams += 1
      return GRPCClientStream(connection: connection, transport: self, descriptor: descriptor, limit: limit)
    }
  }

  /// The current connection, or a new one.
  private func liveConnection() async throws -> H2Connection {
    // Already on the loop (the driver's handlers run there) with a usable connection:
    // no closure queued and no suspension for a value at hand.
    if loop.inLoop, !shuttingDown, let connection, !connection.isClosed, !connection.goingAway {
      return connection
    }
    return try await withCheckedThrowingContinuation { (c: CheckedContinuation<H2Connection, any Error>) in
      loop.execute { [self] in
        if shuttingDown {
          c.resume(throwing: RPCError(code: .unavailable, message: "client transport is shutting down"))
          return
        }
        if let connection, !connection.isClosed, !connection.goingAway {
          c.resume(returning: connection)
          return
        }
        connection = nil
        if dialing != nil {
          dialing!.append(c)
          return
        }
        dialing = [c]
        dials += 1
        Transports.connect(config.endpoint, on: loop) { [self] result in
          let waiters = dialing ?? []
          dialing = nil
          switch result {
          case .success(let stream):
            let connection = H2Connection(role: .client, transport: stream, owner: self)
            self.connection = connection
            for w in waiters { w.resume(returning: connection) }
          case .failure(let error):
            let rpcError = RPCError(code: .unavailable, message: error.description)
            for w in waiters { w.resume(throwing: rpcError) }
          }
        }
      }
    }
  }
}

extension H2ClientTransport: H2ConnectionOwner {
  func connection(_ connection: H2Connection, openStream id: Int32) -> H2Stream? { nil }

  func connectionDidClose(_ connection: H2Connection) {
    if self.connection === connection { self.connection = nil }
  }

  func connectionDidReceiveGoAway(_ connection: H2Connection) {
    if self.connection === connection { self.connection = nil }
  }
}

/// The client side of one gRPC call. Loop thread only.
final class GRPCClientStream: H2Stream, @unchecked Sendable {
  typealias Inbound = InboundParts<RPCResponsePart<[UInt8]>>

  let descriptor: MethodDescriptor
  let authority: String
  private weak var transport: H2ClientTransport?
  /// When the request headers went out; the call's time is measured from here.
  private var sentAt: ContinuousClock.Instant?
  let inbound: Inbound
  private var continuation: Inbound?
  private var deframer: GRPCMessageDeframer
  private var headersReceived = false
  private var requestSent = false

  init(connection: H2Connection, transport: H2ClientTransport, descriptor: MethodDescriptor, limit: Int) {
    self.descriptor = descriptor
    self.transport = transport
    authority = transport.config.authority
    deframer = GRPCMessageDeframer(limit: limit)
    inbound = Inbound()
    continuation = inbound
    super.init(connection: connection)
    continuation?.onTermination = { [weak self, loop = connection.loop] reason in
      guard case .cancelled = reason, let self else { return }
      loop.execute { self.abandon() }
    }
  }

  // MARK: Outbound

  func send(_ part: RPCRequestPart<[UInt8]>) {
    switch part {
    case .metadata(let metadata):
      guard !requestSent else { return }
      requestSent = true
      var headers: HeaderList = [
        (":method", "POST"), (":scheme", "http"), (":path", "/\(descriptor.fullyQualifiedMethod)"),
        (":authority", authority), ("content-type", "application/grpc"), ("te", "trailers"),
        ("user-agent", "secrets-store-csi-driver-swift"), ("grpc-accept-encoding", "identity"),
      ]
      var metadata = metadata
      let deadline = GRPCTimeout.clientTimeout(in: metadata)
      if let deadline {
        metadata.removeAllValues(forKey: GRPCTimeout.clientDeadlineKey)
        headers.append(("grpc-timeout", deadline))
      }
      GRPCServerStream.append(metadata, to: &headers)
      guard connection.submitRequest(self, headers: headers) else {
        end(Status(code: .unavailable, message: "connection to the server was lost"))
        return
      }
      if let deadline, let timeout = GRPCTimeout.decode(deadline) { startDeadline(timeout) }
      sentAt = .now
      transport?.requestSent()
    case .message(let bytes):
      if !requestSent { send(.metadata([:])) }
      guard !isClosed else { return }
      var framed = [UInt8]()
      GRPCFraming.frame(bytes, into: &framed)
      queueOutbound(framed)
    }
  }

  func finishRequest() {
    if !requestSent { send(.metadata([:])) }
    guard !isClosed, !outboundFinished else { return }
    finishOutbound(trailers: nil)
  }

  /// The caller is done with the call: reset it if still open.
  func abandon() {
    if !isClosed && id > 0 { connection.resetStream(self) }
    end(Status(code: .cancelled, message: "call cancelled"))
  }

  /// Ends the call with DEADLINE_EXCEEDED when the deadline the caller asked
  /// for with `GRPCTimeout.metadata` passes (a loop timer, closed with the call).
  private func startDeadline(_ timeout: Duration) {
    startDeadline(timeout) { stream in
      guard let stream = stream as? GRPCClientStream, stream.continuation != nil else { return }
      stream.connection.resetStream(stream)
      stream.end(Status(code: .deadlineExceeded, message: "deadline of \(timeout) exceeded"))
    }
  }

  private func end(_ status: Status, _ metadata: Metadata = [:]) {
    stopDeadline()
    guard let continuation else { return }
    if status.code == .ok, let sentAt { transport?.callSucceeded(after: .now - sentAt) }
    self.continuation = nil
    continuation.yield(.status(status, metadata))
    continuation.finish()
  }

  // MARK: Inbound

  override func didReceiveHeaders(_ headers: HeaderList, endStream: Bool) {
    var metadata = Metadata()
    var httpStatus = 0
    var grpcStatus: Int?
    var grpcMessage = ""
    for (name, value) in headers {
      switch name {
      case ":status": httpStatus = Int(value) ?? 0
      case "grpc-status": grpcStatus = Int(value)
      case "grpc-message": grpcMessage = PercentEncoding.decode(value)
      case "content-type", "grpc-encoding", "grpc-accept-encoding": continue
      default:
        if name.hasPrefix(":") { continue }
        if name.hasSuffix("-bin") {
          if let bytes = Base64.decode(value) { metadata.addBinary(bytes, forKey: name) }
        } else {
          metadata.addString(value, forKey: name)
        }
      }
    }
    if !headersReceived {
      headersReceived = true
      if httpStatus != 200 && grpcStatus == nil {
        var status = Status(httpStatusCode: httpStatus)
        status = Status(code: status.code, message: "HTTP status \(httpStatus) from the server")
        end(status)
        connection.resetStream(self)
        return
      }
      if grpcStatus == nil {
        continuation?.yield(.metadata(metadata))
        return
      }
    }
    // Trailers (or a trailers-only response).
    let code = grpcStatus.flatMap { Status.Code(rawValue: $0) } ?? .unknown
    let message = grpcStatus == nil ? "response ended without grpc-status" : grpcMessage
    end(Status(code: code, message: message), metadata)
  }

  override func didReceiveData(_ bytes: UnsafeRawBufferPointer) {
    guard let continuation else { return }
    deframer.append(bytes)
    do {
      while let message = try deframer.next() {
        continuation.yield(.message(message))
      }
    } catch .tooLarge(let length, let limit) {
      end(Status(code: .resourceExhausted, message: "response message of \(length) bytes exceeds the limit of \(limit) bytes"))
      connection.resetStream(self)
    } catch {
      end(Status(code: .internalError, message: "compressed response messages are not supported"))
      connection.resetStream(self)
    }
  }

  override func didClose(errorCode: UInt32, connectionLost: Bool) {
    if connectionLost {
      end(Status(code: .unavailable, message: "connection to the server was lost"))
    } else if errorCode == NGHTTP2_REFUSED_STREAM.rawValue {
      end(Status(code: .unavailable, message: "the server refused the stream (shutting down)"))
    } else if errorCode == NGHTTP2_NO_ERROR.rawValue {
      end(Status(code: .internalError, message: "stream ended without a status"))
    } else {
      end(Status(code: .unavailable, message: "stream reset by the server (HTTP/2 error \(errorCode))"))
    }
  }
}

struct ClientStreamWriter: ClosableRPCWriterProtocol {
  typealias Element = RPCRequestPart<[UInt8]>
  let stream: GRPCClientStream

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

  func finish() async {
    let loop = stream.connection.loop
    if loop.inLoop {
      stream.finishRequest()
    } else {
      let stream = self.stream
      _ = try? await loop.submit { stream.finishRequest() }
    }
  }

  func finish(throwing error: any Error) async {
    let loop = stream.connection.loop
    let stream = self.stream
    _ = try? await loop.submit { stream.abandon() }
  }
}
