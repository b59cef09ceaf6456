import GRPCCore
import Glibc
import Testing
import UVRuntime

@testable import GRPCH2

struct RawBytes: MessageSerializer, MessageDeserializer {
  func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
  func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> [UInt8] {
    bytes.withUnsafeBytes { Array($0) }
  }
}

/// A test service: echoes, sleeps on request, or answers with N bytes.
struct EchoService: RegistrableRPCService {
  static let get = MethodDescriptor(fullyQualifiedService: "test.Echo", method: "Get")
  static let collect = MethodDescriptor(fullyQualifiedService: "test.Echo", method: "Collect")
  let loop: EventLoop
  let cancelled = Locked(0)
  /// "hold" calls that have started, and whether they may finish.
  let held = Locked((started: 0, released: false))

  /// How many handlers were cancelled, after waiting (up to 10 s) for the first.
  func handlersCancelled() async throws -> Int {
    for _ in 0..<1_000 where cancelled.withLock({ $0 }) == 0 {
      try await loop.sleep(milliseconds: 10)
    }
    return cancelled.withLock { $0 }
  }

  /// Whether a "hold" call has reached its handler, after waiting (up to 10 s) for one.
  func holding() async throws -> Bool {
    for _ in 0..<1_000 where held.withLock({ $0.started }) == 0 {
      try await loop.sleep(milliseconds: 10)
    }
    return held.withLock { $0.started } > 0
  }

  /// Lets every "hold" call answer.
  func release() {
    held.withLock { $0.released = true }
  }

  func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    router.registerHandler(forMethod: Self.get, deserializer: RawBytes(), serializer: RawBytes()) { request, context in
      let single = try await ServerRequest(stream: request)
      let text = String(decoding: single.message, as: UTF8.self)
      if text.hasPrefix("sleep:"), let ms = UInt64(text.dropFirst(6)) {
        // Sleeps unless the RPC is cancelled first (client reset or grpc-timeout).
        let slept = try await withThrowingTaskGroup(of: Bool.self) { group in
          group.addTask { [loop] in
            try await loop.sleep(milliseconds: ms)
            return true
          }
          group.addTask {
            try await context.cancellation.cancelled
            return false
          }
          let first = try await group.next()!
          group.cancelAll()
          return first
        }
        if !slept {
          cancelled.withLock { $0 += 1 }
          throw RPCError(code: .cancelled, message: "cancelled")
        }
      }
      if text == "hold" {
        // In flight until the test says otherwise.
        held.withLock { $0.started += 1 }
        while !held.withLock({ $0.released }) { try await loop.sleep(milliseconds: 1) }
      }
      if text.hasPrefix("big:"), let n = Int(text.dropFirst(4)) {
        return StreamingServerResponse(single: ServerResponse(message: Array(repeating: 7, count: n)))
      }
      if text == "deadline" {
        // The deadline the transport hands the handler, as milliseconds left.
        let left = context.callDeadline.map { "\(($0 - .now).timerMilliseconds)" } ?? "none"
        return StreamingServerResponse(single: ServerResponse(message: Array(left.utf8)))
      }
      if text == "fail" {
        throw RPCError(code: .notFound, message: "nothing called 'fail' here: 100% sure")
      }
      return StreamingServerResponse(single: ServerResponse(message: single.message, metadata: ["echo": "yes"]))
    }
    // Client streaming: concatenates every message.
    router.registerHandler(forMethod: Self.collect, deserializer: RawBytes(), serializer: RawBytes()) { request, _ in
      var all = [UInt8]()
      for try await m in request.messages { all += m }
      return StreamingServerResponse(single: ServerResponse(message: all))
    }
  }
}

func tempSocketPath(_ name: String) -> String {
  var template = Array("/tmp/grpch2-XXXXXX".utf8CString)
  let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
  return "\(dir)/\(name).sock"
}

