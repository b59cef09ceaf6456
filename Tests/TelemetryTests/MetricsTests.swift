import Testing
import Telemetry
import UVRuntime

@Suite struct TextFormatTests {
  @Test func countersRenderHelpTypeAndEscapedLabelValues() {
    let r = MetricsRegistry()
    let c = r.counter("node_publish_total", help: "Total number\\of calls\nsecond line", labels: ["os_type", "provider"])
    c.inc(LabelValues("linux", "azure"))
    c.inc(LabelValues("linux", "azure"), by: 2)
    c.inc(LabelValues("linux", "we\"ird\\name\nx"))
    let text = r.render()
    #expect(
      text == """
        # HELP node_publish_total Total number\\\\of calls\\nsecond line
        # TYPE node_publish_total counter
        node_publish_total{os_type="linux",provider="azure"} 3
        node_publish_total{os_type="linux",provider="we\\"ird\\\\name\\nx"} 1

        """)
  }

  @Test func unlabelledSeriesHaveNoBraces() {
    let r = MetricsRegistry()
    r.gauge("volumes", help: "v").set(1.5)
    r.gauge("other_gauge", help: "o").set(-2)
    #expect(r.render() == "# HELP volumes v\n# TYPE volumes gauge\nvolumes 1.5\n# HELP other_gauge o\n# TYPE other_gauge gauge\nother_gauge -2\n")
  }

  @Test func histogramBucketsAreCumulativeAndEndWithInf() {
    let r = MetricsRegistry()
    let h = r.histogram("call_seconds", help: "h", labels: ["provider"], buckets: [0.25, 1, 120])
    let s = h.series(LabelValues("p"))
    for v in [0.125, 0.25, 0.5, 0.75, 60, 500] { s.observe(v) }
    let lines = r.render().split(separator: "\n").map(String.init)
    #expect(
      lines == [
        "# HELP call_seconds h",
        "# TYPE call_seconds histogram",
        "call_seconds_bucket{provider=\"p\",le=\"0.25\"} 2",  // an observation on a bound counts in that bucket
        "call_seconds_bucket{provider=\"p\",le=\"1\"} 4",
        "call_seconds_bucket{provider=\"p\",le=\"120\"} 5",
        "call_seconds_bucket{provider=\"p\",le=\"+Inf\"} 6",
        "call_seconds_sum{provider=\"p\"} 561.625",
        "call_seconds_count{provider=\"p\"} 6",
      ])
  }

  @Test func unlabelledHistogramHasOnlyLe() {
    let r = MetricsRegistry()
    let h = r.histogram("age", help: "a", buckets: [1])
    h.observe(2)
    #expect(r.render().contains("age_bucket{le=\"1\"} 0\nage_bucket{le=\"+Inf\"} 1\nage_sum 2\nage_count 1\n"))
    h.reset()
    #expect(r.render().contains("age_bucket{le=\"+Inf\"} 0\nage_sum 0\nage_count 0\n"))
  }

  @Test func valuesUsePrometheusSpelling() {
    #expect(TextFormat.value(3) == "3")
    #expect(TextFormat.value(0.25) == "0.25")
    #expect(TextFormat.value(.infinity) == "+Inf")
    #expect(TextFormat.value(-.infinity) == "-Inf")
    #expect(TextFormat.value(.nan) == "NaN")
    #expect(TextFormat.value(1e20) == "1e+20")
  }

  @Test func seriesBeyondTheCapGoToOther() {
    let r = MetricsRegistry()
    let c = r.counter("capped_total", help: "c", labels: ["provider", "code"], maxSeries: 2)
    c.inc(LabelValues("a", "x"))
    c.inc(LabelValues("b", "x"))
    c.inc(LabelValues("c", "x"))
    c.inc(LabelValues("d", "y"))
    c.inc(LabelValues("a", "x"))
    #expect(c.value(LabelValues("a", "x")) == 2)
    #expect(c.value(LabelValues("other", "other")) == 2)
    #expect(c.value(LabelValues("c", "x")) == nil)
  }

  @Test func labelLimiterKeepsTheFirstValues() {
    let l = LabelLimiter(limit: 2)
    #expect(l.admit("a") == "a")
    #expect(l.admit("b") == "b")
    #expect(l.admit("c") == "other")
    #expect(l.admit("a") == "a")
  }

  @Test func preResolvedSeriesShowAtZeroAndCount() {
    let r = MetricsRegistry()
    let c = r.counter("unpublish_total", help: "u", labels: ["os_type"]).series(LabelValues("linux"))
    #expect(r.render().hasSuffix("unpublish_total{os_type=\"linux\"} 0\n"))
    c.inc()
    #expect(r.render().hasSuffix("unpublish_total{os_type=\"linux\"} 1\n"))
  }

  @Test func collectorsRunBeforeEachScrape() {
    let r = MetricsRegistry()
    let g = r.gauge("scraped", help: "s")
    let n = Box()
    r.beforeScrape { g.set(Double(n.next())) }
    #expect(r.render().hasSuffix("scraped 1\n"))
    #expect(r.render().hasSuffix("scraped 2\n"))
  }

  @Test func concurrentIncrementsAreAllCounted() async {
    let r = MetricsRegistry()
    let c = r.counter("hits_total", help: "h", labels: ["k"])
    await withTaskGroup(of: Void.self) { group in
      for t in 0..<8 {
        group.addTask {
          for i in 0..<1000 { c.inc(LabelValues(i % 2 == 0 ? "even" : "odd\(t % 2)")) }
        }
      }
    }
    #expect(c.value(LabelValues("even")) == 4000)
    #expect((c.value(LabelValues("odd0")) ?? 0) + (c.value(LabelValues("odd1")) ?? 0) == 4000)
  }
}

