import CCurl
import UVRuntime

/// A response body read line by line, as it arrives (a Kubernetes watch: one JSON
/// event per line, on a response that may never end). Each element is one line
/// without its `\n` (and without a `\r` before it); a last line without a newline
/// is delivered when the body ends. One reader at a time.
///
/// Dropping the stream, `cancel()`, or cancelling the task that waits for a line
/// ends the transfer. Errors: `HTTPClientError` (`.timedOut` when the idle timeout
/// passes, `.bodyTooLarge` for a line over the request's `maxResponseBytes`),
/// `CancellationError`.
public final class HTTPLineStream: AsyncSequence, Sendable {
  public typealias Element = [UInt8]

  public let head: HTTPResponseHead
  private let transfer: LineTransfer
  private let client: HTTPClient

  init(head: HTTPResponseHead, transfer: LineTransfer, client: HTTPClient) {
    self.head = head
    self.transfer = transfer
    self.client = client
  }

  deinit {
    cancel()
  }

  public var status: Int { head.status }
  public var headers: HTTPHeaders { head.headers }

  /// Ends the transfer; a reader waiting for a line gets `CancellationError`. Idempotent.
  public func cancel() {
    let (client, transfer) = (client, transfer)
    client.loop.execute { client.cancel(transfer, CancellationError()) }
  }

  /// How the flow control went so far (for tests and diagnostics).
  public struct Statistics: Sendable {
    /// Whether the transfer is paused now because the reader lags.
    public var paused: Bool
    /// How many times it paused.
    public var pauses: Int
    /// The most bytes of lines ever waiting for the reader.
    public var peakBufferedBytes: Int
  }

  public func statistics() async throws -> Statistics {
    let transfer = transfer
    return try await client.loop.submit { transfer.statistics }
  }

  public struct AsyncIterator: AsyncIteratorProtocol {
    let stream: HTTPLineStream
    private var batch: [[UInt8]] = []
    private var index = 0
    private var ended = false

    init(stream: HTTPLineStream) { self.stream = stream }

    public mutating func next() async throws -> [UInt8]? {
      if index == batch.count {
        if ended { return nil }
        batch = []
        index = 0
        batch = try await stream.nextBatch()
        if batch.isEmpty {
          ended = true
          return nil
        }
      }
      defer { index += 1 }
      return batch[index]
    }
  }

  public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(stream: self) }

  /// The lines that arrived since the last call, waiting for one if there are none;
  /// empty at the end of the body.
  private func nextBatch() async throws -> [[UInt8]] {
    try Task.checkCancellation()
    let (client, transfer) = (client, transfer)
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (c: CheckedContinuation<[[UInt8]], any Error>) in
        client.loop.executeOrRun { transfer.take(c) }
      }
    } onCancel: {
      client.loop.execute { client.cancel(transfer, CancellationError()) }
    }
  }
}

/// `stream`: the body split into lines, with bounded buffering. Loop thread only.
final class LineTransfer: Transfer, @unchecked Sendable {
  var headWaiter: CheckedContinuation<HTTPResponseHead, any Error>?
  private var waiter: CheckedContinuation<[[UInt8]], any Error>?
  private var lines: [[UInt8]] = []
  private var bufferedBytes = 0
  private var partial: [UInt8] = []
  private let maxBufferedBytes: Int
  private var paused = false
  private var pauses = 0
  private var peakBufferedBytes = 0
  /// How the body ended, once it has; nil while it goes on.
  private var end: Result<Void, any Error>?

  init(client: HTTPClient, request: HTTPRequest, maxBufferedBytes: Int) {
    self.maxBufferedBytes = max(1, maxBufferedBytes)
    super.init(client: client, request: request, isStream: true)
  }

  override var isReceivePaused: Bool { paused }

  var statistics: HTTPLineStream.Statistics {
    .init(paused: paused, pauses: pauses, peakBufferedBytes: peakBufferedBytes)
  }

  override func didReceiveHead(_ head: HTTPResponseHead) {
    headWaiter?.resume(returning: head)
    headWaiter = nil
  }

  override func didReceive(_ bytes: UnsafeRawBufferPointer) -> Int {
    if bufferedBytes >= maxBufferedBytes {
      // The reader lags: libcurl keeps these bytes and offers them again once `take` unpauses.
      paused = true
      idlePaused = true
      pauses += 1
      return ccurl_writefunc_pause()
    }
    var start = 0
    while let newline = bytes[start...].firstIndex(of: 10) {
      var line = partial
      partial = []
      line.append(contentsOf: bytes[start..<newline])
      start = newline + 1
      if line.last == 13 { line.removeLast() }
      if line.count > request.maxResponseBytes { return tooLong() }
      bufferedBytes += line.count + 1
      lines.append(line)
    }
    partial.append(contentsOf: bytes[start...])
    if partial.count > request.maxResponseBytes { return tooLong() }
    peakBufferedBytes = max(peakBufferedBytes, bufferedBytes)
    if let waiter, !lines.isEmpty {
      self.waiter = nil
      waiter.resume(returning: takeLines())
    }
    return bytes.count
  }

  private func tooLong() -> Int {
    failure = HTTPClientError(
      .bodyTooLarge, "a line over \(request.maxResponseBytes) bytes (\(request.method) \(request.redactedURL))")
    return 0
  }

  private func takeLines() -> [[UInt8]] {
    defer {
      lines = []
      bufferedBytes = 0
    }
    return lines
  }

  /// The reader asks for lines: hand over what is buffered, or wait. Not called from
  /// inside a libcurl callback, so it may unpause the transfer.
  func take(_ c: CheckedContinuation<[[UInt8]], any Error>) {
    if !lines.isEmpty {
      c.resume(returning: takeLines())
    } else if let end {
      // After an error, the next call reports the end.
      self.end = .success(())
      c.resume(with: end.map { [] })
      return
    } else {
      waiter = c
    }
    resumeIfPaused()
  }

  private func resumeIfPaused() {
    guard paused, let easy, !finished else { return }
    paused = false
    idlePaused = false
    armIdleTimer()
    // libcurl delivers what it kept right away (into `didReceive`, maybe completing
    // `waiter`) and asks for the socket again.
    _ = ccurl_easy_pause(easy, ccurl_pause_cont())
    client.collectFinished()
  }

  override func didFinish(_ result: Result<CompletionInfo, any Error>) {
    switch result {
    case .success(let info):
      if !partial.isEmpty {
        lines.append(partial)
        partial = []
      }
      if let headWaiter {
        self.headWaiter = nil
        headWaiter.resume(returning: headOrSynthesized(info))
      }
      end = .success(())
    case .failure(let error):
      if let headWaiter {
        self.headWaiter = nil
        headWaiter.resume(throwing: error)
      }
      end = .failure(error)
    }
    if let waiter {
      self.waiter = nil
      take(waiter)
    }
  }
}
