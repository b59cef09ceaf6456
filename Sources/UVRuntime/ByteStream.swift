/// Receives what happens on a `ByteStream`. Called on the stream's loop thread.
public protocol ByteStreamDelegate: AnyObject {
  /// Bytes arrived. The buffer is valid only during the call.
  func byteStream(_ stream: any ByteStream, didRead bytes: UnsafeRawBufferPointer)
  /// All queued writes have been handed to the kernel.
  func byteStreamDidDrain(_ stream: any ByteStream)
  /// The stream ended: `error` is nil for an orderly end of file or a local close.
  func byteStreamDidClose(_ stream: any ByteStream, error: UVError?)
}

/// A connected byte stream (unix socket, TCP, in memory). Everything above the
/// transports sees only this. Loop thread only.
public protocol ByteStream: AnyObject {
  var loop: EventLoop { get }
  var delegate: (any ByteStreamDelegate)? { get set }
  /// Peer and local addresses in gRPC's notation (`unix:/path`, `ipv4:1.2.3.4:5`, `in-process:n`).
  var remoteAddress: String { get }
  var localAddress: String { get }
  /// Bytes queued but not yet accepted by the kernel (or peer), for backpressure.
  var pendingWriteBytes: Int { get }
  var isOpen: Bool { get }
  func startReading()
  func stopReading()
  /// Queues a copy of `bytes` for writing, in order.
  func write(_ bytes: UnsafeRawBufferPointer)
  /// Closes at once; pending writes are dropped. Idempotent.
  func close()
  /// Closes once every queued write has been handed over.
  func closeAfterFlush()
}

/// A listening endpoint. Loop thread only.
public protocol StreamListener: AnyObject {
  var address: String { get }
  func close()
}

/// Where to listen or connect: `unix:///path`, `tcp://host:port`, `memory://name`.
public enum Endpoint: Hashable, Sendable, CustomStringConvertible {
  case unix(path: String)
  case tcp(host: String, port: Int)
  case memory(name: String)

  public struct ParseError: Error, CustomStringConvertible {
    public var description: String
  }

  public init(parsing text: String) throws(ParseError) {
    if text.hasPrefix("unix://") {
      self = try Endpoint.unixPath(String(text.dropFirst("unix://".count)), text)
    } else if text.hasPrefix("unix:") {
      self = try Endpoint.unixPath(String(text.dropFirst("unix:".count)), text)
    } else if text.hasPrefix("tcp://") {
      let rest = text.dropFirst("tcp://".count)
      guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]),
        (0...65535).contains(port)
      else {
        throw ParseError(description: "endpoint \(text): expected tcp://host:port")
      }
      var host = String(rest[..<colon])
      if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
      self = .tcp(host: host.isEmpty ? "0.0.0.0" : host, port: port)
    } else if text.hasPrefix("memory://") {
      self = .memory(name: String(text.dropFirst("memory://".count)))
    } else {
      throw ParseError(description: "endpoint \(text): scheme must be unix:// or tcp://")
    }
  }

  private static func unixPath(_ path: String, _ text: String) throws(ParseError) -> Endpoint {
    guard !path.isEmpty else { throw ParseError(description: "endpoint \(text): empty socket path") }
    return .unix(path: path)
  }

  public var description: String {
    switch self {
    case .unix(let path): return "unix://\(path)"
    case .tcp(let host, let port): return host.contains(":") ? "tcp://[\(host)]:\(port)" : "tcp://\(host):\(port)"
    case .memory(let name): return "memory://\(name)"
    }
  }
}
