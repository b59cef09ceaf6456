import CUV
import Glibc

/// A connected libuv stream: a unix socket (`uv_pipe_t`) or TCP (`uv_tcp_t`).
final class UVStream: UVHandle<cuv_stream_storage>, ByteStream, @unchecked Sendable {
  weak var delegate: (any ByteStreamDelegate)?
  let remoteAddress: String
  let localAddress: String
  private(set) var pendingWriteBytes = 0
  private var reading = false
  private var closeWhenDrained = false
  private var reported = false
  /// Why the stream ended, for the report queued when it closed (nil: end of file or a local close).
  private var endError: UVError?
  private var readBuffer: UnsafeMutableRawBufferPointer?

  /// `initialize` must init the handle on the loop (uv_pipe_init / uv_tcp_init).
  init(loop: EventLoop, remote: String, local: String, initialize: (UnsafeMutablePointer<cuv_stream_storage>) -> Int32) throws(UVError) {
    remoteAddress = remote
    localAddress = local
    super.init(loop: loop)
    let rc = initialize(handle)
    if rc < 0 {
      handle.deallocate()
      throw UVError(rc, "stream init")
    }
    retainUntilClosed()
  }

  var stream: UnsafeMutablePointer<uv_stream_t> { cuv_stream(handle) }
  var isOpen: Bool { !isClosed }

  func startReading() {
    guard !isClosed, !reading else { return }
    reading = true
    uv_read_start(stream, { h, suggested, buf in
      let me = UVStream.owner(h!.pointee.data)
      if me.readBuffer == nil {
        me.readBuffer = .allocate(byteCount: 64 * 1024, alignment: 16)
      }
      buf!.pointee = uv_buf_init(me.readBuffer!.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(me.readBuffer!.count))
    }, { s, nread, buf in
      let me = UVStream.owner(s!.pointee.data)
      if nread > 0 {
        me.delegate?.byteStream(me, didRead: UnsafeRawBufferPointer(start: buf!.pointee.base, count: nread))
      } else if nread < 0 {
        let code = Int32(nread)
        me.finish(error: code == cuv_eof() ? nil : UVError(code, "read"))
      }
    })
  }

  func stopReading() {
    guard !isClosed, reading else { return }
    reading = false
    uv_read_stop(stream)
  }

  func write(_ bytes: UnsafeRawBufferPointer) {
    loop.preconditionInLoop()
    guard !isClosed, bytes.count > 0 else { return }
    var offset = 0
    if pendingWriteBytes == 0 {
      // Fast path: a unix socket usually takes everything at once.
      var buf = uv_buf_init(UnsafeMutableRawPointer(mutating: bytes.baseAddress!).assumingMemoryBound(to: CChar.self), UInt32(bytes.count))
      let n = uv_try_write(stream, &buf, 1)
      if n == Int32(bytes.count) { return }
      if n > 0 {
        offset = Int(n)
      } else if n != cuv_eagain() {
        finish(error: UVError(n, "write"))
        return
      }
    }
    let remaining = bytes.count - offset
    let req = UnsafeMutablePointer<uv_write_t>.allocate(capacity: 1)
    // One block: the byte count, then the bytes (freed in the write callback).
    let block = UnsafeMutableRawPointer.allocate(byteCount: 8 + remaining, alignment: 8)
    block.storeBytes(of: remaining, as: Int.self)
    let copy = block + 8
    copy.copyMemory(from: bytes.baseAddress! + offset, byteCount: remaining)
    req.pointee.data = block
    var buf = uv_buf_init(copy.assumingMemoryBound(to: CChar.self), UInt32(remaining))
    pendingWriteBytes += remaining
    let rc = uv_write(req, stream, &buf, 1) { req, status in
      let req = req!
      let block = req.pointee.data!
      let size = block.load(as: Int.self)
      block.deallocate()
      let handle = req.pointee.handle!
      req.deallocate()
      guard let data = handle.pointee.data else { return }
      let me = UVStream.owner(data)
      me.pendingWriteBytes -= size
      if status < 0 {
        if status != cuv_ecanceled() { me.finish(error: UVError(status, "write")) }
        return
      }
      if me.pendingWriteBytes == 0 {
        if me.closeWhenDrained { me.close() } else { me.delegate?.byteStreamDidDrain(me) }
      }
    }
    if rc < 0 {
      pendingWriteBytes -= remaining
      block.deallocate()
      req.deallocate()
      finish(error: UVError(rc, "write"))
    }
  }

  func closeAfterFlush() {
    if pendingWriteBytes == 0 { close() } else { closeWhenDrained = true }
  }

  /// Ends the stream; the delegate hears of it once the current call has returned (see `willClose`).
  private func finish(error: UVError?) {
    guard !isClosed else { return }
    endError = error
    close()
  }

  private func report(_ error: UVError?) {
    guard !reported else { return }
    reported = true
    let d = delegate
    delegate = nil
    d?.byteStreamDidClose(self, error: error)
  }

  override func willClose() {
    if reading { uv_read_stop(stream) }
    reading = false
    if let b = readBuffer {
      b.deallocate()
      readBuffer = nil
    }
    // Tell the delegate after this call returns, so a delegate that closes from
    // inside a callback does not re-enter itself, and a failed `write` does not call
    // back into a delegate that is still in the middle of calling it.
    loop.execute { [self] in report(endError) }
  }
}

/// A listening unix or TCP socket.
final class UVListener: UVHandle<cuv_stream_storage>, StreamListener, @unchecked Sendable {
  var address: String
  private let unlinkOnClose: String?
  let onAccept: (any ByteStream) -> Void
  let accept: (UVListener) throws(UVError) -> any ByteStream

  init(
    loop: EventLoop, address: String, unlinkOnClose: String?,
    initialize: (UnsafeMutablePointer<cuv_stream_storage>) -> Int32,
    accept: @escaping (UVListener) throws(UVError) -> any ByteStream,
    onAccept: @escaping (any ByteStream) -> Void
  ) throws(UVError) {
    self.address = address
    self.unlinkOnClose = unlinkOnClose
    self.onAccept = onAccept
    self.accept = accept
    super.init(loop: loop)
    let rc = initialize(handle)
    if rc < 0 {
      handle.deallocate()
      throw UVError(rc, "listener init")
    }
    retainUntilClosed()
  }

  func listen(backlog: Int32 = 1024) throws(UVError) {
    try UVError.check(
      uv_listen(cuv_stream(handle), backlog) { server, status in
        let me = UVListener.owner(server!.pointee.data)
        guard status >= 0 else { return }
        if let stream = try? me.accept(me) { me.onAccept(stream) }
      }, "listen")
  }

  /// The socket file this listener bound (device, inode), taken right after bind.
  private var boundFile: (dev: UInt, ino: UInt)?

  func rememberBoundFile() {
    guard let path = unlinkOnClose else { return }
    var st = stat()
    if lstat(path, &st) == 0 { boundFile = (UInt(st.st_dev), UInt(st.st_ino)) }
  }

  /// Removes the socket file only if it is still the one this listener bound: during a
  /// rolling update the next driver binds a new socket at the same path while this one
  /// drains, and must not lose it when this one exits.
  override func willClose() {
    guard let path = unlinkOnClose, let bound = boundFile else { return }
    var st = stat()
    guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK, UInt(st.st_dev) == bound.dev, UInt(st.st_ino) == bound.ino
    else { return }
    unlink(path)
  }
}
