/// An in-memory byte stream, one end of a pair. Each end lives on its own loop
/// (both may share one); bytes are delivered in order on the reader's loop.
/// For tests and benchmarks: the same code paths as a socket, no kernel.
public final class MemoryStream: ByteStream, @unchecked Sendable {
  public let loop: EventLoop
  public weak var delegate: (any ByteStreamDelegate)?
  public let remoteAddress: String
  public let localAddress: String
  public var pendingWriteBytes: Int { 0 }
  public private(set) var isOpen = true
  private weak var peer: MemoryStream?
  private var reading = false
  private var inbox: [[UInt8]] = []
  private var peerEnded = false
  private var reported = false
  /// Keeps this end alive until it is closed or has ended, as libuv keeps a socket
  /// handle; the peer holds it only weakly, so an end nobody else kept would vanish
  /// and its peer would never see the end of the stream.
  private var keepAlive: MemoryStream?

  init(loop: EventLoop, name: String, side: String) {
    self.loop = loop
    localAddress = "in-process:\(name)/\(side)"
    remoteAddress = "in-process:\(name)/\(side == "client" ? "server" : "client")"
  }

  /// A connected pair: `client` on `clientLoop`, `server` on `serverLoop`.
  public static func pair(name: String = "pair", clientLoop: EventLoop, serverLoop: EventLoop) -> (client: MemoryStream, server: MemoryStream) {
    let c = MemoryStream(loop: clientLoop, name: name, side: "client")
    let s = MemoryStream(loop: serverLoop, name: name, side: "server")
    c.peer = s
    s.peer = c
    c.keepAlive = c
    s.keepAlive = s
    return (c, s)
  }

  public func startReading() {
    loop.preconditionInLoop()
    reading = true
    deliver()
  }

  public func stopReading() { reading = false }

  public func write(_ bytes: UnsafeRawBufferPointer) {
    loop.preconditionInLoop()
    guard isOpen, bytes.count > 0, let peer else { return }
    let copy = [UInt8](bytes)
    peer.loop.execute { peer.receive(copy) }
  }

  private func receive(_ bytes: [UInt8]) {
    guard isOpen else { return }
    inbox.append(bytes)
    deliver()
  }

  private func deliver() {
    while reading, isOpen, !inbox.isEmpty {
      let chunk = inbox.removeFirst()
      chunk.withUnsafeBytes { delegate?.byteStream(self, didRead: $0) }
    }
    if reading, isOpen, inbox.isEmpty, peerEnded { end(nil) }
  }

  private func peerClosed() {
    peerEnded = true
    deliver()
  }

  public func close() {
    guard isOpen else { return }
    isOpen = false
    if let peer { peer.loop.execute { peer.peerClosed() } }
    loop.execute { self.report(nil) }
    keepAlive = nil
  }

  public func closeAfterFlush() { close() }

  private func end(_ error: UVError?) {
    isOpen = false
    report(error)
    keepAlive = nil
  }

  private func report(_ error: UVError?) {
    guard !reported else { return }
    reported = true
    let d = delegate
    delegate = nil
    d?.byteStreamDidClose(self, error: error)
  }
}

/// A named in-memory listener (`memory://name`).
final class MemoryListener: StreamListener, @unchecked Sendable {
  private static let registry = Locked<[String: MemoryListener]>([:])

  let name: String
  let loop: EventLoop
  let onAccept: (any ByteStream) -> Void
  var address: String { "memory://\(name)" }

  init(name: String, loop: EventLoop, onAccept: @escaping (any ByteStream) -> Void) throws(TransportError) {
    self.name = name
    self.loop = loop
    self.onAccept = onAccept
    let added = MemoryListener.registry.withLock { table -> Bool in
      if table[name] != nil { return false }
      table[name] = self
      return true
    }
    if !added { throw TransportError("memory://\(name) is already listening") }
  }

  func close() {
    MemoryListener.registry.withLock { table in
      if table[name] === self { table[name] = nil }
    }
  }

  static func connect(name: String, from loop: EventLoop, completion: @escaping (Result<any ByteStream, TransportError>) -> Void) {
    guard let listener = registry.withLock({ $0[name] }) else {
      completion(.failure(TransportError("cannot connect to memory://\(name): nobody is listening")))
      return
    }
    let (client, server) = MemoryStream.pair(name: name, clientLoop: loop, serverLoop: listener.loop)
    listener.loop.execute { listener.onAccept(server) }
    completion(.success(client))
  }
}
