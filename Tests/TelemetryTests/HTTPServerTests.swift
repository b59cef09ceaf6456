import Glibc
import Testing
import Telemetry
import UVRuntime

/// Runs `body` with a fresh loop and a responder on 127.0.0.1 (a port the kernel
/// picks), then shuts both down and checks that every libuv handle was closed.
func withServer(
  limits: HTTPServer.Limits = HTTPServer.Limits(), routes: [String: HTTPHandler]? = nil,
  _ body: (HTTPServer, Int) async throws -> Void
) async throws {
  let loop = EventLoop(name: "http-test")
  let server = HTTPServer(
    loop: loop,
    routes: routes ?? [
      "/metrics": { _ in HTTPResponse(status: 200, contentType: MetricsRegistry.contentType, body: "up 1\n") },
      "/healthz": { _ in .text(200, "ok") },
    ], limits: limits)
  do {
    let address = try await server.start([.tcp(host: "127.0.0.1", port: 0)])
    guard case .tcp(_, let port) = try Endpoint(parsing: address) else { throw TransportError("not tcp: \(address)") }
    try await body(server, port)
  } catch {
    await server.shutdown()
    await loop.shutdownAndWait()
    throw error
  }
  await server.shutdown()
  await loop.shutdownAndWait()
  #expect(loop.leakedHandles == [])
  #expect(loop.closeResult == 0)
  #expect(loop.droppedWork == 0)
}

/// A plain blocking TCP client on a thread of its own (never a pool thread).
/// Every wait is bounded by `SO_RCVTIMEO`, so a hung server fails the test instead of hanging it.
struct RawClient {
  struct Result: Sendable {
    var bytes: [UInt8]
    /// The server closed the connection (end of file or reset), rather than the wait timing out.
    var closedByServer: Bool
    var text: String { String(decoding: bytes, as: UTF8.self) }
    var status: Int? {
      let line = text.split(separator: "\r\n", maxSplits: 1).first ?? ""
      let parts = line.split(separator: " ")
      return parts.count >= 2 && parts[0].hasPrefix("HTTP/1.1") ? Int(parts[1]) : nil
    }
    var body: String {
      let b = bytes
      var i = 0
      while i + 3 < b.count {
        if b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { return String(decoding: b[(i + 4)...], as: UTF8.self) }
        i += 1
      }
      return ""
    }
  }

  let fd: Int32

  static func connect(port: Int) throws -> RawClient {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TransportError("socket") }
    var tv = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else {
      Glibc.close(fd)
      throw TransportError("connect: \(errno)")
    }
    return RawClient(fd: fd)
  }

  func send(_ text: String) {
    let bytes = Array(text.utf8)
    var off = 0
    while off < bytes.count {
      let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      if n <= 0 { return }
      off += n
    }
  }

  /// Reads until the server closes the connection or the bounded wait runs out.
  func readToEnd() -> Result {
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
      let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
      if n > 0 {
        out += buf[..<n]
        continue
      }
      if n == 0 || errno == ECONNRESET { return Result(bytes: out, closedByServer: true) }
      return Result(bytes: out, closedByServer: false)  // timed out
    }
  }

  func close() { Glibc.close(fd) }
}

final class ThreadJob: @unchecked Sendable {
  let body: () -> Void
  init(_ body: @escaping () -> Void) { self.body = body }
}

/// Runs blocking socket code on a new OS thread and awaits its result.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
  try await withCheckedThrowingContinuation { c in
    let job = ThreadJob { c.resume(with: Result { try body() }) }
    var tid = pthread_t()
    let rc = pthread_create(&tid, nil, { arg in
      Unmanaged<ThreadJob>.fromOpaque(arg!).takeRetainedValue().body()
      return nil
    }, Unmanaged.passRetained(job).toOpaque())
    precondition(rc == 0)
    pthread_detach(tid)
  }
}

/// One request, the whole answer.
func exchange(port: Int, _ request: String) async throws -> RawClient.Result {
  try await onThread {
    let c = try RawClient.connect(port: port)
    defer { c.close() }
    c.send(request)
    return c.readToEnd()
  }
}

