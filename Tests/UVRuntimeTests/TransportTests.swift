import Glibc
import Testing
import UVRuntime

/// What one echo exchange observed.
struct EchoOutcome: Sendable {
  var listenerAddress = ""
  var echoed: [UInt8] = []
  var serverReceived = 0
  var serverEnd: UVError?
  var serverSawEnd = false
  var clientRemote = ""
  var serverLocal = ""
  var queuedByFirstWrite = 0
  var clientDrains = 0
}

/// Listens on `endpoint`, connects to the address the listener reports, sends
/// `payload` in one write, reads the echo back, closes the client, and waits until
/// the server has seen the end of the stream; then closes the listener.
func echo(_ payload: [UInt8], via endpoint: Endpoint, on loop: EventLoop) async throws -> EchoOutcome {
  try await onLoop(loop) { (done: Done<EchoOutcome>) in
    final class Exchange {
      let server = Recorder(echo: true)
      let client = Recorder()
      var listener: (any StreamListener)?
      var clientStream: (any ByteStream)?
      var outcome = EchoOutcome()
    }
    let x = Exchange()

    func finishIfBothEnded(_: Recorder) {
      guard x.server.closed, x.client.closed else { return }
      x.listener?.close()
      x.listener = nil
      x.clientStream = nil
      for recorder in [x.server, x.client] {
        recorder.onRead = nil
        recorder.onDrain = nil
        recorder.onClose = nil
      }
      x.outcome.echoed = x.client.received
      x.outcome.serverReceived = x.server.received.count
      x.outcome.serverEnd = x.server.closeError
      x.outcome.serverSawEnd = x.server.closed
      x.outcome.clientDrains = x.client.drains
      done(x.outcome)
    }

    // Like a socket server, keeps no reference to the accepted stream: it lives until closed.
    let listener = try Transports.listen(endpoint, on: loop) { stream in
      x.outcome.serverLocal = stream.localAddress
      stream.delegate = x.server
      stream.startReading()
    }
    x.listener = listener
    x.outcome.listenerAddress = listener.address
    x.server.onClose = finishIfBothEnded

    // Close once everything came back and nothing of ours is still queued.
    func closeClientIfDone(_: Recorder) {
      guard let stream = x.clientStream, x.client.received.count >= payload.count, stream.pendingWriteBytes == 0 else { return }
      stream.close()
    }
    x.client.onRead = closeClientIfDone
    x.client.onDrain = closeClientIfDone
    x.client.onClose = finishIfBothEnded

    let target = try Endpoint(parsing: listener.address)
    Transports.connect(target, on: loop) { result in
      switch result {
      case .failure(let error):
        listener.close()
        done.fail(error)
      case .success(let stream):
        x.clientStream = stream
        x.outcome.clientRemote = stream.remoteAddress
        stream.delegate = x.client
        stream.startReading()
        payload.withUnsafeBytes { stream.write($0) }
        x.outcome.queuedByFirstWrite = stream.pendingWriteBytes
      }
    }
  }
}

/// Connects and reports the error (or nil if the connection was made, then closed).
func connectError(_ endpoint: Endpoint, on loop: EventLoop) async throws -> TransportError? {
  try await onLoop(loop) { (done: Done<TransportError?>) in
    Transports.connect(endpoint, on: loop) { result in
      switch result {
      case .failure(let error):
        done(error)
      case .success(let stream):
        stream.close()
        done(nil)
      }
    }
  }
}

/// Tries to listen; returns the error, or nil after closing the listener it got.
func listenError(_ endpoint: Endpoint, on loop: EventLoop) async throws -> String? {
  try await onLoop(loop) { (done: Done<String?>) in
    do {
      let listener = try Transports.listen(endpoint, on: loop) { $0.close() }
      listener.close()
      done(nil)
    } catch {
      done("\(error)")
    }
  }
}

