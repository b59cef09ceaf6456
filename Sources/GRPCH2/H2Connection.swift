import CNGHTTP2
import UVRuntime

/// A header list as it goes on the wire (names lower-case).
typealias HeaderList = [(name: String, value: String)]

/// One HTTP/2 stream's transport state; the gRPC server and client streams
/// subclass it. Loop thread only.
class H2Stream {
  var id: Int32 = -1
  let connection: H2Connection
  /// Headers of the HEADERS frame being received.
  var receivingHeaders: HeaderList = []
  /// Outbound DATA not yet taken by nghttp2.
  private(set) var outbound: [UInt8] = []
  private var outboundIndex = 0
  /// No more DATA will be queued; end the stream (or send `trailers`) once sent.
  var outboundFinished = false
  var trailers: HeaderList?
  /// nghttp2 asked to wait for more DATA (NGHTTP2_ERR_DEFERRED).
  var dataDeferred = false
  var isClosed = false
  /// Once our END_STREAM is on the wire, reset the stream so the peer stops sending.
  var resetAfterEndStream = false
  /// The call's `grpc-timeout`, enforced here for both sides (see `startDeadline`).
  private var deadlineTimer: UVTimer?

  init(connection: H2Connection) {
    self.connection = connection
  }

  var outboundPending: Int { outbound.count - outboundIndex }

  /// Calls `expired` on the loop once `timeout` has passed, unless
  /// `stopDeadline` runs first. The transport owns deadlines (a loop timer per
  /// call, closed with it) rather than GRPCCore's Task.sleep, which on Linux
  /// keeps its memory until it would have fired.
  func startDeadline(_ timeout: Duration, expired: @escaping (H2Stream) -> Void) {
    stopDeadline()
    let timer = UVTimer(on: connection.loop)
    deadlineTimer = timer
    timer.start(timeoutMs: timeout.timerMilliseconds) { [weak self] in
      guard let self else { return }
      self.stopDeadline()
      expired(self)
    }
  }

  func stopDeadline() {
    deadlineTimer?.close()
    deadlineTimer = nil
  }

  func queueOutbound(_ bytes: [UInt8]) {
    if outboundIndex == outbound.count {
      outbound = bytes
      outboundIndex = 0
    } else {
      outbound.append(contentsOf: bytes)
    }
    connection.resumeData(self)
  }

  func finishOutbound(trailers: HeaderList?) {
    outboundFinished = true
    self.trailers = trailers
    connection.resumeData(self)
  }

  /// nghttp2's DATA read callback: copies what is queued into `buffer`.
  func readOutbound(into buffer: UnsafeMutablePointer<UInt8>, length: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
    let n = min(outboundPending, length)
    if n > 0 {
      outbound.withUnsafeBufferPointer { src in
        buffer.update(from: src.baseAddress! + outboundIndex, count: n)
      }
      outboundIndex += n
      if outboundIndex == outbound.count {
        outbound.removeAll(keepingCapacity: outbound.capacity <= 64 * 1024)
        outboundIndex = 0
      }
      didDrainOutbound()
    }
    if outboundPending == 0 && outboundFinished {
      flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
      if let trailers {
        flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
        connection.submitTrailers(self, trailers)
      }
      return n
    }
    if n == 0 {
      dataDeferred = true
      return Int(NGHTTP2_ERR_DEFERRED.rawValue)
    }
    return n
  }

  // Events, overridden by the gRPC streams.
  func didReceiveHeaders(_ headers: HeaderList, endStream: Bool) {}
  func didReceiveData(_ bytes: UnsafeRawBufferPointer) {}
  func didReceiveEndStream() {}
  func didClose(errorCode: UInt32, connectionLost: Bool) {}
  func didDrainOutbound() {}
}

/// What a connection tells its owner (the server or client transport).
protocol H2ConnectionOwner: AnyObject {
  /// Server: a peer opened a stream; return its handler.
  func connection(_ connection: H2Connection, openStream id: Int32) -> H2Stream?
  func connectionDidClose(_ connection: H2Connection)
  func connectionDidReceiveGoAway(_ connection: H2Connection)
}

/// One HTTP/2 connection over a `ByteStream`: an nghttp2 session fed by the
/// stream's reads and flushed to its writes. Loop thread only.
final class H2Connection: ByteStreamDelegate, @unchecked Sendable {
  enum Role { case server, client }

