public import UVRuntime

/// One answer of the responder.
public struct HTTPResponse: Sendable {
  public var status: Int
  public var contentType: String
  public var body: [UInt8]
  public var headers: [(name: String, value: String)]

  public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String, headers: [(name: String, value: String)] = []) {
    self.status = status
    self.contentType = contentType
    self.body = Array(body.utf8)
    self.headers = headers
  }

  public static func text(_ status: Int, _ body: String) -> HTTPResponse {
    HTTPResponse(status: status, body: body.hasSuffix("\n") ? body : body + "\n")
  }

  /// The bytes on the wire. `Connection: close`: one request per connection.
  func serialized(includeBody: Bool) -> [UInt8] {
    var head = "HTTP/1.1 \(status) \(Self.reason(status))\r\n"
    head += "Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n"
    head += "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
    for (name, value) in headers { head += "\(name): \(value)\r\n" }
    head += "\r\n"
    var bytes = Array(head.utf8)
    if includeBody { bytes += body }
    return bytes
  }

  static func reason(_ status: Int) -> String {
    switch status {
    case 200: "OK"
    case 400: "Bad Request"
    case 404: "Not Found"
    case 405: "Method Not Allowed"
    case 408: "Request Timeout"
    case 431: "Request Header Fields Too Large"
    case 500: "Internal Server Error"
    case 503: "Service Unavailable"
    case 505: "HTTP Version Not Supported"
    default: "Status"
    }
  }
}

/// Answers one GET (or HEAD) for a path. May suspend (readiness asks providers).
public typealias HTTPHandler = @Sendable (HTTPRequestHead) async -> HTTPResponse

/// A small, strict HTTP/1.1 responder on an event loop, for `/metrics`,
/// `/healthz` and `/readyz`: GET and HEAD only, one request per connection,
/// the request head bounded, and every connection closed when it is idle or
/// slow (a loop timer, first for reading the request, then for writing the
/// answer). `start` and `shutdown` may be called from any thread; everything
/// else runs on the loop.
public final class HTTPServer: @unchecked Sendable {
  public struct Limits: Sendable {
    /// Request line plus headers.
    public var maxHeadBytes: Int
    /// From accept until the whole request head has arrived.
    public var readTimeout: Duration
    /// From the answer being queued until the peer has taken all of it.
    public var writeTimeout: Duration
    /// Connections beyond this are closed as soon as they are accepted.
    public var maxConnections: Int

    public init(maxHeadBytes: Int = 8192, readTimeout: Duration = .seconds(10), writeTimeout: Duration = .seconds(30), maxConnections: Int = 64) {
      self.maxHeadBytes = maxHeadBytes
      self.readTimeout = readTimeout
      self.writeTimeout = writeTimeout
      self.maxConnections = maxConnections
    }
  }

  public let loop: EventLoop
  public let limits: Limits
  let routes: [String: HTTPHandler]

  // Loop thread only.
  private var listener: (any StreamListener)?
  private var connections: [ObjectIdentifier: HTTPConnection] = [:]
  private var handlers: [ObjectIdentifier: Task<Void, Never>] = [:]
  private var stopped = false

  public init(loop: EventLoop, routes: [String: HTTPHandler], limits: Limits = Limits()) {
    self.loop = loop
    self.routes = routes
    self.limits = limits
  }

  /// Listens on the first of `endpoints` that can be bound (`:8095` means
  /// "all interfaces": IPv6 dual-stack where the node has IPv6, else IPv4) and
  /// returns the bound address (with the port the kernel chose for port 0).
  public func start(_ endpoints: [Endpoint]) async throws -> String {
    try await loop.submit { [self] in
      precondition(listener == nil, "already listening")
      guard !stopped else { throw TransportError("the server has been shut down") }
      var lastError: (any Error)?
      for endpoint in endpoints {
        do {
          let l = try Transports.listen(endpoint, on: loop) { [self] stream in accept(stream) }
          listener = l
          return l.address
        } catch {
          lastError = error
        }
      }
      throw lastError ?? TransportError("no address to listen on")
    }
  }

  /// Open connections. Loop thread only.
  public var connectionCount: Int { connections.count }

  /// Closes the listener and every connection, cancels the handlers still
  /// running and waits for them: once this returns the server holds no handle.
  public func shutdown() async {
    let running = try? await loop.submit { [self] () -> [Task<Void, Never>] in
      stopped = true
      listener?.close()
      listener = nil
      for connection in Array(connections.values) { connection.stream.close() }
      return Array(handlers.values)
    }
    for task in running ?? [] {
      task.cancel()
      await task.value
    }
  }

