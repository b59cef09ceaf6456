import CCurl
import UVRuntime

/// One request in flight: its easy handle, its options, and the response head as
/// it arrives. Subclasses decide where the body goes. Loop thread only, except the
/// continuation a subclass is given before the transfer is queued.
class Transfer: @unchecked Sendable {
  unowned let client: HTTPClient
  let request: HTTPRequest
  /// True for a stream: no total timeout, `maxResponseBytes` bounds a line, not the body.
  let isStream: Bool
  var easy: UnsafeMutableRawPointer?
  var finished = false
  var cancelledBeforeStart: (any Error)?
  /// Why a callback aborted the transfer (libcurl only says "write error").
  var failure: HTTPClientError?

  private var headerList: UnsafeMutablePointer<curl_slist>?
  private let errorBuffer: UnsafeMutablePointer<CChar>

  // The response head, as header lines arrive.
  private var status = 0
  private var version = HTTPVersion.unknown
  private var headers = HTTPHeaders()
  private(set) var head: HTTPResponseHead?

  // Idle timeout: the timer checks `lastActivityMs` instead of being restarted on every read.
  private var idleTimer: UVTimer?
  private var lastActivityMs: UInt64 = 0
  /// While set (a stream whose reader lags), waiting is not idleness.
  var idlePaused = false
  /// Whether the transfer is paused because its reader lags (only a stream's can be).
  var isReceivePaused: Bool { false }