final class Box: @unchecked Sendable {
  private var n = 0
  func next() -> Int {
    n += 1
    return n
  }
}

@Suite struct RequestParserTests {
  func feed(_ text: String, max: Int = 8192, chunk: Int = 1) -> HTTPRequestParser.Event {
    var p = HTTPRequestParser(maxHeadBytes: max)
    let bytes = Array(text.utf8)
    var event = HTTPRequestParser.Event.needMore
    var i = 0
    while i < bytes.count {
      let end = min(bytes.count, i + chunk)
      event = bytes[i..<end].withUnsafeBytes { p.feed($0) }
      if event != .needMore { return event }
      i = end
    }
    return event
  }

  @Test func parsesAGetByteByByte() {
    guard case .head(let head) = feed("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept:  text/plain \r\n\r\n") else {
      Issue.record("no head")
      return
    }
    #expect(head.method == "GET")
    #expect(head.path == "/metrics")
    #expect(head.query == "x=1")
    #expect(head.header("ACCEPT") == "text/plain")
  }

  @Test func http10NeedsNoHost() {
    guard case .head = feed("HEAD /healthz HTTP/1.0\r\n\r\n", chunk: 100) else {
      Issue.record("refused")
      return
    }
  }

  @Test(arguments: [
    ("GET /metrics HTTP/1.1\r\n\r\n", 400),  // no Host
    ("GET /metrics HTTP/1.1\nHost: a\n\n\r\n\r\n", 400),  // bare LF
    ("GET  /metrics HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET metrics HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET http://x/metrics HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /metrics HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("GET /metrics FTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET /metrics HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
    ("GET /metrics HTTP/1.1\r\nHo st: a\r\n\r\n", 400),
    ("GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", 400),
    ("GET /metrics HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("\r\n\r\n", 400),
  ])
  func refusesMalformedRequests(text: String, status: Int) {
    guard case .refuse(let got, _) = feed(text, chunk: 7) else {
      Issue.record("accepted \(text.debugDescription)")
      return
    }
    #expect(got == status)
  }

  @Test func headsLargerThanTheLimitAre431() {
    let big = "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "a", count: 9000) + "\r\n\r\n"
    guard case .refuse(let status, _) = feed(big, chunk: 1000) else {
      Issue.record("accepted")
      return
    }
    #expect(status == 431)
    // Without a terminator at all, the parser stops at the limit rather than buffering on.
    guard case .refuse(let status2, _) = feed(String(repeating: "a", count: 9000), chunk: 512) else {
      Issue.record("accepted")
      return
    }
    #expect(status2 == 431)
  }

  @Test func listenAddressesFollowUpstreamSyntax() throws {
    #expect(try ListenAddress.parse(":8095") == [.tcp(host: "::", port: 8095), .tcp(host: "0.0.0.0", port: 8095)])
    #expect(try ListenAddress.parse("127.0.0.1:9") == [.tcp(host: "127.0.0.1", port: 9)])
    #expect(try ListenAddress.parse("[::1]:80") == [.tcp(host: "::1", port: 80)])
    #expect(try ListenAddress.parse("localhost:80") == [.tcp(host: "127.0.0.1", port: 80)])
    #expect(try ListenAddress.parse("0") == nil)
    #expect(try ListenAddress.parse("") == nil)
    for bad in ["8095", "::1:80", "host.example:80", ":99999", ":x"] {
      #expect(throws: ListenAddress.ParseError.self) { try ListenAddress.parse(bad) }
    }
  }
}