  private func accept(_ stream: any ByteStream) {
    guard !stopped, connections.count < limits.maxConnections else {
      stream.close()
      return
    }
    let connection = HTTPConnection(stream: stream, server: self)
    connections[ObjectIdentifier(connection)] = connection
    connection.start()
  }

  func closed(_ connection: HTTPConnection) {
    connections[ObjectIdentifier(connection)] = nil
  }

  /// A complete head arrived: answer at once (errors) or run the handler.
  func dispatch(_ head: HTTPRequestHead, on connection: HTTPConnection) {
    let includeBody = head.method != "HEAD"
    guard head.method == "GET" || head.method == "HEAD" else {
      connection.respond(
        HTTPResponse(status: 405, body: "only GET and HEAD are served\n", headers: [("Allow", "GET, HEAD")]), includeBody: true)
      return
    }
    guard let handler = routes[head.path] else {
      let paths = routes.keys.sorted().joined(separator: ", ")
      connection.respond(.text(404, "not found: this server answers \(paths)"), includeBody: includeBody)
      return
    }
    let id = ObjectIdentifier(connection)
    handlers[id] = Task(executorPreference: loop) { [self] in
      let response = await handler(head)
      loop.executeOrRun { [self] in
        handlers[id] = nil
        connection.respond(response, includeBody: includeBody)
      }
    }
  }
}

/// One accepted connection: reads one request head, answers, closes. Loop thread only.
final class HTTPConnection: ByteStreamDelegate, @unchecked Sendable {
  let stream: any ByteStream
  private weak var server: HTTPServer?
  private let limits: HTTPServer.Limits
  private var parser: HTTPRequestParser
  private var timer: UVTimer?
  private var answered = false

  init(stream: any ByteStream, server: HTTPServer) {
    self.stream = stream
    self.server = server
    limits = server.limits
    parser = HTTPRequestParser(maxHeadBytes: server.limits.maxHeadBytes)
  }

  func start() {
    stream.delegate = self
    arm(limits.readTimeout)
    stream.startReading()
  }

  /// (Re)starts the one timer: when it fires, the connection is closed as is.
  private func arm(_ timeout: Duration) {
    let timer = self.timer ?? UVTimer(on: stream.loop)
    self.timer = timer
    timer.stop()
    timer.start(timeoutMs: max(1, timeout.timerMilliseconds)) { [weak self] in self?.stream.close() }
  }

  func byteStream(_ stream: any ByteStream, didRead bytes: UnsafeRawBufferPointer) {
    guard !answered else { return }
    switch parser.feed(bytes) {
    case .needMore:
      break
    case .head(let head):
      answered = true
      stream.stopReading()
      timer?.stop()  // the handler may take a while (readiness asks providers)
      if let server { server.dispatch(head, on: self) } else { stream.close() }
    case .refuse(let status, let reason):
      answered = true
      stream.stopReading()
      respond(.text(status, reason), includeBody: true)
    }
  }

  func respond(_ response: HTTPResponse, includeBody: Bool) {
    guard stream.isOpen else { return }
    answered = true
    response.serialized(includeBody: includeBody).withUnsafeBytes { stream.write($0) }
    arm(limits.writeTimeout)
    stream.closeAfterFlush()
  }

  func byteStreamDidDrain(_ stream: any ByteStream) {}

  func byteStreamDidClose(_ stream: any ByteStream, error: UVError?) {
    timer?.close()
    timer = nil
    server?.closed(self)
  }
}

/// `--metrics-addr` values, as upstream (controller-runtime) reads them:
/// `:8095` is every interface, `host:port` or `[v6]:port` one address; `0`
/// (and, here, the empty string) turns the endpoint off.
public enum ListenAddress {
  public struct ParseError: Error, CustomStringConvertible {
    public var description: String
  }

  /// The endpoints to try in order, or nil when the endpoint is off.
  public static func parse(_ text: String) throws(ParseError) -> [Endpoint]? {
    if text.isEmpty || text == "0" { return nil }
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
      throw ParseError(description: "\(text): expected [host]:port, e.g. :8095 or 127.0.0.1:8095")
    }
    var host = String(text[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") {
      host = String(host.dropFirst().dropLast())
    } else if host.contains(":") {
      throw ParseError(description: "\(text): write an IPv6 address in brackets, e.g. [::1]:8095")
    }
    if host.isEmpty { return [.tcp(host: "::", port: port), .tcp(host: "0.0.0.0", port: port)] }
    if host == "localhost" { return [.tcp(host: "127.0.0.1", port: port)] }
    guard host.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E || $0 == 0x3A || ($0 >= 0x61 && $0 <= 0x66) || ($0 >= 0x41 && $0 <= 0x46) })
    else {
      throw ParseError(description: "\(text): the host must be a numeric IP address or localhost")
    }
    return [.tcp(host: host, port: port)]
  }
}
