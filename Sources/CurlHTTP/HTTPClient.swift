import CCurl
public import UVRuntime

/// An HTTP/1.1 and HTTP/2 client on one `EventLoop`: libcurl's multi-socket API
/// driven by the loop's own polls and timer, so there is no second event loop,
/// no blocking call on the loop thread and no thread per request.
///
/// Threading contract: every libcurl call and every field below happens on the
/// loop thread. `execute`, `stream` and `shutdown` may be called from any task;
/// they hop to the loop through `EventLoop.execute` and resume their caller with
/// the result. libcurl asks, through its socket callback, which sockets to watch
/// (one `UVPoll` each) and, through its timer callback, when to call it back (one
/// `UVTimer`); both end in `curl_multi_socket_action`, after which finished
/// transfers are collected with `curl_multi_info_read`.
///
/// Requests to the same server share connections: kept-alive HTTP/1.1 ones, or one
/// HTTP/2 connection that carries concurrent requests as streams.
///
/// Call `shutdown()` before the loop shuts down (or use `withClient`): it fails the
/// requests still in flight with `.shutdown`, closes every connection and handle.
///
/// Redirects are not followed (a 3xx is a result). libcurl's usual environment
/// variables apply: `https_proxy`, `no_proxy` and the like.
///
/// The client never logs: not headers, not bodies, not URLs.
public final class HTTPClient: @unchecked Sendable {
  public struct Configuration: Sendable {
    /// Connections to one host at most (0: no limit). With HTTP/2 one is usually enough.
    public var maxConnectionsPerHost: Int
    /// Concurrent streams this client opens on one HTTP/2 connection at most.
    public var maxConcurrentStreams: Int

    public init(maxConnectionsPerHost: Int = 0, maxConcurrentStreams: Int = 100) {
      self.maxConnectionsPerHost = maxConnectionsPerHost
      self.maxConcurrentStreams = maxConcurrentStreams
    }
  }

  public let loop: EventLoop
  public let configuration: Configuration

  // Loop thread only.
  private var multi: UnsafeMutableRawPointer?
  private var timer: UVTimer?
  private var polls: [Int32: UVPoll] = [:]
  private var transfers: [UnsafeMutableRawPointer: Transfer] = [:]
  private var isShutdown = false

  public init(loop: EventLoop, configuration: Configuration = Configuration()) {
    self.loop = loop
    self.configuration = configuration
  }

  /// Runs `body` with a new client and shuts the client down after it, also when it throws.
  public static func withClient<T>(
    on loop: EventLoop, configuration: Configuration = Configuration(),
    isolation: isolated (any Actor)? = #isolation,
    _ body: (HTTPClient) async throws -> T
  ) async throws -> T {
    let client = HTTPClient(loop: loop, configuration: configuration)
    do {
      let result = try await body(client)
      await client.shutdown()
      return result
    } catch {
      await client.shutdown()
      throw error
    }
  }

  // MARK: Requests