@Suite(.timeLimit(.minutes(1)))
struct TransportTests {
  @Test func unixSocketEchoesOneMebibyte() async throws {
    let dir = makeTempDirectory()
    defer { removeDirectory(dir) }
    let path = "\(dir)/echo.sock"
    let payload = pattern(1 << 20)
    let outcome = try await withLoop { loop in try await echo(payload, via: .unix(path: path), on: loop) }
    #expect(outcome.echoed.count == payload.count)
    #expect(outcome.echoed == payload)
    #expect(outcome.serverReceived == payload.count)
    #expect(outcome.serverSawEnd)
    #expect(outcome.serverEnd == nil)
    #expect(outcome.listenerAddress == "unix:\(path)")
    #expect(outcome.clientRemote == "unix:\(path)")
    #expect(outcome.serverLocal == "unix:\(path)")
    // More than a socket buffer holds: the rest was queued and its drain reported.
    if outcome.queuedByFirstWrite > 0 { #expect(outcome.clientDrains >= 1) }
    // Closing the listener removed its socket file.
    #expect(fileType(path) == nil)
  }

  @Test func tcpOnAnEphemeralPortEchoesOneMebibyte() async throws {
    let payload = pattern(1 << 20)
    let outcome = try await withLoop { loop in try await echo(payload, via: .tcp(host: "127.0.0.1", port: 0), on: loop) }
    #expect(outcome.echoed == payload)
    #expect(outcome.serverSawEnd)
    #expect(outcome.serverEnd == nil)
    // The listener reports the port the kernel chose, which is what the client dialled.
    let bound = try Endpoint(parsing: outcome.listenerAddress)
    guard case .tcp(let host, let port) = bound else {
      Issue.record("listener address \(outcome.listenerAddress) is not tcp")
      return
    }
    #expect(host == "127.0.0.1")
    #expect(port != 0)
    #expect(outcome.clientRemote == "tcp://127.0.0.1:\(port)")
  }

  @Test func memoryListenerEchoesOneMebibyte() async throws {
    let payload = pattern(1 << 20)
    let name = "echo-\(getpid())"
    let outcome = try await withLoop { loop in try await echo(payload, via: .memory(name: name), on: loop) }
    #expect(outcome.echoed == payload)
    #expect(outcome.serverSawEnd)
    #expect(outcome.serverEnd == nil)
    #expect(outcome.listenerAddress == "memory://\(name)")
    #expect(outcome.clientRemote == "in-process:\(name)/server")
    #expect(outcome.serverLocal == "in-process:\(name)/server")
  }

  @Test func memoryListenerNamesAreExclusiveUntilClosed() async throws {
    let name = "exclusive-\(getpid())"
    try await withLoop { loop in
      #expect(try await connectError(.memory(name: name), on: loop)?.description.contains("nobody is listening") == true)
      let errors = try await onLoop(loop) { (done: Done<(String?, String?)>) in
        let first = try Transports.listen(.memory(name: name), on: loop) { $0.close() }
        var second: String?
        do {
          let duplicate = try Transports.listen(.memory(name: name), on: loop) { $0.close() }
          duplicate.close()
        } catch {
          second = "\(error)"
        }
        first.close()
        // Free again once closed.
        var third: String?
        do {
          let again = try Transports.listen(.memory(name: name), on: loop) { $0.close() }
          again.close()
        } catch {
          third = "\(error)"
        }
        done((second, third))
      }
      #expect(errors.0?.contains("already listening") == true)
      #expect(errors.1 == nil)
      #expect(try await connectError(.memory(name: name), on: loop) != nil)
    }
  }

  @Test func staleSocketFileIsReplaced() async throws {
    let dir = makeTempDirectory()
    defer { removeDirectory(dir) }
    let path = "\(dir)/stale.sock"
    makeStaleSocket(path)
    #expect(fileType(path) == S_IFSOCK)
    try await withLoop { loop in
      // Nobody answers on the leftover file...
      let refused = try await connectError(.unix(path: path), on: loop)
      #expect(refused?.description.contains("connection refused") == true, "\(String(describing: refused))")
      // ...until a listener takes its place.
      let outcome = try await echo(Array("after a crash".utf8), via: .unix(path: path), on: loop)
      #expect(outcome.echoed == Array("after a crash".utf8))
    }
    #expect(fileType(path) == nil)
  }

  @Test func aListenerThatIsReplacedLeavesTheNewSocketInPlace() async throws {
    let dir = makeTempDirectory()
    defer { removeDirectory(dir) }
    let path = "\(dir)/csi.sock"
    try await withLoop { loop in
      let inodes = try await onLoop(loop) { (done: Done<(old: UInt, new: UInt, after: UInt?)>) in
        do {
          let old = try Transports.listen(.unix(path: path), on: loop) { $0.close() }
          let oldInode = inode(path)!
          // The next driver of a rolling update binds the same path while the old one drains.
          let new = try Transports.listen(.unix(path: path), on: loop) { $0.close() }
          let newInode = inode(path)!
          old.close()
          let after = inode(path)
          new.close()
          done((oldInode, newInode, after))
        } catch {
          Issue.record("listen failed: \(error)")
          done((0, 0, nil))
        }
      }
      #expect(inodes.old != inodes.new)
      #expect(inodes.after == inodes.new)  // the old listener's close left the new socket alone
    }
    #expect(fileType(path) == nil)  // and the new one's close removed its own
  }

  @Test func regularFileIsNeverRemoved() async throws {
    let dir = makeTempDirectory()
    defer { removeDirectory(dir) }
    let path = "\(dir)/csi.sock"
    writeFile(path, "not a socket\n")
    let error = try await withLoop { loop in try await listenError(.unix(path: path), on: loop) }
    #expect(error?.contains("refusing to replace \(path)") == true, "\(String(describing: error))")
    #expect(fileType(path) == S_IFREG)
    #expect(readFile(path) == "not a socket\n")
  }

  @Test func directoryIsNeverRemoved() async throws {
    let dir = makeTempDirectory()
    defer { removeDirectory(dir) }
    let path = "\(dir)/csi.sock"
    mkdir(path, 0o755)
    let error = try await withLoop { loop in try await listenError(.unix(path: path), on: loop) }
    #expect(error?.contains("refusing to replace \(path)") == true, "\(String(describing: error))")
    #expect(fileType(path) == S_IFDIR)
  }

  @Test func listeningInAMissingDirectoryFails() async throws {
    let path = "/nonexistent-\(getpid())/csi.sock"
    let error = try await withLoop { loop in try await listenError(.unix(path: path), on: loop) }
    // libuv reports ENOENT from bind as EACCES ("permission denied"); the path is named either way.
    #expect(error?.contains("cannot listen on unix://\(path): bind \(path)") == true, "\(String(describing: error))")
    #expect(fileType(path) == nil)
  }

  /// A write that fails (the peer is gone) ends the stream with the error, but tells
  /// the delegate only after `write` has returned: a delegate in the middle of a
  /// flush must not be closed under its feet.
  @Test func failedWriteReportsTheEndAfterWriteReturns() async throws {
    let dir = makeTempDirectory()
    defer { removeDirectory(dir) }
    let path = "\(dir)/gone.sock"
    let (insideWrite, error, openAfterWrite) = try await withLoop { loop in
      try await onLoop(loop) { (done: Done<(Bool, UVError?, Bool)>) in
        let streams = LoopBox<(client: (any ByteStream)?, server: (any ByteStream)?)>((nil, nil))
        let listener = LoopBox<(any StreamListener)?>(nil)
        let clientSide = Recorder()
        let writing = LoopBox(false)
        func writeOnceBothExist() {
          guard let client = streams.value.client, let server = streams.value.server else { return }
          listener.value?.close()
          server.close()  // the peer's descriptor is closed at once: the next write gets EPIPE
          client.delegate = clientSide
          clientSide.onClose = { side in
            let outcome = (writing.value, side.closeError, client.isOpen)
            // Break the reference cycles through the boxes before finishing.
            side.onClose = nil
            listener.value = nil
            streams.value = (nil, nil)
            done(outcome)
          }
          writing.value = true
          Array("anyone there?".utf8).withUnsafeBytes { client.write($0) }
          writing.value = false
          #expect(!client.isOpen)
        }
        listener.value = try Transports.listen(.unix(path: path), on: loop) { stream in
          streams.value.server = stream
          writeOnceBothExist()
        }
        Transports.connect(.unix(path: path), on: loop) { result in
          guard case .success(let stream) = result else { return done.fail(TransportError("connect failed")) }
          streams.value.client = stream
          writeOnceBothExist()
        }
      }
    }
    #expect(!insideWrite)
    #expect(error?.call == "write")
    #expect(error?.name == "EPIPE")
    #expect(!openAfterWrite)
  }

  @Test func connectingToAMissingSocketFailsClearly() async throws {
    let dir = makeTempDirectory()
    defer { removeDirectory(dir) }
    let path = "\(dir)/missing.sock"
    let error = try await withLoop { loop in try await connectError(.unix(path: path), on: loop) }
    let text = error?.description ?? "(connected)"
    #expect(text.contains("cannot connect to unix://\(path)"), "\(text)")
    #expect(text.contains("no such file or directory"), "\(text)")
    #expect(fileType(path) == nil)
  }
}

@Suite(.timeLimit(.minutes(1)))
struct MemoryStreamTests {
  /// Two loops, one stream end on each: bytes cross in order and the end follows them.
  @Test func pairEchoesAcrossLoopsThenEnds() async throws {
    let clientLoop = EventLoop(name: "mem-client")
    let serverLoop = EventLoop(name: "mem-server")
    let (client, server) = MemoryStream.pair(name: "pair", clientLoop: clientLoop, serverLoop: serverLoop)
    let serverSide = Recorder(echo: true)
    let clientSide = Recorder()

    try await onLoop(serverLoop) { (done: Done<Void>) in
      server.delegate = serverSide
      server.startReading()
      done()
    }
    let echoed = try await onLoop(clientLoop) { (done: Done<[UInt8]>) in
      client.delegate = clientSide
      clientSide.onRead = { side in
        if side.received.count == 11 { done(side.received) }
      }
      client.startReading()
      for part in ["hello", " ", "world"] { Array(part.utf8).withUnsafeBytes { client.write($0) } }
    }
    #expect(echoed == Array("hello world".utf8))
    #expect(client.remoteAddress == "in-process:pair/server")
    #expect(server.remoteAddress == "in-process:pair/client")

    let localEnd = try await onLoop(clientLoop) { (done: Done<(Bool, Bool)>) in
      clientSide.onClose = { side in done((client.isOpen, side.closeError == nil)) }
      client.close()
      client.close()  // idempotent
      Array("after close".utf8).withUnsafeBytes { client.write($0) }  // ignored
    }
    #expect(localEnd == (false, true))

    // The server learns of the end on its own loop, after every byte (the notice was
    // queued there by `close`, before this submit).
    let serverView = try await serverLoop.submit { () -> (Bool, Bool, Int) in
      (serverSide.closed, server.isOpen, serverSide.received.count)
    }
    #expect(serverView == (true, false, 11))
    #expect(serverSide.closeError == nil)

    await clientLoop.shutdownAndWait()
    await serverLoop.shutdownAndWait()
    for loop in [clientLoop, serverLoop] {
      #expect(loop.closeResult == 0)
      #expect(loop.leakedHandles == [])
    }
  }

