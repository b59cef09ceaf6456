/// What the Kubernetes client needs from HTTP: one request with a whole response, and
/// one request whose response body arrives as lines (a watch). The HTTP target
/// implements it on libcurl and the loop; nothing here knows which.
public protocol KubeTransport: Sendable {
  func send(_ request: KubeHTTPRequest) async throws -> KubeHTTPResponse
  /// Starts a streaming request. The status arrives first; for a status other than 200
  /// the lines are the error body.
  func streamLines(_ request: KubeHTTPRequest) async throws -> KubeHTTPStream
}

public struct KubeHTTPRequest: Sendable {
  public var method: String
  /// Path and query, e.g. `/api/v1/namespaces/ns/pods?watch=1`.
  public var path: String
  public var headers: [(name: String, value: String)]
  public var body: [UInt8]?
  /// Whole-call bound for `send`; for streams, the longest quiet time between lines.
  public var timeout: Duration

  public init(method: String, path: String, headers: [(name: String, value: String)] = [], body: [UInt8]? = nil, timeout: Duration) {
    self.method = method
    self.path = path
    self.headers = headers
    self.body = body
    self.timeout = timeout
  }
}

public struct KubeHTTPResponse: Sendable {
  public var status: Int
  public var body: [UInt8]
  public init(status: Int, body: [UInt8]) {
    self.status = status
    self.body = body
  }
}

public struct KubeHTTPStream: Sendable {
  public var status: Int
  /// Each line without its newline; ends when the server ends the response.
  public var lines: AsyncThrowingStream<[UInt8], any Error>
  public init(status: Int, lines: AsyncThrowingStream<[UInt8], any Error>) {
    self.status = status
    self.lines = lines
  }
}

/// A transport that could not reach the server at all (refused, TLS, timeout): the
/// client reports it as a retryable error with code 0.
public struct KubeTransportError: Error, Sendable, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}