  /// Sends `request` and returns the whole response. Bounded by the request's
  /// connect, total and idle timeouts and its `maxResponseBytes`. Task cancellation
  /// stops the transfer and throws `CancellationError`; other failures throw
  /// `HTTPClientError`. A response with any status, 4xx and 5xx included, is a result.
  public func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
    try Task.checkCancellation()
    let transfer = BufferedTransfer(client: self, request: request)
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (c: CheckedContinuation<HTTPResponse, any Error>) in
        transfer.continuation = c
        loop.executeOrRun { self.start(transfer) }
      }
    } onCancel: {
      loop.execute { self.cancel(transfer, CancellationError()) }
    }
  }

  /// Sends `request` and returns once the response head has arrived; the body
  /// follows as lines (a watch: a chunked response that may never end). Bounded by
  /// the connect and idle timeouts, not the total one. At most `maxBufferedBytes`
  /// of lines wait for the reader (plus one network read): beyond that the transfer
  /// pauses, and the server's sending stalls, until the reader catches up.
  /// Cancelling the task that awaits the head or a line, calling `cancel()`, or
  /// dropping the stream ends the transfer.
  public func stream(_ request: HTTPRequest, maxBufferedBytes: Int = 1 << 20) async throws -> HTTPLineStream {
    try Task.checkCancellation()
    let transfer = LineTransfer(client: self, request: request, maxBufferedBytes: maxBufferedBytes)
    let head = try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (c: CheckedContinuation<HTTPResponseHead, any Error>) in
        transfer.headWaiter = c
        loop.executeOrRun { self.start(transfer) }
      }
    } onCancel: {
      loop.execute { self.cancel(transfer, CancellationError()) }
    }
    return HTTPLineStream(head: head, transfer: transfer, client: self)
  }

  /// Fails what is in flight with `.shutdown`, closes every connection, socket poll
  /// and the timer. Later requests fail with `.shutdown`. Idempotent.
  public func shutdown() async {
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
      loop.executeOrRun {
        self.shutdownOnLoop()
        c.resume()
      }
    }
  }

  // MARK: Loop side

  /// The multi handle, created on first use (so that it is created on the loop thread).
  /// The first one in the process loads libcurl (`ccurl_load`), so a process that never
  /// sends a request never maps it; when libcurl cannot be loaded, every request fails
  /// with the reason.
  private func ensureMulti() throws(HTTPClientError) -> UnsafeMutableRawPointer {
    if let multi { return multi }
    guard ccurl_load() == 0 else { throw HTTPClientError(.transport, String(cString: ccurl_load_error())) }
    guard let m = ccurl_multi_init() else { throw HTTPClientError(.transport, "libcurl could not be initialized") }
    let me = Unmanaged.passUnretained(self).toOpaque()
    _ = ccurl_multi_set_socket_function(m, { _, socket, what, userp, _ in
      Unmanaged<HTTPClient>.fromOpaque(userp!).takeUnretainedValue().watch(socket: socket, what: what)
    }, me)
    _ = ccurl_multi_set_timer_function(m, { _, timeoutMs, userp in
      Unmanaged<HTTPClient>.fromOpaque(userp!).takeUnretainedValue().setTimer(timeoutMs)
      return 0
    }, me)
    _ = ccurl_multi_setopt_long(m, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX)
    _ = ccurl_multi_setopt_long(m, CURLMOPT_MAX_HOST_CONNECTIONS, configuration.maxConnectionsPerHost)
    _ = ccurl_multi_setopt_long(m, CURLMOPT_MAX_CONCURRENT_STREAMS, max(1, configuration.maxConcurrentStreams))
    multi = m
    timer = UVTimer(on: loop)
    return m
  }

  private func start(_ transfer: Transfer) {
    loop.preconditionInLoop()
    if let error = transfer.cancelledBeforeStart {
      return finish(transfer, .failure(error))
    }
    if isShutdown {
      return finish(transfer, .failure(HTTPClientError(.shutdown, "the HTTP client was shut down")))
    }
    let multi: UnsafeMutableRawPointer
    do {
      multi = try ensureMulti()
    } catch {
      return finish(transfer, .failure(error))
    }
    guard let easy = ccurl_easy_init() else {
      return finish(transfer, .failure(HTTPClientError(.transport, "libcurl could not be initialized")))
    }
    transfer.easy = easy
    do {
      try transfer.configure()
    } catch {
      return finish(transfer, .failure(error))
    }
    transfers[easy] = transfer
    let rc = ccurl_multi_add_handle(multi, easy)
    if rc != CURLM_OK {
      return finish(
        transfer, .failure(HTTPClientError(.transport, "curl_multi_add_handle: " + String(cString: ccurl_multi_strerror(rc)))))
    }
    transfer.armIdleTimer()
  }

  /// Stops `transfer` with `error` (cancellation, an idle timeout), whatever state it is in.
  func cancel(_ transfer: Transfer, _ error: any Error) {
    loop.preconditionInLoop()
    if transfer.finished { return }
    if transfer.easy == nil {
      // Not started yet: `start`, queued behind this, ends it.
      transfer.cancelledBeforeStart = error
      return
    }
    finish(transfer, .failure(error))
  }

  /// Takes `transfer` out of the multi handle and reports `outcome`. Never called from
  /// inside a libcurl callback (curl_multi_remove_handle is not allowed there).
  private func finish(_ transfer: Transfer, _ outcome: Result<Void, any Error>) {
    guard !transfer.finished else { return }
    transfer.finished = true
    var info = CompletionInfo()
    if let easy = transfer.easy {
      transfers[easy] = nil
      var value = 0
      if ccurl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &value) == CURLE_OK { info.status = value }
      if ccurl_easy_getinfo_long(easy, CURLINFO_NUM_CONNECTS, &value) == CURLE_OK { info.newConnections = value }
      if ccurl_easy_getinfo_long(easy, CURLINFO_HTTP_VERSION, &value) == CURLE_OK { info.version = HTTPVersion(curl: value) }
      if case .failure = outcome {
        // Stopped mid-exchange. An HTTP/1.1 connection is closed anyway. An HTTP/2
        // connection no other request uses is closed too; on one that others share,
        // libcurl resets the stream (flushed below).
        _ = ccurl_easy_setopt_long(easy, CURLOPT_FORBID_REUSE, 1)
      }
      if let multi { ccurl_multi_remove_handle(multi, easy) }
      ccurl_easy_cleanup(easy)
      transfer.easy = nil
      if case .failure = outcome, transfer.request.version == .http2, !isShutdown { flushHTTP2Output() }
    }
    transfer.releaseResources()
    transfer.didFinish(outcome.map { info })
  }

  /// Sends what libcurl holds back on the HTTP/2 connections still open: above all the
  /// RST_STREAM of a stream that `finish` just ended early. libcurl 7.88 submits that
  /// frame when the transfer is removed but keeps frames under 1 KiB in its
  /// connection's output buffer, which it writes only when one of the connection's
  /// transfers next sends, receives a frame, or is un-paused. Without this, a cancelled
  /// watch on a shared connection would stay open on the API server, which goes on
  /// sending its events, until the connection's next traffic. Un-pausing is the one
  /// way in from outside, so every running HTTP/2 transfer that its reader has not
  /// paused is paused and un-paused at once: nothing arrives in between, nothing else
  /// changes for libcurl. (A paused one writes the buffer when its reader resumes it.)
  private func flushHTTP2Output() {
    for other in transfers.values where other.request.version == .http2 && !other.isReceivePaused && !other.finished {
      guard let easy = other.easy else { continue }
      if ccurl_easy_pause(easy, ccurl_pause_recv()) == CURLE_OK {
        _ = ccurl_easy_pause(easy, ccurl_pause_cont())
      }
    }
  }

  /// libcurl's socket callback: watch `socket` for `what` (CURL_POLL_*), or stop watching it.
  private func watch(socket: Int32, what: Int32) -> Int32 {
    if what == CURL_POLL_REMOVE {
      polls.removeValue(forKey: socket)?.close()
      return 0
    }
    var events: UVPoll.Events = []
    if what & CURL_POLL_IN != 0 { events.insert(.readable) }
    if what & CURL_POLL_OUT != 0 { events.insert(.writable) }
    do {
      let poll: UVPoll
      if let existing = polls[socket] {
        poll = existing
      } else {
        poll = try UVPoll(on: loop, socket: socket)
        polls[socket] = poll
      }
      if events.isEmpty {
        poll.stop()
      } else {
        try poll.start(events) { status, ready in self.socketReady(socket, status: status, events: ready) }
      }
      return 0
    } catch {
      polls.removeValue(forKey: socket)?.close()
      return -1  // libcurl fails the transfers on this socket
    }
  }

  /// libcurl's timer callback: call `curl_multi_socket_action` with a timeout in
  /// `timeoutMs` (0: as soon as possible, from the loop, not from inside the callback), or never (-1).
  private func setTimer(_ timeoutMs: Int) {
    guard let timer, !timer.isClosed else { return }
    if timeoutMs < 0 {
      timer.stop()
    } else {
      timer.start(timeoutMs: UInt64(timeoutMs)) { self.timerFired() }
    }
  }

  private func socketReady(_ socket: Int32, status: Int32, events: UVPoll.Events) {
    guard let multi else { return }
    var flags: Int32 = 0
    if status < 0 {
      flags = CURL_CSELECT_ERR
    } else {
      if events.contains(.readable) { flags |= CURL_CSELECT_IN }
      if events.contains(.writable) { flags |= CURL_CSELECT_OUT }
    }
    var running: Int32 = 0
    _ = ccurl_multi_socket_action(multi, socket, flags, &running)
    collectFinished()
  }

  private func timerFired() {
    guard let multi else { return }
    var running: Int32 = 0
    _ = ccurl_multi_socket_action(multi, ccurl_socket_timeout(), 0, &running)
    collectFinished()
  }

  /// Also called after anything else that lets libcurl run (unpausing a stream).
  func collectFinished() {
    guard let multi else { return }
    var left: Int32 = 0
    while let message = ccurl_multi_info_read(multi, &left) {
      guard ccurl_msg_is_done(message) != 0, let easy = message.pointee.easy_handle else { continue }
      let code = ccurl_msg_result(message)
      guard let transfer = transfers[easy] else { continue }
      if code == CURLE_OK {
        finish(transfer, .success(()))
      } else {
        finish(transfer, .failure(transfer.failure ?? transfer.error(curlCode: code)))
      }
    }
  }

  private func shutdownOnLoop() {
    guard !isShutdown else { return }
    isShutdown = true
    for transfer in Array(transfers.values) {
      finish(transfer, .failure(HTTPClientError(.shutdown, "the HTTP client was shut down")))
    }
    if let multi {
      // Closes the cached connections; libcurl says which sockets to stop watching as it goes.
      ccurl_multi_cleanup(multi)
      self.multi = nil
    }
    for poll in polls.values { poll.close() }
    polls = [:]
    timer?.close()
    timer = nil
  }
}

/// What libcurl knows about a transfer once it is over.
struct CompletionInfo {
  var status = 0
  var newConnections = 0
  var version = HTTPVersion.unknown
}

extension HTTPVersion {
  init(curl value: Int) {
    switch value {
    case Int(CURL_HTTP_VERSION_1_0): self = .http1_0
    case Int(CURL_HTTP_VERSION_1_1): self = .http1_1
    case Int(CURL_HTTP_VERSION_2_0): self = .http2
    case Int(CURL_HTTP_VERSION_3): self = .http3
    default: self = .unknown
    }
  }
}