@Suite struct HTTPServerTests {
  @Test func getAnswersWithLengthTypeAndClose() async throws {
    try await withServer { _, port in
      let r = try await exchange(port: port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
      #expect(r.status == 200)
      #expect(r.closedByServer)
      #expect(r.text.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
      #expect(r.text.contains("Content-Length: 5\r\n"))
      #expect(r.text.contains("Connection: close\r\n"))
      #expect(r.body == "up 1\n")
    }
  }

  @Test func headHasTheLengthButNoBody() async throws {
    try await withServer { _, port in
      let r = try await exchange(port: port, "HEAD /metrics HTTP/1.0\r\n\r\n")
      #expect(r.status == 200)
      #expect(r.text.contains("Content-Length: 5\r\n"))
      #expect(r.body == "")
    }
  }

  @Test func otherMethodsAre405WithAllow() async throws {
    try await withServer { _, port in
      for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let r = try await exchange(port: port, "\(method) /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(r.status == 405)
        #expect(r.text.contains("Allow: GET, HEAD\r\n"))
      }
    }
  }

  @Test func unknownPathsAre404() async throws {
    try await withServer { _, port in
      let r = try await exchange(port: port, "GET /debug/pprof HTTP/1.1\r\nHost: x\r\n\r\n")
      #expect(r.status == 404)
      #expect(r.body.contains("/metrics"))
    }
  }

  @Test func garbageIs400() async throws {
    try await withServer { _, port in
      let r = try await exchange(port: port, "HELLO\r\n\r\n")
      #expect(r.status == 400)
      #expect(r.closedByServer)
      let tls = try await exchange(port: port, "\u{16}\u{03}\u{01}\u{02}\u{00}\u{01}\r\n\r\n")
      #expect(tls.status == 400)
    }
  }

  @Test func oversizedHeadersAre431AndTheConnectionCloses() async throws {
    try await withServer { _, port in
      let big = "GET /metrics HTTP/1.1\r\nHost: x\r\n" + String(repeating: "X-Filler: \(String(repeating: "a", count: 100))\r\n", count: 90) + "\r\n"
      let r = try await exchange(port: port, big)
      #expect(r.status == 431)
      #expect(r.closedByServer)
    }
  }

  @Test func anIdleConnectionIsClosedByTheReadTimeout() async throws {
    try await withServer(limits: .init(readTimeout: .milliseconds(100))) { server, port in
      let r = try await onThread {
        let c = try RawClient.connect(port: port)
        defer { c.close() }
        c.send("GET /metrics HTTP/1.1\r\nHo")  // and then nothing more
        return c.readToEnd()
      }
      #expect(r.closedByServer, "the server kept a slow client's connection open")
      #expect(r.bytes.isEmpty)
      // The timer and the stream are gone with the connection.
      #expect(try await server.loop.submit { server.connectionCount } == 0)
    }
  }

  @Test func aSlowClientDoesNotHoldUpAnother() async throws {
    try await withServer { _, port in
      let slow = try await onThread { try RawClient.connect(port: port) }
      slow.send("GET /metrics HTTP/1.1\r\n")  // incomplete: the server waits for the rest
      let fast = try await exchange(port: port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
      #expect(fast.status == 200)
      #expect(fast.body == "ok\n")
      slow.send("Host: x\r\n\r\n")
      let rest = try await onThread { slow.readToEnd() }
      slow.close()
      #expect(rest.status == 200)
      #expect(rest.body == "up 1\n")
    }
  }

  @Test func manyConcurrentClientsAllGetAnswers() async throws {
    try await withServer { _, port in
      let results = try await withThrowingTaskGroup(of: Int?.self) { group in
        for i in 0..<16 {
          group.addTask { try await exchange(port: port, "GET \(i % 2 == 0 ? "/metrics" : "/healthz") HTTP/1.1\r\nHost: x\r\n\r\n").status }
        }
        var all: [Int?] = []
        for try await s in group { all.append(s) }
        return all
      }
      #expect(results == Array(repeating: 200, count: 16))
    }
  }

  @Test func asyncHandlersMaySuspendOnTheLoop() async throws {
    let loopBox = LoopRef()
    try await withServer(routes: [
      "/readyz": { _ in
        try? await loopBox.loop?.sleep(milliseconds: 20)
        return .text(503, "provider \"x\": not answering")
      }
    ]) { server, port in
      loopBox.loop = server.loop
      let r = try await exchange(port: port, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
      #expect(r.status == 503)
      #expect(r.body == "provider \"x\": not answering\n")
    }
  }

  @Test func shutdownCancelsAHandlerInFlightAndLeavesNoHandles() async throws {
    let started = Signal()
    let loopBox = LoopRef()
    try await withServer(routes: [
      "/slow": { _ in
        started.fire()
        // Returns once cancelled by the shutdown.
        try? await loopBox.loop?.sleep(milliseconds: 600_000)
        return .text(200, "late")
      }
    ]) { server, port in
      loopBox.loop = server.loop
      let client = try await onThread { try RawClient.connect(port: port) }
      client.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
      await started.wait()
      await server.shutdown()
      let r = try await onThread { client.readToEnd() }
      client.close()
      #expect(r.closedByServer)
      #expect(r.bytes.isEmpty)
    }
  }
}

final class LoopRef: @unchecked Sendable {
  var loop: EventLoop?
}

/// Fires once; `wait` returns once it has.
final class Signal: @unchecked Sendable {
  private let state = Locked<(fired: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

  func fire() {
    let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
      s.fired = true
      defer { s.waiters = [] }
      return s.waiters
    }
    for w in waiters { w.resume() }
  }

  func wait() async {
    await withCheckedContinuation { c in
      let fired = state.withLock { s -> Bool in
        if s.fired { return true }
        s.waiters.append(c)
        return false
      }
      if fired { c.resume() }
    }
  }
}
