import CurlHTTP
import Glibc
import Testing
import UVRuntime

@Suite(.serialized, .timeLimit(.minutes(1)))
struct HTTPClientTests {
  // MARK: Basics, TLS

  @Test func http1OverTLSWithACAFile() async throws {
    try await withServer { server, client in
      let response = try await client.execute(server.request("/hello", .tlsHTTP1))
      #expect(response.status == 200)
      #expect(response.body == Array("hello\n".utf8))
      #expect(response.version == .http1_1)
      #expect(response.headers["X-Proto"] == "h1")
      #expect(response.headers["content-type"] == "text/plain")
      #expect(response.newConnections == 1)
      // The next request reuses the kept-alive connection.
      let again = try await client.execute(server.request("/hello", .tlsHTTP1))
      #expect(again.status == 200)
      #expect(again.newConnections == 0)
    }
  }

  @Test func http2WhereTheServerOffersIt() async throws {
    try await withServer { server, client in
      let response = try await client.execute(server.request("/hello"))
      #expect(response.status == 200)
      #expect(response.version == .http2)
      #expect(response.headers["x-proto"] == "h2")
      #expect(response.body == Array("hello\n".utf8))

      var http1 = server.request("/hello")
      http1.version = .http1_1
      #expect(try await client.execute(http1).version == .http1_1)
    }
  }

  @Test func plainHTTP() async throws {
    try await withServer { server, shared in
      // A scoped client of its own, shut down when the body ends.
      let response = try await HTTPClient.withClient(on: shared.loop) { client in
        try await client.execute(server.request("/hello", .plain))
      }
      #expect(response.status == 200)
      #expect(response.version == .http1_1)
    }
  }

  @Test func callersOnTheLoopThread() async throws {
    try await withServer { server, client in
      // Tasks that prefer the loop (as the driver's do) start transfers without a queue trip.
      try await withTaskExecutorPreference(client.loop) {
        let response = try await client.execute(server.request("/hello"))
        #expect(response.status == 200)
        let stream = try await client.stream(server.request("/lines?n=50&chunk=9"))
        var count = 0
        for try await line in stream {
          #expect(client.loop.inLoop)
          #expect(String(decoding: line, as: UTF8.self) == expectedLines(50)[count])
          count += 1
        }
        #expect(count == 50)
      }
    }
  }

  @Test func caBundleFromPEMBytesAndHostName() async throws {
    try await withServer { server, client in
      var request = HTTPRequest(url: server.url("/hello", host: "localhost"))
      request.tls = TLSConfiguration(trust: .caPEM(server.file("ca.crt")))
      let response = try await client.execute(request)
      #expect(response.status == 200)
    }
  }

