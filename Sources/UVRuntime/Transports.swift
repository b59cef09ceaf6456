import CUV
import Glibc

/// Errors from setting up a listener or connection, with the endpoint named.
public struct TransportError: Error, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}

/// Opens listeners and connections for every `Endpoint` kind. Loop thread only;
/// the streams handed out live on `loop`.
public enum Transports {
  public static func listen(
    _ endpoint: Endpoint, on loop: EventLoop, onAccept: @escaping (any ByteStream) -> Void
  ) throws -> any StreamListener {
    loop.preconditionInLoop()
    switch endpoint {
    case .unix(let path):
      try refuseNonSocket(path)
      let listener = try UVListener(
        loop: loop, address: "unix:\(path)", unlinkOnClose: path,
        initialize: { uv_pipe_init(loop.uvLoop, cuv_as_pipe($0), 0) },
        accept: { server throws(UVError) in
          let client = try UVStream(loop: loop, remote: "unix:", local: "unix:\(path)") {
            uv_pipe_init(loop.uvLoop, cuv_as_pipe($0), 0)
          }
          let rc = uv_accept(cuv_stream(server.handle), client.stream)
          if rc < 0 {
            client.close()
            throw UVError(rc, "accept")
          }
          return client
        }, onAccept: onAccept)
      do {
        // Bound under a temporary name, then renamed over the path: the path is never
        // missing (a rolling update replaces a live socket, and kubelet may connect at
        // any moment), and libuv, which unlinks the name it bound when the handle closes,
        // only knows the temporary name. The listener removes the path itself, and only
        // while it is still its own socket.
        let temporary = "\(path).\(getpid()).new"
        let bindPath = temporary.utf8.count < 108 ? temporary : path
        if bindPath == temporary { unlink(temporary) }
        try UVError.check(uv_pipe_bind(cuv_as_pipe(listener.handle), bindPath), "bind \(bindPath)")
        // Owner and group only, whatever the umask: connecting needs write permission, and
        // whoever may connect may publish volumes. Set before the rename, so the path is
        // never world-writable.
        guard chmod(bindPath, 0o660) == 0 else {
          let e = errno
          if bindPath == temporary { unlink(temporary) }
          throw UVError(-e, "chmod \(bindPath)")
        }
        if bindPath == temporary {
          guard rename(temporary, path) == 0 else {
            let e = errno
            unlink(temporary)
            throw UVError(-e, "rename \(temporary) to \(path)")
          }
        }
        listener.rememberBoundFile()
        try listener.listen()
      } catch {
        listener.close()
        throw TransportError("cannot listen on \(endpoint): \(error)")
      }
      return listener
    case .tcp(let host, let port):
      var storage = try socketAddress(host: host, port: port)
      let listener = try UVListener(
        loop: loop, address: endpoint.description, unlinkOnClose: nil,
        initialize: { uv_tcp_init(loop.uvLoop, cuv_as_tcp($0)) },
        accept: { server throws(UVError) in
          let client = try UVStream(loop: loop, remote: "ipv4:unknown", local: endpoint.description) {
            uv_tcp_init(loop.uvLoop, cuv_as_tcp($0))
          }
          let rc = uv_accept(cuv_stream(server.handle), client.stream)
          if rc < 0 {
            client.close()
            throw UVError(rc, "accept")
          }
          uv_tcp_nodelay(cuv_as_tcp(client.handle), 1)
          return client
        }, onAccept: onAccept)
      do {
        try withUnsafePointer(to: &storage) {
          try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { addr throws(UVError) in
            try UVError.check(uv_tcp_bind(cuv_as_tcp(listener.handle), addr, 0), "bind \(endpoint)")
          }
        }
        try listener.listen()
      } catch {
        listener.close()
        throw TransportError("cannot listen on \(endpoint): \(error)")
      }
      // Port 0 asks the kernel for a free port: report the one it chose.
      if let bound = boundPort(listener) { listener.address = Endpoint.tcp(host: host, port: bound).description }
      return listener
    case .memory(let name):
      return try MemoryListener(name: name, loop: loop, onAccept: onAccept)
    }
  }