  init(client: HTTPClient, request: HTTPRequest, isStream: Bool) {
    self.client = client
    self.request = request
    self.isStream = isStream
    errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE))
    errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
  }

  deinit {
    errorBuffer.deallocate()
    if let headerList { ccurl_slist_free_all(headerList) }
  }

  // MARK: For subclasses

  func didReceiveHead(_ head: HTTPResponseHead) {}
  /// Returns the bytes taken: all of them, 0 to abort (with `failure` set), or `ccurl_writefunc_pause()`.
  func didReceive(_ bytes: UnsafeRawBufferPointer) -> Int { bytes.count }
  func didFinish(_ result: Result<CompletionInfo, any Error>) {}

  // MARK: Setup

  /// Sets the easy handle's options from the request.
  func configure() throws(HTTPClientError) {
    guard let easy else { return }
    let me = Unmanaged.passUnretained(self).toOpaque()
    func check(_ rc: CURLcode, _ what: String) throws(HTTPClientError) {
      if rc != CURLE_OK {
        throw HTTPClientError(
          .invalidRequest, curlCode: Int32(bitPattern: rc.rawValue), "\(what): \(String(cString: ccurl_easy_strerror(rc)))")
      }
    }
    guard request.url.hasPrefix("https://") || request.url.hasPrefix("http://") else {
      throw HTTPClientError(.invalidRequest, "only http:// and https:// URLs are supported (\(request.redactedURL))")
    }
    try check(ccurl_easy_setopt_str(easy, CURLOPT_URL, request.url), "URL \(request.redactedURL)")
    try check(ccurl_easy_setopt_str(easy, CURLOPT_PROTOCOLS_STR, "http,https"), "protocols")
    _ = ccurl_easy_setopt_ptr(easy, CURLOPT_ERRORBUFFER, errorBuffer)
    _ = ccurl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
    _ = ccurl_easy_setopt_long(easy, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1)
    // Long-lived watches: notice a peer that vanished without a FIN.
    _ = ccurl_easy_setopt_long(easy, CURLOPT_TCP_KEEPALIVE, 1)
    _ = ccurl_easy_setopt_long(easy, CURLOPT_TCP_KEEPIDLE, 30)
    _ = ccurl_easy_setopt_long(easy, CURLOPT_TCP_KEEPINTVL, 15)
    _ = ccurl_easy_set_write_function(easy, { data, size, count, userp in
      let transfer = Unmanaged<Transfer>.fromOpaque(userp!).takeUnretainedValue()
      transfer.touch()
      return transfer.didReceive(UnsafeRawBufferPointer(start: data, count: size * count))
    }, me)
    _ = ccurl_easy_set_header_function(easy, { data, size, count, userp in
      let transfer = Unmanaged<Transfer>.fromOpaque(userp!).takeUnretainedValue()
      transfer.touch()
      transfer.headerLine(UnsafeRawBufferPointer(start: data, count: size * count))
      return size * count
    }, me)

    switch request.version {
    case .http1_1:
      _ = ccurl_easy_setopt_long(easy, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1))
    case .http2:
      _ = ccurl_easy_setopt_long(easy, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS))
      // Wait for a connection being set up to the same server rather than open another:
      // concurrent requests then share one HTTP/2 connection.
      _ = ccurl_easy_setopt_long(easy, CURLOPT_PIPEWAIT, 1)
    }

    if let connect = request.timeouts.connect {
      _ = ccurl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, max(1, Int(connect.timerMilliseconds)))
    }
    if !isStream, let total = request.timeouts.total {
      _ = ccurl_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, max(1, Int(total.timerMilliseconds)))
    }
    if request.acceptCompressedResponse {
      // "": every encoding this libcurl decodes; the body arrives decoded.
      _ = ccurl_easy_setopt_str(easy, CURLOPT_ACCEPT_ENCODING, "")
    } else if !isStream {
      // Refused up front when Content-Length says too much (it counts encoded bytes, hence not above).
      _ = ccurl_easy_setopt_off_t(easy, CURLOPT_MAXFILESIZE_LARGE, Int64(request.maxResponseBytes))
    }

    try configureTLS(easy, check)
    try configureMethodAndBody(easy, check)
    try configureHeaders(easy)
  }

  private func configureTLS(
    _ easy: UnsafeMutableRawPointer, _ check: (CURLcode, String) throws(HTTPClientError) -> Void
  ) throws(HTTPClientError) {
    let tls = request.tls
    switch tls.trust {
    case .system:
      break
    case .caFile(let path):
      try check(ccurl_easy_setopt_str(easy, CURLOPT_CAINFO, path), "CA file")
      _ = ccurl_easy_setopt_str(easy, CURLOPT_CAPATH, nil)
    case .caPEM(let pem):
      // Only these authorities: no system file or directory besides them.
      _ = ccurl_easy_setopt_str(easy, CURLOPT_CAINFO, nil)
      _ = ccurl_easy_setopt_str(easy, CURLOPT_CAPATH, nil)
      try check(pem.withUnsafeBytes { ccurl_easy_setopt_blob(easy, CURLOPT_CAINFO_BLOB, $0.baseAddress, $0.count) }, "CA bundle")
    }
    switch (tls.clientCertificatePEM, tls.clientKeyPEM) {
    case (nil, nil):
      break
    case (let cert?, let key?):
      _ = ccurl_easy_setopt_str(easy, CURLOPT_SSLCERTTYPE, "PEM")
      try check(cert.withUnsafeBytes { ccurl_easy_setopt_blob(easy, CURLOPT_SSLCERT_BLOB, $0.baseAddress, $0.count) }, "client certificate")
      _ = ccurl_easy_setopt_str(easy, CURLOPT_SSLKEYTYPE, "PEM")
      try check(key.withUnsafeBytes { ccurl_easy_setopt_blob(easy, CURLOPT_SSLKEY_BLOB, $0.baseAddress, $0.count) }, "client key")
    default:
      throw HTTPClientError(.invalidRequest, "a client certificate needs its key, and a key its certificate")
    }
    if tls.insecureSkipVerify {
      _ = ccurl_easy_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, 0)
      _ = ccurl_easy_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, 0)
    }
  }

  private func configureMethodAndBody(
    _ easy: UnsafeMutableRawPointer, _ check: (CURLcode, String) throws(HTTPClientError) -> Void
  ) throws(HTTPClientError) {
    let method = request.method
    guard !method.rawValue.isEmpty, method.rawValue.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) else {
      throw HTTPClientError(.invalidRequest, "bad method \(method.rawValue.debugDescription)")
    }
    switch method {
    case .get where request.body == nil:
      break
    case .head:
      _ = ccurl_easy_setopt_long(easy, CURLOPT_NOBODY, 1)
    case .post:
      break
    default:
      _ = ccurl_easy_setopt_str(easy, CURLOPT_CUSTOMREQUEST, method.rawValue)
    }
    if let body = request.body {
      _ = ccurl_easy_setopt_off_t(easy, CURLOPT_POSTFIELDSIZE_LARGE, Int64(body.count))
      if body.isEmpty {
        try check(ccurl_easy_setopt_str(easy, CURLOPT_COPYPOSTFIELDS, ""), "body")
      } else {
        try check(body.withUnsafeBytes { ccurl_easy_setopt_ptr(easy, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: $0.baseAddress)) }, "body")
      }
    } else if method == .post {
      _ = ccurl_easy_setopt_off_t(easy, CURLOPT_POSTFIELDSIZE_LARGE, 0)
      try check(ccurl_easy_setopt_str(easy, CURLOPT_COPYPOSTFIELDS, ""), "body")
    }
  }

  private func configureHeaders(_ easy: UnsafeMutableRawPointer) throws(HTTPClientError) {
    var list: UnsafeMutablePointer<curl_slist>?
    func append(_ line: String) {
      list = ccurl_slist_append(list, line)
    }
    for field in request.headers {
      let badName = field.name.isEmpty || field.name.utf8.contains { $0 <= 32 || $0 >= 127 || $0 == UInt8(ascii: ":") }
      let badValue = field.value.utf8.contains { $0 == 0 || $0 == 10 || $0 == 13 }
      if badName || badValue {
        if let list { ccurl_slist_free_all(list) }
        // Never the value: it may be a credential.
        throw HTTPClientError(
          .invalidRequest,
          badName
            ? "a header name is empty or holds a space, a colon or a control character"
            : "the value of header \(field.name) holds a line break or NUL")
      }
      // "Name;" is libcurl's way to send a header with an empty value.
      append(field.value.isEmpty ? "\(field.name);" : "\(field.name): \(field.value)")
    }
    if request.body != nil && request.headers["Expect"] == nil {
      append("Expect:")  // no "100-continue" round trip before a body
    }
    headerList = list
    if let list { _ = ccurl_easy_setopt_ptr(easy, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(list)) }
  }

  /// Once the easy handle is gone: the header list, the idle timer.
  func releaseResources() {
    if let headerList {
      ccurl_slist_free_all(headerList)
      self.headerList = nil
    }
    idleTimer?.close()
    idleTimer = nil
  }

  // MARK: Response head

  private func headerLine(_ raw: UnsafeRawBufferPointer) {
    var bytes = raw[...]
    while let last = bytes.last, last == 10 || last == 13 { bytes = bytes.dropLast() }
    if bytes.starts(with: "HTTP/".utf8) {
      // A new response: an interim 1xx one before, or the final one.
      let fields = bytes.split(separator: 32, maxSplits: 2)
      status = fields.count > 1 ? Int(String(decoding: fields[1], as: UTF8.self)) ?? 0 : 0
      switch fields.first.map({ String(decoding: $0, as: UTF8.self) }) ?? "" {
      case "HTTP/1.0": version = .http1_0
      case "HTTP/1.1": version = .http1_1
      case "HTTP/2", "HTTP/2.0": version = .http2
      case "HTTP/3": version = .http3
      default: version = .unknown
      }
      headers = HTTPHeaders()
      return
    }
    if bytes.isEmpty {
      if status >= 200 && head == nil {
        let head = HTTPResponseHead(status: status, headers: headers, version: version)
        self.head = head
        didReceiveHead(head)
      }
      return
    }
    guard head == nil, let colon = bytes.firstIndex(of: UInt8(ascii: ":")) else { return }  // trailers: ignored
    let name = String(decoding: bytes[..<colon], as: UTF8.self)
    var value = bytes[(colon + 1)...]
    while let first = value.first, first == 32 || first == 9 { value = value.dropFirst() }
    while let last = value.last, last == 32 || last == 9 { value = value.dropLast() }
    headers.add(name, String(decoding: value, as: UTF8.self))
  }

  /// The head for a response libcurl finished without giving one (no header lines).
  func headOrSynthesized(_ info: CompletionInfo) -> HTTPResponseHead {
    head ?? HTTPResponseHead(status: info.status, headers: headers, version: info.version)
  }

  // MARK: Errors

  /// A libcurl failure as our error: its name, libcurl's detailed message, and
  /// which request (method and URL without user information or query).
  func error(curlCode code: CURLcode) -> HTTPClientError {
    let raw = Int32(bitPattern: code.rawValue)
    let detail = errorBuffer.pointee != 0 ? String(cString: errorBuffer) : String(cString: ccurl_easy_strerror(code))
    return HTTPClientError(
      HTTPClientError.code(forCurl: raw), curlCode: raw, "\(detail) (\(request.method) \(request.redactedURL))")
  }

  // MARK: Idle timeout

  func touch() {
    if idleTimer != nil { lastActivityMs = client.loop.nowMs }
  }

  /// Starts (or restarts, after a pause) the idle timeout, if the request has one.
  func armIdleTimer() {
    guard let idle = request.timeouts.idle, !finished else { return }
    let idleMs = max(1, idle.timerMilliseconds)
    if idleTimer == nil { idleTimer = UVTimer(on: client.loop) }
    lastActivityMs = client.loop.nowMs
    idleTimer!.start(timeoutMs: idleMs) { self.idleCheck(idleMs) }
  }

  private func idleCheck(_ idleMs: UInt64) {
    guard !finished, !idlePaused, let idleTimer else { return }
    let quiet = client.loop.nowMs &- lastActivityMs
    if quiet >= idleMs {
      client.cancel(
        self,
        HTTPClientError(.timedOut, "no data from the server for \(idleMs) ms (\(request.method) \(request.redactedURL))"))
    } else {
      idleTimer.start(timeoutMs: idleMs - quiet) { self.idleCheck(idleMs) }
    }
  }
}