/// Runs a server on `endpoint`, runs `body` with a client, shuts both down and
/// checks that the loop closed every handle.
func withEchoServer(
  endpoint: Endpoint, serverMaxReceive: Int = 4 << 20, clientMaxReceive: Int = 4 << 20,
  _ body: @Sendable (GRPCClient<H2ClientTransport>, EchoService, H2ClientTransport) async throws -> Void
) async throws {
  let loop = EventLoop(name: "test-loop")
  let service = EchoService(loop: loop)
  let transport = H2ServerTransport(config: .init(endpoint: endpoint, maxReceiveMessageBytes: serverMaxReceive), loop: loop)
  let server = GRPCServer(transport: transport, services: [service])
  let serving = Task { try await server.serve() }
  await transport.waitUntilListening()
  let clientTransport = H2ClientTransport(config: .init(endpoint: endpoint, maxReceiveMessageBytes: clientMaxReceive), loop: loop)
  do {
    try await withGRPCClient(transport: clientTransport) { client throws in
      try await body(client, service, clientTransport)
    }
  } catch {
    server.beginGracefulShutdown()
    _ = try? await serving.value
    await loop.shutdownAndWait()
    throw error
  }
  server.beginGracefulShutdown()
  try await serving.value
  await loop.shutdownAndWait()
  #expect(loop.leakedHandles == [])
  #expect(loop.closeResult == 0)
}

/// `timeout` goes through GRPCCore's `CallOptions`; `transportTimeout` through
/// `GRPCTimeout.metadata`, enforced by our client transport alone.
func echo(
  _ client: GRPCClient<H2ClientTransport>, _ text: String, timeout: Duration? = nil, transportTimeout: Duration? = nil
) async throws -> [UInt8] {
  var options = CallOptions.defaults
  options.timeout = timeout
  return try await client.unary(
    request: ClientRequest(message: Array(text.utf8), metadata: transportTimeout.map(GRPCTimeout.metadata) ?? [:]),
    descriptor: EchoService.get,
    serializer: RawBytes(), deserializer: RawBytes(), options: options
  ) { try $0.message }
}

func rpcCode(_ body: () async throws -> Void) async -> RPCError.Code? {
  do {
    try await body()
    return nil
  } catch let error as RPCError {
    return error.code
  } catch {
    return .unknown
  }
}

@Suite(.serialized) struct TransportTests {
  @Test(arguments: ["unix", "tcp", "memory"])
  func unaryRoundTripsOnEveryTransport(kind: String) async throws {
    let endpoint: Endpoint
    switch kind {
    case "unix": endpoint = .unix(path: tempSocketPath("echo"))
    case "tcp": endpoint = .tcp(host: "127.0.0.1", port: 20000 + Int(getpid() % 20000))
    default: endpoint = .memory(name: "echo-\(getpid())")
    }
    try await withEchoServer(endpoint: endpoint) { client, _, _ throws in
      #expect(try await echo(client, "hello") == Array("hello".utf8))
      #expect(try await echo(client, "") == [])
    }
  }