  let role: Role
  let loop: EventLoop
  let transport: any ByteStream
  weak var owner: (any H2ConnectionOwner)?
  private var session: OpaquePointer?
  private(set) var streams: [Int32: H2Stream] = [:]
  private var outBuffer: [UInt8] = []
  private var flushScheduled = false
  private(set) var isClosed = false
  /// A GOAWAY was sent or received: no new streams on this connection.
  private(set) var goingAway = false
  private var closeWhenIdle = false
  /// Server shutdown: the client has seen the GOAWAY notice (its PING came back), or we
  /// stopped waiting. Until then the connection stays open even when idle, because the
  /// client may be writing a new request that it does not yet know will be refused.
  private var noticeSettled = true
  private var noticeTimer: UVTimer?
  /// How long a server waits for the client to acknowledge the shutdown notice.
  static let noticeWait = Duration.seconds(1)

  static let initialWindow: Int32 = 1 << 20
  static let connectionWindow: Int32 = 16 << 20
  /// Stop generating frames while this much is queued in the socket.
  static let writeHighWater = 4 << 20

  init(role: Role, transport: any ByteStream, owner: any H2ConnectionOwner, maxConcurrentStreams: UInt32 = 1024) {
    self.role = role
    self.loop = transport.loop
    self.transport = transport
    self.owner = owner
    var callbacks: OpaquePointer?
    nghttp2_session_callbacks_new(&callbacks)
    defer { nghttp2_session_callbacks_del(callbacks) }
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, H2Connection.onBeginHeaders)
    nghttp2_session_callbacks_set_on_header_callback(callbacks, H2Connection.onHeader)
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, H2Connection.onFrameRecv)
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, H2Connection.onDataChunk)
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, H2Connection.onStreamClose)
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, H2Connection.onFrameSend)
    let me = Unmanaged.passUnretained(self).toOpaque()
    switch role {
    case .server: nghttp2_session_server_new(&session, callbacks, me)
    case .client: nghttp2_session_client_new(&session, callbacks, me)
    }
    var settings = [
      nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: maxConcurrentStreams),
      nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(H2Connection.initialWindow)),
      nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: 64 * 1024),
    ]
    nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
    nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, H2Connection.connectionWindow)
    transport.delegate = self
    transport.startReading()
    flush()
  }

  // MARK: Streams

  /// Client: opens a request stream. Returns false when the connection cannot take it.
  func submitRequest(_ stream: H2Stream, headers: HeaderList) -> Bool {
    guard !isClosed, !goingAway else { return false }
    var provider = H2Connection.dataProvider()
    let id = withNameValues(headers) { nva, count in
      nghttp2_submit_request(session, nil, nva, count, &provider, nil)
    }
    guard id > 0 else { return false }
    stream.id = id
    streams[id] = stream
    scheduleFlush()
    return true
  }

  /// Server: response headers; DATA (and trailers) follow through the stream.
  func submitResponse(_ stream: H2Stream, headers: HeaderList, endStream: Bool) {
    guard !stream.isClosed, !isClosed else { return }
    if endStream {
      _ = withNameValues(headers) { nva, count in nghttp2_submit_response(session, stream.id, nva, count, nil) }
    } else {
      var provider = H2Connection.dataProvider()
      _ = withNameValues(headers) { nva, count in nghttp2_submit_response(session, stream.id, nva, count, &provider) }
    }
    scheduleFlush()
  }

  fileprivate func submitTrailers(_ stream: H2Stream, _ trailers: HeaderList) {
    _ = withNameValues(trailers) { nva, count in nghttp2_submit_trailer(session, stream.id, nva, count) }
  }

  func resumeData(_ stream: H2Stream) {
    guard !isClosed, !stream.isClosed, stream.id > 0 else { return }
    if stream.dataDeferred {
      stream.dataDeferred = false
      nghttp2_session_resume_data(session, stream.id)
    }
    scheduleFlush()
  }

  func resetStream(_ stream: H2Stream, errorCode: UInt32 = NGHTTP2_CANCEL.rawValue) {
    guard !isClosed, !stream.isClosed, stream.id > 0 else { return }
    nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.id, errorCode)
    scheduleFlush()
  }

  // MARK: Lifecycle

  /// Server: a GOAWAY notice and a PING; once the PING comes back (or after
  /// `noticeWait`) the client knows to open no new stream here, so the final GOAWAY
  /// follows, the streams in flight finish, and the connection closes. Closing right
  /// after the notice could cut off a request the client was writing meanwhile (a
  /// rolling update would fail it with UNAVAILABLE instead of retrying elsewhere).
  func beginGracefulShutdown() {
    guard !isClosed, !goingAway else { return }
    goingAway = true
    closeWhenIdle = true
    if role == .server {
      nghttp2_submit_shutdown_notice(session)
      nghttp2_submit_ping(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil)
      noticeSettled = false
      let timer = UVTimer(on: loop)
      noticeTimer = timer
      timer.start(timeoutMs: Self.noticeWait.timerMilliseconds) { [weak self] in self?.settleNotice() }
    }
    closeIfIdle()
    scheduleFlush()
  }

  private func settleNotice() {
    guard !noticeSettled else { return }
    noticeSettled = true
    noticeTimer?.close()
    noticeTimer = nil
    closeIfIdle()
  }

  private func closeIfIdle() {
    guard closeWhenIdle, noticeSettled, streams.isEmpty, !isClosed else { return }
    if role == .server {
      nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session), NGHTTP2_NO_ERROR.rawValue, nil, 0)
    }
    flush()
    shutdown(flushFirst: true)
  }

  /// Closes the connection now; every open stream learns it was lost.
  func close() {
    shutdown(flushFirst: false)
  }

  private func shutdown(flushFirst: Bool) {
    guard !isClosed else { return }
    isClosed = true
    noticeTimer?.close()
    noticeTimer = nil
    goingAway = true
    let open = streams.values
    streams.removeAll()
    for stream in open where !stream.isClosed {
      stream.isClosed = true
      stream.didClose(errorCode: NGHTTP2_CANCEL.rawValue, connectionLost: true)
    }
    if flushFirst { transport.closeAfterFlush() } else { transport.close() }
    nghttp2_session_del(session)
    session = nil
    owner?.connectionDidClose(self)
  }

  // MARK: Bytes in and out

  func byteStream(_ stream: any ByteStream, didRead bytes: UnsafeRawBufferPointer) {
    guard !isClosed else { return }
    let rv = nghttp2_session_mem_recv(session, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count)
    if rv < 0 {
      // Protocol error: nghttp2 has queued a GOAWAY; send it and drop the connection.
      flush()
      shutdown(flushFirst: true)
      return
    }
    flush()
  }

  func byteStreamDidDrain(_ stream: any ByteStream) {
    flush()
  }

  func byteStreamDidClose(_ stream: any ByteStream, error: UVError?) {
    close()
  }

  func scheduleFlush() {
    guard !flushScheduled, !isClosed else { return }
    flushScheduled = true
    // Everything the streams produce this turn leaves in one write.
    loop.whenIdle { [self] in flush() }
  }

  /// Moves every frame nghttp2 has ready into one socket write.
  func flush() {
    flushScheduled = false
    guard !isClosed, let session else { return }
    while transport.pendingWriteBytes + outBuffer.count < H2Connection.writeHighWater {
      var chunk: UnsafePointer<UInt8>?
      let n = nghttp2_session_mem_send(session, &chunk)
      if n < 0 {
        shutdown(flushFirst: false)
        return
      }
      if n == 0 { break }
      outBuffer.append(contentsOf: UnsafeBufferPointer(start: chunk, count: n))
    }
    if !outBuffer.isEmpty {
      outBuffer.withUnsafeBytes { transport.write($0) }
      outBuffer.removeAll(keepingCapacity: outBuffer.capacity <= 256 * 1024)
    }
    if nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0 {
      shutdown(flushFirst: true)
    }
  }

  // MARK: nghttp2 callbacks (capture-free; the connection comes through user data)

  private static func from(_ userData: UnsafeMutableRawPointer?) -> H2Connection {
    Unmanaged<H2Connection>.fromOpaque(userData!).takeUnretainedValue()
  }

  private static func dataProvider() -> nghttp2_data_provider {
    var provider = nghttp2_data_provider()
    provider.read_callback = { _, streamID, buffer, length, flags, _, userData in
      let me = H2Connection.from(userData)
      guard let stream = me.streams[streamID] else {
        return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
      }
      return stream.readOutbound(into: buffer!, length: length, flags: flags!)
    }
    return provider
  }

  private static let onBeginHeaders: nghttp2_on_begin_headers_callback = { _, frame, userData in
    let me = H2Connection.from(userData)
    let frame = frame!.pointee
    guard me.role == .server, frame.hd.type == UInt8(NGHTTP2_HEADERS.rawValue),
      frame.headers.cat == NGHTTP2_HCAT_REQUEST
    else { return 0 }
    let id = frame.hd.stream_id
    if me.goingAway {
      nghttp2_submit_rst_stream(me.session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, NGHTTP2_REFUSED_STREAM.rawValue)
      return 0
    }
    guard let stream = me.owner?.connection(me, openStream: id) else {
      nghttp2_submit_rst_stream(me.session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, NGHTTP2_REFUSED_STREAM.rawValue)
      return 0
    }
    stream.id = id
    me.streams[id] = stream
    return 0
  }

  private static let onHeader: nghttp2_on_header_callback = { _, frame, name, nameLength, value, valueLength, _, userData in
    let me = H2Connection.from(userData)
    guard let stream = me.streams[frame!.pointee.hd.stream_id] else { return 0 }
    let n = String(decoding: UnsafeBufferPointer(start: name, count: nameLength), as: UTF8.self)
    let v = String(decoding: UnsafeBufferPointer(start: value, count: valueLength), as: UTF8.self)
    stream.receivingHeaders.append((n, v))
    return 0
  }

  private static let onFrameRecv: nghttp2_on_frame_recv_callback = { _, frame, userData in
    let me = H2Connection.from(userData)
    let hd = frame!.pointee.hd
    let endStream = hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
    switch hd.type {
    case UInt8(NGHTTP2_HEADERS.rawValue):
      guard let stream = me.streams[hd.stream_id] else { return 0 }
      let headers = stream.receivingHeaders
      stream.receivingHeaders = []
      stream.didReceiveHeaders(headers, endStream: endStream)
    case UInt8(NGHTTP2_DATA.rawValue):
      if endStream, let stream = me.streams[hd.stream_id] { stream.didReceiveEndStream() }
    case UInt8(NGHTTP2_GOAWAY.rawValue):
      me.goingAway = true
      me.closeWhenIdle = true
      me.owner?.connectionDidReceiveGoAway(me)
    case UInt8(NGHTTP2_PING.rawValue) where hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) != 0:
      // The client has read everything sent before the PING, the GOAWAY notice included.
      if !me.noticeSettled { me.loop.execute { me.settleNotice() } }
    default:
      break
    }
    return 0
  }

  private static let onFrameSend: nghttp2_on_frame_send_callback = { session, frame, userData in
    let me = H2Connection.from(userData)
    let hd = frame!.pointee.hd
    guard hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0, let stream = me.streams[hd.stream_id],
      stream.resetAfterEndStream
    else { return 0 }
    // Sent after the status, so the peer reads the status first and then stops sending.
    nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), hd.stream_id, NGHTTP2_NO_ERROR.rawValue)
    return 0
  }

  private static let onDataChunk: nghttp2_on_data_chunk_recv_callback = { _, _, streamID, data, length, userData in
    let me = H2Connection.from(userData)
    guard let stream = me.streams[streamID] else { return 0 }
    stream.didReceiveData(UnsafeRawBufferPointer(start: data, count: length))
    return 0
  }

  private static let onStreamClose: nghttp2_on_stream_close_callback = { _, streamID, errorCode, userData in
    let me = H2Connection.from(userData)
    guard let stream = me.streams.removeValue(forKey: streamID) else { return 0 }
    if !stream.isClosed {
      stream.isClosed = true
      stream.didClose(errorCode: errorCode, connectionLost: false)
    }
    if me.closeWhenIdle && me.streams.isEmpty {
      me.loop.execute { me.closeIfIdle() }
    }
    return 0
  }
}

/// Lays out `headers` as nghttp2 name/value pairs for the duration of `body`
/// (nghttp2 copies them during `submit_*`).
func withNameValues<T>(_ headers: HeaderList, _ body: (UnsafePointer<nghttp2_nv>, Int) -> T) -> T {
  var storage = [UInt8]()
  var spans: [(Int, Int, Int, Int)] = []
  spans.reserveCapacity(headers.count)
  for (name, value) in headers {
    let n0 = storage.count
    storage.append(contentsOf: name.utf8)
    let v0 = storage.count
    storage.append(contentsOf: value.utf8)
    spans.append((n0, v0 - n0, v0, storage.count - v0))
  }
  if storage.isEmpty { storage.append(0) }
  return storage.withUnsafeMutableBufferPointer { buf in
    let base = buf.baseAddress!
    var nva = spans.map { span in
      nghttp2_nv(name: base + span.0, value: base + span.2, namelen: span.1, valuelen: span.3, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
    }
    return nva.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
  }
}