  @Test func untrustedServerFailsVerification() async throws {
    try await withServer { server, client in
      // The system bundle does not hold the test CA.
      let error = try await #require(throws: HTTPClientError.self) {
        try await client.execute(HTTPRequest(url: server.url("/hello")))
      }
      #expect(error.code == .tls)
      #expect(error.curlCodeName == "CURLE_PEER_FAILED_VERIFICATION")

      // A CA that did not sign the server's certificate: the client's own certificate is not a CA.
      var wrongCA = HTTPRequest(url: server.url("/hello"))
      wrongCA.tls = TLSConfiguration(trust: .caPEM(server.file("client.crt")))
      let wrong = try await #require(throws: HTTPClientError.self) { try await client.execute(wrongCA) }
      #expect(wrong.code == .tls)

      // For tests only: no verification at all.
      var insecure = HTTPRequest(url: server.url("/hello"))
      insecure.tls = TLSConfiguration(insecureSkipVerify: true)
      #expect(try await client.execute(insecure).status == 200)
    }
  }

  @Test func clientCertificateFromPEMBytes() async throws {
    try await withServer { server, client in
      var request = server.request("/whoami")
      #expect(try await client.execute(request).body == Array("anonymous".utf8))
      request.tls.clientCertificatePEM = server.file("client.crt")
      request.tls.clientKeyPEM = server.file("client.key")
      #expect(try await client.execute(request).body == Array("test-client".utf8))

      request.tls.clientKeyPEM = nil
      let error = try await #require(throws: HTTPClientError.self) { try await client.execute(request) }
      #expect(error.code == .invalidRequest)
    }
  }

  // MARK: Methods, headers, bodies

  @Test(arguments: [TestServer.Port.tls, .tlsHTTP1])
  func methodsHeadersAndBodies(port: TestServer.Port) async throws {
    try await withServer { server, client in
      for method in [HTTPMethod.post, .put, .patch, .delete] {
        var request = server.request("/echo", port, method: method)
        request.headers = ["Authorization": "Bearer t0ken", "Content-Type": "application/merge-patch+json", "X-Empty": ""]
        request.body = Array("{\"a\":\(method.rawValue.count)}".utf8)
        let response = try await client.execute(request)
        let echo = String(decoding: response.body, as: UTF8.self)
        #expect(response.status == 200)
        #expect(echo.contains("\"method\": \"\(method.rawValue)\""), "\(echo)")
        #expect(echo.contains("\"body\": \"{\\\"a\\\":\(method.rawValue.count)}\""), "\(echo)")
        #expect(echo.contains("\"authorization\": \"Bearer t0ken\""), "\(echo)")
        #expect(echo.contains("\"content-type\": \"application/merge-patch+json\""), "\(echo)")
        #expect(echo.contains("\"x-empty\": \"\""), "\(echo)")
        #expect(!echo.contains("100-continue"), "\(echo)")
      }
      // POST without a body, GET, HEAD.
      let post = try await client.execute(server.request("/echo", port, method: .post))
      #expect(String(decoding: post.body, as: UTF8.self).contains("\"body\": \"\""))
      #expect(try await client.execute(server.request("/echo", port)).status == 200)
      let head = try await client.execute(server.request("/echo", port, method: .head))
      #expect(head.status == 200)
      #expect(head.body.isEmpty)
    }
  }

  @Test(arguments: [TestServer.Port.tls, .tlsHTTP1])
  func compressedResponses(port: TestServer.Port) async throws {
    try await withServer { server, client in
      let plain = (0..<5000).map { i in
        let digits = String(i)
        return String(repeating: "0", count: 8 - digits.count) + digits + " compressible line\n"
      }.joined()
      var request = server.request("/gzip?n=5000", port)
      let identity = try await client.execute(request)
      #expect(identity.headers["content-encoding"] == nil)
      #expect(identity.body == Array(plain.utf8))

      request.acceptCompressedResponse = true
      let compressed = try await client.execute(request)
      #expect(compressed.headers["content-encoding"] == "gzip")
      #expect(compressed.body == Array(plain.utf8))

      // Streams decode too.
      var lines = 0
      for try await line in try await client.stream(request) {
        #expect(line.count == 26)
        lines += 1
      }
      #expect(lines == 5000)

      // The limit counts decoded bytes.
      request.maxResponseBytes = plain.utf8.count - 1
      let error = try await #require(throws: HTTPClientError.self) { try await client.execute(request) }
      #expect(error.code == .bodyTooLarge)
    }
  }

  @Test func statusCodesAreResults() async throws {
    try await withServer { server, client in
      for code in [201, 404, 409, 410, 500] {
        let response = try await client.execute(server.request("/status?code=\(code)"))
        #expect(response.status == code)
        #expect(response.body == Array("status \(code)\n".utf8))
      }
    }
  }

  @Test func headerInjectionIsRefused() async throws {
    try await withServer { server, client in
      var request = server.request("/hello")
      request.headers = ["Authorization": "Bearer secret\r\nX-Evil: 1"]
      let error = try await #require(throws: HTTPClientError.self) { try await client.execute(request) }
      #expect(error.code == .invalidRequest)
      #expect(!error.description.contains("secret"))
    }
  }

  @Test(arguments: [TestServer.Port.tls, .tlsHTTP1])
  func largeBodies(port: TestServer.Port) async throws {
    try await withServer { server, client in
      let size = 4 << 20
      let expected = pattern(size)
      for chunked in [0, 1] {
        let response = try await client.execute(server.request("/bytes?n=\(size)&chunked=\(chunked)", port))
        #expect(response.body.count == size)
        #expect(response.body == expected)
      }
    }
  }

  @Test(arguments: [TestServer.Port.tls, .tlsHTTP1])
  func bodyLimit(port: TestServer.Port) async throws {
    try await withServer { server, client in
      for chunked in [0, 1] {
        // With Content-Length libcurl refuses up front; chunked, the client stops mid-body.
        var request = server.request("/bytes?n=100000&chunked=\(chunked)", port)
        request.maxResponseBytes = 50_000
        let error = try await #require(throws: HTTPClientError.self) { try await client.execute(request) }
        #expect(error.code == .bodyTooLarge, "\(error)")
      }
      var exact = server.request("/bytes?n=50000", port)
      exact.maxResponseBytes = 50_000
      #expect(try await client.execute(exact).body.count == 50_000)
    }
  }

  // MARK: Errors, timeouts, cancellation

  @Test func connectionRefusedNamesTheCodeAndHidesCredentials() async throws {
    try await withServer { server, client in
      // A port nobody listens on: bind one, then close it.
      let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
      var addr = sockaddr_in()
      addr.sin_family = sa_family_t(AF_INET)
      addr.sin_addr.s_addr = inet_addr("127.0.0.1")
      var len = socklen_t(MemoryLayout<sockaddr_in>.size)
      _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
      }
      let port = UInt16(bigEndian: addr.sin_port)
      close(fd)
      let request = HTTPRequest(url: "https://user:hunter2@127.0.0.1:\(port)/api?token=hunter3", tls: server.tls)
      let error = try await #require(throws: HTTPClientError.self) { try await client.execute(request) }
      #expect(error.code == .connectFailed)
      #expect(error.curlCodeName == "CURLE_COULDNT_CONNECT")
      #expect(error.description.contains("https://127.0.0.1:\(port)/api"), "\(error)")
      #expect(!error.description.contains("hunter"), "\(error)")
    }
  }

  @Test func unsupportedSchemeIsRefused() async throws {
    try await withServer { _, client in
      let error = try await #require(throws: HTTPClientError.self) {
        try await client.execute(HTTPRequest(url: "file:///etc/passwd"))
      }
      #expect(error.code == .invalidRequest)
    }
  }

  @Test func totalTimeout() async throws {
    try await withServer { server, client in
      var request = server.request("/slow?ms=30000")
      request.timeouts.total = .milliseconds(200)
      let error = try await #require(throws: HTTPClientError.self) { try await client.execute(request) }
      #expect(error.code == .timedOut)
      #expect(error.curlCodeName == "CURLE_OPERATION_TIMEDOUT")
      // The client goes on working.
      #expect(try await client.execute(server.request("/hello")).status == 200)
    }
  }

  @Test func connectTimeoutCoversTheTLSHandshake() async throws {
    try await withServer { server, client in
      var request = server.request("/hello", .silent)
      request.timeouts = HTTPTimeouts(connect: .milliseconds(200), total: nil)
      let error = try await #require(throws: HTTPClientError.self) { try await client.execute(request) }
      #expect(error.code == .timedOut)
      #expect(error.curlCodeName == "CURLE_OPERATION_TIMEDOUT")
    }
  }

  @Test func idleTimeoutOnABufferedRequest() async throws {
    try await withServer { server, client in
      var request = server.request("/never")
      request.timeouts = HTTPTimeouts(total: nil, idle: .milliseconds(200))
      let error = try await #require(throws: HTTPClientError.self) { try await client.execute(request) }
      #expect(error.code == .timedOut)
      #expect(error.curlCode == nil)
    }
  }

  @Test(arguments: [TestServer.Port.tls, .tlsHTTP1])
  func cancellation(port: TestServer.Port) async throws {
    try await withServer { server, client in
      var request = server.request("/never", port)
      request.timeouts.total = nil
      let task = Task { try await client.execute(request) }
      // Cancel once the server has the request (`requests` does not count the /stats polls:
      // when it did, this wait ended at once and, over TLS, the cancellation often came
      // during the handshake, before the request was sent, so there was nothing to abort).
      try await eventually(client.loop, "the server to have the request") { try await stats(server, client).requests >= 1 }
      task.cancel()
      await #expect(throws: CancellationError.self) { try await task.value }
      // The server sees the client go away, as an API server sees a cancelled watch end
      // (a closed HTTP/1.1 connection, an HTTP/2 connection closed or the stream reset).
      try await eventually(client.loop, "the server to see the request aborted") { try await stats(server, client).aborted >= 1 }
      #expect(try await client.execute(server.request("/hello", port)).status == 200)

      // Cancelled before it starts.
      let early = Task {
        withUnsafeCurrentTask { $0?.cancel() }
        return try await client.execute(request)
      }
      await #expect(throws: CancellationError.self) { try await early.value }
    }
  }

  @Test func shutdownFailsWhatIsInFlight() async throws {
    let loop = EventLoop(name: "curl-shutdown")
    let server = try await TestServer.start(on: loop)
    let client = HTTPClient(loop: loop)
    var request = server.request("/never")
    request.timeouts.total = nil
    let task = Task { try await client.execute(request) }
    try await eventually(loop) { try await stats(server, client).requests >= 1 }
    await client.shutdown()
    let error = await #expect(throws: HTTPClientError.self) { try await task.value }
    #expect(error?.code == .shutdown)
    let after = await #expect(throws: HTTPClientError.self) { try await client.execute(server.request("/hello")) }
    #expect(after?.code == .shutdown)
    await client.shutdown()  // idempotent
    server.stop()
    await loop.shutdownAndWait()
    #expect(loop.leakedHandles == [])
    #expect(loop.closeResult == 0)
  }

  // MARK: HTTP/2 multiplexing

  @Test func concurrentRequestsShareOneHTTP2Connection() async throws {
    try await withServer { server, client in
      let count = 50
      let results = try await withThrowingTaskGroup(of: HTTPResponse.self) { group in
        for i in 0..<count {
          group.addTask {
            try await client.execute(server.request(i % 2 == 0 ? "/hello" : "/bytes?n=100000"))
          }
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      #expect(results.count == count)
      #expect(results.allSatisfy { $0.status == 200 && $0.version == .http2 })
      #expect(results.filter { $0.body.count == 100_000 }.count == count / 2)
      #expect(results.reduce(0) { $0 + $1.newConnections } == 1)
      let counted = try await stats(server, client)
      #expect(counted.h2 == 1)
      #expect(counted.requests == count)  // the /stats request is not counted
    }
  }

  // MARK: Streams

  @Test(arguments: [TestServer.Port.tls, .tlsHTTP1])
  func streamedLinesAcrossChunkBoundaries(port: TestServer.Port) async throws {
    try await withServer { server, client in
      for chunk in [1, 7, 4096] {
        var request = server.request("/lines?n=500&size=20&chunk=\(chunk)", port)
        request.timeouts.idle = .seconds(30)
        let stream = try await client.stream(request)
        #expect(stream.status == 200)
        #expect(stream.head.version == (port == .tls ? .http2 : .http1_1))
        var lines: [String] = []
        for try await line in stream { lines.append(String(decoding: line, as: UTF8.self)) }
        #expect(lines == expectedLines(500, size: 20))
      }
    }
  }

  @Test func lastLineWithoutNewlineAndCRLF() async throws {
    try await withServer { server, client in
      // /whoami has no trailing newline; /echo is one JSON line.
      var lines: [[UInt8]] = []
      for try await line in try await client.stream(server.request("/whoami")) { lines.append(line) }
      #expect(lines == [Array("anonymous".utf8)])
    }
  }

  @Test(arguments: [TestServer.Port.tls, .tlsHTTP1])
  func neverEndingStreamEndsWhenTheReaderStops(port: TestServer.Port) async throws {
    try await withServer { server, client in
      var lines: [String] = []
      do {
        let stream = try await client.stream(server.request("/lines?n=20&chunk=13&keep=1", port))
        for try await line in stream {
          lines.append(String(decoding: line, as: UTF8.self))
          if lines.count == 20 { break }
        }
      }  // the stream is dropped here: the transfer ends
      #expect(lines == expectedLines(20))
      try await eventually(client.loop, "the server to see the request aborted") { try await stats(server, client).aborted >= 1 }
    }
  }

  @Test(arguments: [TestServer.Port.tls, .tlsHTTP1])
  func streamCancelledByTheReadersTask(port: TestServer.Port) async throws {
    try await withServer { server, client in
      let stream = try await client.stream(server.request("/drip", port))
      let reader = Task {
        var lines: [[UInt8]] = []
        for try await line in stream { lines.append(line) }
        return lines
      }
      try await eventually(client.loop) { try await stats(server, client).requests >= 1 }
      reader.cancel()
      await #expect(throws: CancellationError.self) { try await reader.value }
      try await eventually(client.loop, "the server to see the request aborted") { try await stats(server, client).aborted >= 1 }
      // After the end, the sequence stays ended. When a line arrived between the
      // reader's cancellation and the stream's (which goes through the loop), the
      // reader got that line and then stopped at its own cancellation check, so the
      // stream's CancellationError was never delivered: the next call reports it, as
      // after any error, and the end after it.
      var iterator = stream.makeAsyncIterator()
      do {
        #expect(try await iterator.next() == nil)
      } catch is CancellationError {
        #expect(try await iterator.next() == nil)
      }
    }
  }

  @Test func cancelledStreamOnASharedHTTP2Connection() async throws {
    try await withServer { server, client in
      let kept = try await client.stream(server.request("/lines?n=3&keep=1"))
      var keptLines = kept.makeAsyncIterator()
      #expect(try await keptLines.next() == Array("00000000 ".utf8))
      let dropped = try await client.stream(server.request("/drip"))
      dropped.cancel()
      // The stream reset reaches the server with no other traffic on the connection (the
      // /stats polls have their own): libcurl 7.88 alone would hold it back until the
      // connection's next traffic, and an API server would keep a cancelled watch open.
      try await eventually(client.loop, "the server to see the stream reset") { try await stats(server, client).aborted >= 1 }
      // The connection stays open for the other stream.
      let response = try await client.execute(server.request("/hello"))
      #expect(response.newConnections == 0)
      #expect(try await keptLines.next() == Array("00000001 ".utf8))
      #expect(try await stats(server, client).h2 == 1)
      kept.cancel()
    }
  }

  @Test func idleTimeoutEndsAStream() async throws {
    try await withServer { server, client in
      var request = server.request("/drip")
      request.timeouts.idle = .milliseconds(300)
      let stream = try await client.stream(request)
      var lines: [[UInt8]] = []
      let error = await #expect(throws: HTTPClientError.self) {
        for try await line in stream { lines.append(line) }
      }
      #expect(error?.code == .timedOut)
      #expect(lines == [Array("first".utf8)])
    }
  }

  @Test func streamHeadErrors() async throws {
    try await withServer { server, client in
      var request = server.request("/never")
      request.timeouts.idle = .milliseconds(200)
      let error = try await #require(throws: HTTPClientError.self) { try await client.stream(request) }
      #expect(error.code == .timedOut)

      let untrusted = try await #require(throws: HTTPClientError.self) {
        try await client.stream(HTTPRequest(url: server.url("/lines")))
      }
      #expect(untrusted.code == .tls)

      // An error status still streams its body.
      let status = try await client.stream(server.request("/status?code=410"))
      #expect(status.status == 410)
      var lines: [[UInt8]] = []
      for try await line in status { lines.append(line) }
      #expect(lines == [Array("status 410".utf8)])
    }
  }

  @Test func lineLimit() async throws {
    try await withServer { server, client in
      var request = server.request("/lines?n=3&size=2000&chunk=100")
      request.maxResponseBytes = 1000
      let stream = try await client.stream(request)
      let error = await #expect(throws: HTTPClientError.self) {
        for try await _ in stream {}
      }
      #expect(error?.code == .bodyTooLarge)
    }
  }

  @Test(arguments: [TestServer.Port.tls, .tlsHTTP1])
  func slowReaderPausesTheTransfer(port: TestServer.Port) async throws {
    try await withServer { server, client in
      let limit = 64 << 10
      let stream = try await client.stream(server.request("/endless?size=100", port), maxBufferedBytes: limit)
      // Read nothing until the buffer is full and the transfer has paused.
      try await eventually(client.loop) { try await stream.statistics().paused }
      let sentWhilePaused = try await stats(server, client).endlessLinesSent
      // Every line arrives once, in order, across the pauses.
      var next = 0
      var wrong = 0
      let padding = " " + String(repeating: "x", count: 100)
      for try await line in stream {
        if String(decoding: line, as: UTF8.self) != String(next) + padding { wrong += 1 }
        next += 1
        if next == sentWhilePaused + 5_000 { break }  // past what was sent before the first pause
      }
      #expect(wrong == 0)
      let statistics = try await stream.statistics()
      #expect(statistics.pauses >= 1)
      // Bounded: the limit plus at most one network read (libcurl reads up to 16 KiB, an HTTP/2 frame at most 16 KiB).
      #expect(statistics.peakBufferedBytes <= limit + (64 << 10))
      stream.cancel()
    }
  }
}