  @Test func manyConcurrentCallsShareOneConnection() async throws {
    try await withEchoServer(endpoint: .unix(path: tempSocketPath("many"))) { client, _, transport throws in
      try await withThrowingTaskGroup(of: Bool.self) { group in
        for i in 0..<200 {
          group.addTask { try await echo(client, "call-\(i)") == Array("call-\(i)".utf8) }
        }
        for try await ok in group { #expect(ok) }
      }
      #expect(try await transport.loop.submit { transport.dials } == 1)
    }
  }

  @Test func largeMessagesCrossFlowControlWindows() async throws {
    // 3 MiB each way: larger than the 1 MiB stream window, so WINDOW_UPDATEs must flow.
    try await withEchoServer(endpoint: .unix(path: tempSocketPath("large"))) { client, _, _ throws in
      let reply = try await echo(client, "big:\(3 << 20)")
      #expect(reply.count == 3 << 20)
      let payload = [UInt8](repeating: 0x41, count: 3 << 20)
      let back = try await client.unary(
        request: ClientRequest(message: payload), descriptor: EchoService.get,
        serializer: RawBytes(), deserializer: RawBytes(), options: .defaults) { try $0.message }
      #expect(back == payload)
    }
  }

  @Test func clientStreamingSplitsAcrossFrames() async throws {
    try await withEchoServer(endpoint: .unix(path: tempSocketPath("stream"))) { client, _, _ throws in
      let request = StreamingClientRequest<[UInt8]>(of: [UInt8].self) { writer in
        for i in 0..<50 { try await writer.write([UInt8(i)]) }
      }
      let all = try await client.clientStreaming(
        request: request, descriptor: EchoService.collect, serializer: RawBytes(), deserializer: RawBytes(),
        options: .defaults) { try $0.message }
      #expect(all == (0..<50).map { UInt8($0) })
    }
  }

  @Test func errorsCarryCodeAndPercentEncodedMessage() async throws {
    try await withEchoServer(endpoint: .unix(path: tempSocketPath("err"))) { client, _, _ throws in
      do {
        _ = try await echo(client, "fail")
        Issue.record("expected an error")
      } catch let error as RPCError {
        #expect(error.code == .notFound)
        #expect(error.message == "nothing called 'fail' here: 100% sure")
      }
      let unknown = MethodDescriptor(fullyQualifiedService: "test.Echo", method: "Nope")
      let code = await rpcCode {
        _ = try await client.unary(
          request: ClientRequest(message: [1]), descriptor: unknown, serializer: RawBytes(), deserializer: RawBytes(),
          options: .defaults) { try $0.message }
      }
      #expect(code == .unimplemented)
    }
  }

  @Test func oversizedMessagesAreResourceExhausted() async throws {
    try await withEchoServer(endpoint: .unix(path: tempSocketPath("size")), serverMaxReceive: 1000, clientMaxReceive: 2000) { client, _, _ throws in
      do {
        _ = try await echo(client, String(repeating: "x", count: 1001))
        Issue.record("expected RESOURCE_EXHAUSTED")
      } catch let error as RPCError {
        #expect(error.code == .resourceExhausted, "\(error)")
      }
      #expect(await rpcCode { _ = try await echo(client, "big:2001") } == .resourceExhausted)
      // The connection survives both.
      #expect(try await echo(client, "big:2000").count == 2000)
    }
  }

  @Test func transportEnforcedDeadlineEndsTheCallAndTheHandler() async throws {
    try await withEchoServer(endpoint: .unix(path: tempSocketPath("tdeadline"))) { client, service, _ throws in
      let code = await rpcCode { _ = try await echo(client, "sleep:10000", transportTimeout: .milliseconds(100)) }
      #expect(code == .deadlineExceeded)
      #expect(try await service.handlersCancelled() == 1)
      // A call that ends in time is not disturbed by its (now closed) timer.
      #expect(try await echo(client, "quick", transportTimeout: .seconds(30)) == Array("quick".utf8))
    }
  }

  @Test func handlersLearnTheDeadlineFromTheTransport() async throws {
    try await withEchoServer(endpoint: .unix(path: tempSocketPath("ctxdeadline"))) { client, _, _ throws in
      #expect(String(decoding: try await echo(client, "deadline"), as: UTF8.self) == "none")
      let left = Int(String(decoding: try await echo(client, "deadline", transportTimeout: .seconds(30)), as: UTF8.self))
      #expect(left != nil && left! > 0 && left! <= 30_000, "\(String(describing: left))")
    }
  }

  @Test func deadlineCancelsTheServerHandler() async throws {
    try await withEchoServer(endpoint: .unix(path: tempSocketPath("deadline"))) { client, service, _ throws in
      let code = await rpcCode { _ = try await echo(client, "sleep:10000", timeout: .milliseconds(100)) }
      #expect(code == .deadlineExceeded)
      // The server learns of it through grpc-timeout (or the client's reset) and stops the handler.
      #expect(try await service.handlersCancelled() == 1)
      #expect(try await echo(client, "after") == Array("after".utf8))
    }
  }

  @Test func clientReconnectsAfterServerRestart() async throws {
    let path = tempSocketPath("restart")
    let loop = EventLoop(name: "restart")
    let clientTransport = H2ClientTransport(config: .init(endpoint: .unix(path: path)), loop: loop)
    try await withGRPCClient(transport: clientTransport) { client throws in
      // No server yet: UNAVAILABLE, not a hang.
      #expect(await rpcCode { _ = try await echo(client, "x") } == .unavailable)
      for round in 0..<2 {
        let transport = H2ServerTransport(config: .init(endpoint: .unix(path: path)), loop: loop)
        let server = GRPCServer(transport: transport, services: [EchoService(loop: loop)])
        let serving = Task { try await server.serve() }
        await transport.waitUntilListening()
        // The first call after a restart may still go out on the old connection if
        // the client has not yet read its end: that call fails UNAVAILABLE (never
        // hangs) and the next one dials the new server.
        var reply: [UInt8]?
        for _ in 0..<2 where reply == nil {
          do {
            reply = try await echo(client, "round-\(round)", timeout: .seconds(10))
          } catch let error as RPCError where error.code == .unavailable {
            continue
          }
        }
        server.beginGracefulShutdown()
        try await serving.value
        #expect(reply == Array("round-\(round)".utf8))
      }
      #expect(try await loop.submit { clientTransport.dials } >= 3)
    }
    await loop.shutdownAndWait()
    #expect(loop.leakedHandles == [])
  }

  @Test func gracefulShutdownLetsCallsInFlightFinish() async throws {
    let path = tempSocketPath("drain")
    let loop = EventLoop(name: "drain")
    let transport = H2ServerTransport(config: .init(endpoint: .unix(path: path)), loop: loop)
    let service = EchoService(loop: loop)
    let server = GRPCServer(transport: transport, services: [service])
    let serving = Task { try await server.serve() }
    await transport.waitUntilListening()
    let clientTransport = H2ClientTransport(config: .init(endpoint: .unix(path: path)), loop: loop)
    try await withGRPCClient(transport: clientTransport) { client throws in
      async let inFlight = echo(client, "hold")
      #expect(try await service.holding(), "the call never reached its handler")
      server.beginGracefulShutdown()
      // Draining: no new calls, while the one in flight goes on.
      #expect(await rpcCode { _ = try await echo(client, "refused") } == .unavailable)
      service.release()
      #expect(try await inFlight == Array("hold".utf8))
      try await serving.value
      // The listener is gone and its socket file removed.
      #expect(access(path, F_OK) != 0)
      #expect(await rpcCode { _ = try await echo(client, "late") } == .unavailable)
    }
    await loop.shutdownAndWait()
    #expect(loop.leakedHandles == [])
    #expect(loop.closeResult == 0)
  }

  @Test func listenerRemovesStaleSocketButRefusesOtherFiles() async throws {
    let path = tempSocketPath("stale")
    // A regular file where the socket should go: refused, and left alone.
    let fd = open(path, O_CREAT | O_WRONLY, 0o600)
    close(fd)
    let loop = EventLoop(name: "stale")
    let transport = H2ServerTransport(config: .init(endpoint: .unix(path: path)), loop: loop)
    let server = GRPCServer(transport: transport, services: [EchoService(loop: loop)])
    await #expect(throws: (any Error).self) { try await server.serve() }
    #expect(access(path, F_OK) == 0)
    unlink(path)

    // A leftover socket (bound, never unlinked) is replaced.
    let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
      for (i, b) in path.utf8.enumerated() { raw[i] = b }
    }
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
    close(s)
    try await withEchoServerOn(path: path, loop: loop)
    await loop.shutdownAndWait()
    #expect(loop.leakedHandles == [])
  }

  func withEchoServerOn(path: String, loop: EventLoop) async throws {
    let transport = H2ServerTransport(config: .init(endpoint: .unix(path: path)), loop: loop)
    let server = GRPCServer(transport: transport, services: [EchoService(loop: loop)])
    let serving = Task { try await server.serve() }
    await transport.waitUntilListening()
    let clientTransport = H2ClientTransport(config: .init(endpoint: .unix(path: path)), loop: loop)
    try await withGRPCClient(transport: clientTransport) { client throws in
      #expect(try await echo(client, "ok") == Array("ok".utf8))
    }
    server.beginGracefulShutdown()
    try await serving.value
  }
}