/// `execute`: the whole body in memory, up to `maxResponseBytes`.
final class BufferedTransfer: Transfer, @unchecked Sendable {
  var continuation: CheckedContinuation<HTTPResponse, any Error>?
  private var body: [UInt8] = []

  init(client: HTTPClient, request: HTTPRequest) {
    super.init(client: client, request: request, isStream: false)
  }

  override func didReceiveHead(_ head: HTTPResponseHead) {
    if let length = head.headers["Content-Length"].flatMap({ Int($0) }), length > 0 {
      body.reserveCapacity(min(length, request.maxResponseBytes))
    }
  }

  override func didReceive(_ bytes: UnsafeRawBufferPointer) -> Int {
    if body.count + bytes.count > request.maxResponseBytes {
      failure = HTTPClientError(
        .bodyTooLarge, "response body over \(request.maxResponseBytes) bytes (\(request.method) \(request.redactedURL))")
      return 0
    }
    body.append(contentsOf: bytes)
    return bytes.count
  }

  override func didFinish(_ result: Result<CompletionInfo, any Error>) {
    guard let continuation else { return }
    self.continuation = nil
    continuation.resume(
      with: result.map { info in
        HTTPResponse(head: headOrSynthesized(info), body: body, newConnections: info.newConnections)
      }.mapError { error in
        // libcurl's own check of Content-Length against the limit.
        if let error = error as? HTTPClientError, error.code == .bodyTooLarge, error.curlCode != nil {
          return HTTPClientError(
            .bodyTooLarge, curlCode: error.curlCode,
            "response body over \(request.maxResponseBytes) bytes (\(request.method) \(request.redactedURL))")
        }
        return error
      })
    body = []
  }
}
