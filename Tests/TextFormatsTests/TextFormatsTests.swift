import FoundationEssentials
import Testing
import TextFormats

@Suite struct GoDurationTests {
  @Test(arguments: [
    ("2m", Duration.seconds(120)), ("90s", .seconds(90)), ("1h30m", .seconds(5400)), ("500ms", .milliseconds(500)),
    ("1.5s", .milliseconds(1500)), ("0", .zero), ("50us", .microseconds(50)), ("50µs", .microseconds(50)),
    ("250ns", .nanoseconds(250)), ("1m0.5s", .milliseconds(60_500)),
  ])
  func goDurations(text: String, expected: Duration) throws {
    #expect(try GoDuration.parse(text) == expected)
  }

  @Test(arguments: ["", "5", "m", "5x", "-1s", "1s2", " 1s", "1 s", "٣s", "99999999999999999999h", "3000000h"])
  func badGoDurations(text: String) {
    #expect(throws: GoDuration.ParseError.self) { try GoDuration.parse(text) }
    #expect(GoDuration.seconds(text) == nil)
  }

  /// The reference provider's and the load harness's spellings, now the same parser's.
  @Test func secondsAndMillisecondsForCallersThatCountInDoubles() {
    #expect(GoDuration.seconds("1.5s") == 1.5)
    #expect(GoDuration.seconds("2m") == 120)
    #expect(GoDuration.seconds("1h") == 3600)
    #expect(GoDuration.milliseconds("250ms") == 250)
    #expect(GoDuration.milliseconds("0") == 0)
    #expect(GoDuration.milliseconds("10s") == 10_000)
  }
}

@Suite struct JSONTextTests {
  static func object(_ json: String) throws -> [String: String] {
    try JSONDecoder().decode([String: String].self, from: Data(json.utf8))
  }

  @Test func jsonEscapingRoundTrips() throws {
    let tricky = ["q\"uote": "back\\slash", "ctl": "\u{01}\n\t\r", "html": "<a&b>", "uni": "ü🔑\u{2028}"]
    let text = JSONText.object(tricky)
    #expect(try Self.object(text) == tricky)
    #expect(text.contains("\\u003ca\\u0026b\\u003e"))
    #expect(JSONText.object(["b": "1", "a": "2"]) == "{\"a\":\"2\",\"b\":\"1\"}")
  }

  /// The exact bytes Go's encoding/json writes for the same map.
  @Test func jsonEscapingMatchesGoByteForByte() {
    let text = JSONText.object(["k": "a\"b\\c\u{01}\u{1f}\n\r\t<>&\u{2028}\u{2029}\u{2027}ü🔑 end"])
    #expect(text == #"{"k":"a\"b\\c\u0001\u001f\n\r\t\u003c\u003e\u0026\u2028\u2029\#u{2027}ü🔑 end"}"#)
    var log = ""
    JSONText.appendString("<&>\u{2028}\"", to: &log, htmlSafe: false)
    #expect(log == "\"<&>\u{2028}\\\"\"")
    #expect(JSONText.string("<&>\u{2028}\"", htmlSafe: false) == log)
  }
}

@Suite struct LogLineTests {
  @Test func klogLineHasSeverityTimestampLabelMessageAndFields() throws {
    let line = LogLine.klog(severity: "W", label: "driver", message: "hello", fields: [("a", "1"), ("b", "two words")])
    // W1203 06:54:46.840720 driver] hello a=1 b="two words"
    #expect(line.hasPrefix("W"))
    #expect(line.hasSuffix(" driver] hello a=1 b=\"two words\"\n"))
    let stamp = String(line.dropFirst().prefix(20))
    #expect(stamp.count == 20 && stamp.dropFirst(4).first == " " && stamp.dropFirst(13).first == ".", "\(stamp)")
    #expect(line.filter { $0 == "\n" }.count == 1)
  }

  @Test(arguments: [
    ("plain", "plain"), ("", "\"\""), ("a b", "\"a b\""), ("a=b", "\"a=b\""), ("q\"", "\"q\\\"\""),
    ("line\nbreak", "\"line\\nbreak\""), ("bell\u{07}", "\"bell\\u0007\""), ("sep\u{2028}", "\"sep\u{2028}\""),
    ("ünï", "ünï"),
  ])
  func valuesAreQuotedWhenTheyWouldBreakTheLine(_ value: String, _ written: String) {
    #expect(LogLine.quoteIfNeeded(value) == written)
  }

  @Test func jsonLineIsOneObject() throws {
    let line = LogLine.json(level: "warning", label: "l", message: "m\n\"x\"", fields: [("flag", "--metrics-addr"), ("v", "<&>")])
    #expect(line.hasSuffix("}\n") && line.filter { $0 == "\n" }.count == 1)
    let object = try JSONDecoder().decode([String: String].self, from: Data(line.utf8))
    #expect(object["level"] == "warning" && object["logger"] == "l" && object["msg"] == "m\n\"x\"")
    #expect(object["flag"] == "--metrics-addr" && object["v"] == "<&>")
    #expect(object["ts"]?.hasSuffix("Z") == true && object["ts"]?.count == 27)
  }
}