  /// Connects; `completion` runs on `loop`.
  public static func connect(
    _ endpoint: Endpoint, on loop: EventLoop,
    completion: @escaping (Result<any ByteStream, TransportError>) -> Void
  ) {
    loop.preconditionInLoop()
    switch endpoint {
    case .unix(let path):
      let stream: UVStream
      do {
        stream = try UVStream(loop: loop, remote: "unix:\(path)", local: "unix:") {
          uv_pipe_init(loop.uvLoop, cuv_as_pipe($0), 0)
        }
      } catch {
        completion(.failure(TransportError("cannot connect to \(endpoint): \(error)")))
        return
      }
      let pending = PendingConnect(stream: stream, endpoint: endpoint, completion: completion)
      let req = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
      req.pointee.data = Unmanaged.passRetained(pending).toOpaque()
      uv_pipe_connect(req, cuv_as_pipe(stream.handle), path) { req, status in
        PendingConnect.complete(req!, status)
      }
    case .tcp(let host, let port):
      let stream: UVStream
      var storage: sockaddr_storage
      do {
        storage = try socketAddress(host: host, port: port)
        stream = try UVStream(loop: loop, remote: endpoint.description, local: "ipv4:") {
          uv_tcp_init(loop.uvLoop, cuv_as_tcp($0))
        }
      } catch {
        completion(.failure(TransportError("cannot connect to \(endpoint): \(error)")))
        return
      }
      uv_tcp_nodelay(cuv_as_tcp(stream.handle), 1)
      let pending = PendingConnect(stream: stream, endpoint: endpoint, completion: completion)
      let req = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
      req.pointee.data = Unmanaged.passRetained(pending).toOpaque()
      let rc = withUnsafePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { addr in
          uv_tcp_connect(req, cuv_as_tcp(stream.handle), addr) { req, status in
            PendingConnect.complete(req!, status)
          }
        }
      }
      if rc < 0 { PendingConnect.complete(req, rc) }
    case .memory(let name):
      MemoryListener.connect(name: name, from: loop, completion: completion)
    }
  }

  /// A socket file at the path is replaced (a leftover, or a previous driver that is
  /// draining); anything else there is refused rather than clobbered.
  static func refuseNonSocket(_ path: String) throws(TransportError) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    guard (st.st_mode & S_IFMT) == S_IFSOCK else {
      throw TransportError("refusing to replace \(path): it exists and is not a socket")
    }
  }

  private static func boundPort(_ listener: UVListener) -> Int? {
    var storage = sockaddr_storage()
    var length = Int32(MemoryLayout<sockaddr_storage>.size)
    let rc = withUnsafeMutablePointer(to: &storage) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_getsockname(cuv_as_tcp(listener.handle), $0, &length) }
    }
    guard rc == 0 else { return nil }
    // sin_port and sin6_port sit at the same offset, in network byte order.
    return withUnsafeBytes(of: &storage) { Int(UInt16(bigEndian: $0.load(fromByteOffset: 2, as: UInt16.self))) }
  }

  static func socketAddress(host: String, port: Int) throws(TransportError) -> sockaddr_storage {
    var storage = sockaddr_storage()
    let name = host == "localhost" ? "127.0.0.1" : host
    let rc = withUnsafeMutablePointer(to: &storage) { p -> Int32 in
      if name.contains(":") {
        return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { uv_ip6_addr(name, Int32(port), $0) }
      }
      return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { uv_ip4_addr(name, Int32(port), $0) }
    }
    guard rc == 0 else { throw TransportError("\(host): not a numeric IP address or localhost") }
    return storage
  }
}

private final class PendingConnect {
  let stream: any ByteStream & AnyObject
  let endpoint: Endpoint
  let completion: (Result<any ByteStream, TransportError>) -> Void

  init(stream: any ByteStream, endpoint: Endpoint, completion: @escaping (Result<any ByteStream, TransportError>) -> Void) {
    self.stream = stream
    self.endpoint = endpoint
    self.completion = completion
  }

  static func complete(_ req: UnsafeMutablePointer<uv_connect_t>, _ status: Int32) {
    let me = Unmanaged<PendingConnect>.fromOpaque(req.pointee.data).takeRetainedValue()
    req.deallocate()
    if status < 0 {
      me.stream.close()
      me.completion(.failure(TransportError("cannot connect to \(me.endpoint): \(UVError(status, "connect"))")))
    } else {
      me.completion(.success(me.stream))
    }
  }
}
