public import GRPCCore
public import UVRuntime

/// A gRPC server transport over HTTP/2 (nghttp2) on a libuv loop: unix socket,
/// TCP or in-memory. RPC semantics (routing, deadlines, interceptors) come from
/// GRPCCore's `GRPCServer` above it.
public final class H2ServerTransport: ServerTransport, @unchecked Sendable {
  public typealias Bytes = [UInt8]

  public struct Config: Sendable {
    public var endpoint: Endpoint
    /// Larger request messages fail with RESOURCE_EXHAUSTED.
    public var maxReceiveMessageBytes: Int
    public var maxConcurrentStreams: UInt32

    public init(endpoint: Endpoint, maxReceiveMessageBytes: Int = 4 << 20, maxConcurrentStreams: UInt32 = 1024) {
      self.endpoint = endpoint
      self.maxReceiveMessageBytes = maxReceiveMessageBytes
      self.maxConcurrentStreams = maxConcurrentStreams
    }
  }

  enum State {
    case idle
    case listening(any StreamListener)
    case draining
    case stopped
  }

  public let loop: EventLoop
  let config: Config
  // Loop thread only.
  private var state = State.idle
  private var connections: [ObjectIdentifier: H2Connection] = [:]
  private var accepted: AsyncStream<AcceptedStream>.Continuation?
  private let ready = Locked<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

  public init(config: Config, loop: EventLoop) {
    self.config = config
    self.loop = loop
  }

  public func listen(
    streamHandler: @escaping @Sendable (_ stream: RPCStream<Inbound, Outbound>, _ context: ServerContext) async -> Void
  ) async throws {
    let (streams, continuation) = AsyncStream.makeStream(of: AcceptedStream.self)
    do {
      try await loop.submit { try self.startListening(continuation) }
    } catch {
      markReady()
      throw RPCError(code: .unavailable, message: "\(error)")
    }
    markReady()
    await withTaskCancellationHandler {
      // Handler tasks inherit the loop as their executor: no hops to the global pool.
      await withTaskExecutorPreference(loop) {
        await withDiscardingTaskGroup { group in
          for await stream in streams {
            group.addTask {
              await withServerContextRPCCancellationHandle { handle in
                stream.stream.attach(handle)
                var context = ServerContext(
                  descriptor: stream.rpc.descriptor, remotePeer: stream.remotePeer,
                  localPeer: stream.localPeer, cancellation: handle)
                context.transportSpecific = stream.call
                await streamHandler(stream.rpc, context)
              }
            }
          }
        }
      }
    } onCancel: {
      self.loop.execute { self.stopNow() }
    }
  }

  /// Returns once the listener is bound (or failed to bind).
  public func waitUntilListening() async {
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
      let done = ready.withLock { state -> Bool in
        if state.done { return true }
        state.waiters.append(c)
        return false
      }
      if done { c.resume() }
    }
  }

  private func markReady() {
    let waiters = ready.withLock { state -> [CheckedContinuation<Void, Never>] in
      state.done = true
      defer { state.waiters = [] }
      return state.waiters
    }
    for w in waiters { w.resume() }
  }

  private func startListening(_ continuation: AsyncStream<AcceptedStream>.Continuation) throws {
    guard case .idle = state else {
      continuation.finish()
      throw TransportError("server transport already started")
    }
    accepted = continuation
    let listener = try Transports.listen(config.endpoint, on: loop) { [self] stream in
      guard case .listening = state else {
        stream.close()
        return
      }
      let connection = H2Connection(role: .server, transport: stream, owner: self, maxConcurrentStreams: config.maxConcurrentStreams)
      connections[ObjectIdentifier(connection)] = connection
    }
    state = .listening(listener)
  }

  /// Stops accepting; sends GOAWAY on every connection; `listen` returns once
  /// the calls in flight have finished.
  public func beginGracefulShutdown() {
    loop.executeOrRun { self.drain() }
  }

  private func drain() {
    switch state {
    case .idle:
      state = .stopped
    case .listening(let listener):
      listener.close()
      state = .draining
      for connection in connections.values { connection.beginGracefulShutdown() }
      finishIfDrained()
    case .draining, .stopped:
      break
    }
  }

  private func stopNow() {
    drain()
    for connection in connections.values { connection.close() }
  }

  private func finishIfDrained() {
    guard case .draining = state, connections.isEmpty else { return }
    state = .stopped
    accepted?.finish()
    accepted = nil
  }

  func accept(_ stream: AcceptedStream) {
    accepted?.yield(stream)
  }
}

extension H2ServerTransport: H2ConnectionOwner {
  func connection(_ connection: H2Connection, openStream id: Int32) -> H2Stream? {
    GRPCServerStream(connection: connection, server: self)
  }

  func connectionDidClose(_ connection: H2Connection) {
    connections[ObjectIdentifier(connection)] = nil
    finishIfDrained()
  }

  func connectionDidReceiveGoAway(_ connection: H2Connection) {}
}

/// What this transport knows about a call beyond GRPCCore's context: set by
/// the transport from the request's headers, read by handlers through
/// `ServerContext.callDeadline`.
public struct H2CallContext: ServerContext.TransportSpecific {
  /// When the caller's `grpc-timeout` runs out: the transport's loop timer ends
  /// the call then. Nil when the caller sent none.
  public var deadline: ContinuousClock.Instant?

  public init(deadline: ContinuousClock.Instant?) {
    self.deadline = deadline
  }
}

extension ServerContext {
  /// The caller's deadline, from its `grpc-timeout` header and nothing else
  /// (no metadata a client could write), for handlers to budget the calls they
  /// make downstream. Nil when the caller sent none or another transport
  /// carries the call.
  public var callDeadline: ContinuousClock.Instant? {
    (transportSpecific as? H2CallContext)?.deadline
  }
}