  /// A reader that has not started yet keeps bytes and the end until it does.
  @Test func bytesAndEndWaitForTheReader() async throws {
    try await withLoop { loop in
      let (client, server) = MemoryStream.pair(name: "lazy", clientLoop: loop, serverLoop: loop)
      let serverSide = Recorder()
      try await loop.submit {
        server.delegate = serverSide
        Array("queued".utf8).withUnsafeBytes { client.write($0) }
        client.close()
      }
      // Both deliveries were queued on the loop by the call above; let them run.
      let before = try await loop.submit { (serverSide.received.count, serverSide.closed, server.isOpen) }
      #expect(before == (0, false, true))
      let after = try await loop.submit { () -> ([UInt8], Bool, Bool) in
        server.startReading()
        return (serverSide.received, serverSide.closed, server.isOpen)
      }
      #expect(after.0 == Array("queued".utf8))
      #expect(after.1)
      #expect(!after.2)
      #expect(serverSide.closeError == nil)
    }
  }

  /// An end lives until it is closed, like a socket handle, even when nobody holds it.
  @Test func unheldEndStillCarriesBytesAndTheEnd() async throws {
    try await withLoop { loop in
      let serverSide = Recorder(echo: true)
      let clientSide = Recorder()
      let client = try await loop.submit { () -> MemoryStream in
        let (client, server) = MemoryStream.pair(name: "unheld", clientLoop: loop, serverLoop: loop)
        server.delegate = serverSide
        server.startReading()
        return client  // the only reference to `server` ends here
      }
      let echoed = try await onLoop(loop) { (done: Done<[UInt8]>) in
        client.delegate = clientSide
        clientSide.onRead = { side in if side.received.count == 4 { done(side.received) } }
        client.startReading()
        Array("ping".utf8).withUnsafeBytes { client.write($0) }
      }
      #expect(echoed == Array("ping".utf8))
      try await loop.submit { client.close() }
      // The close notice was queued ahead of this submit.
      #expect(try await loop.submit { serverSide.closed })
      #expect(serverSide.closeError == nil)
    }
  }

  /// A peer's close is an orderly end for the other side; writes after it are ignored.
  @Test func peerCloseEndsTheOtherSide() async throws {
    try await withLoop { loop in
      let (client, server) = MemoryStream.pair(name: "gone", clientLoop: loop, serverLoop: loop)
      let clientSide = Recorder()
      try await loop.submit {
        client.delegate = clientSide
        client.startReading()
        server.close()
      }
      let view = try await loop.submit { () -> (Bool, Bool, Int) in
        Array("late".utf8).withUnsafeBytes { client.write($0) }
        return (clientSide.closed, client.isOpen, clientSide.received.count)
      }
      // The client saw an orderly end of file and nothing else.
      #expect(view == (true, false, 0))
      #expect(clientSide.closeError == nil)
    }
  }
}

func inode(_ path: String) -> UInt? {
  var st = stat()
  return lstat(path, &st) == 0 ? UInt(st.st_ino) : nil
}
