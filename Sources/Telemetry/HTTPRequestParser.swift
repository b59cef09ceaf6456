/// The head of an HTTP/1.x request: what a GET responder needs.
public struct HTTPRequestHead: Sendable, Equatable {
  public var method: String
  /// The path, without the query string.
  public var path: String
  public var query: String
  public var version: String
  /// Header names lowercased, in arrival order.
  public var headers: [(name: String, value: String)]

  public static func == (a: HTTPRequestHead, b: HTTPRequestHead) -> Bool {
    a.method == b.method && a.path == b.path && a.query == b.query && a.version == b.version
      && a.headers.elementsEqual(b.headers, by: { $0.name == $1.name && $0.value == $1.value })
  }

  public func header(_ name: String) -> String? {
    let lower = name.lowercased()
    return headers.first { $0.name == lower }?.value
  }
}

/// Collects a request head from bytes as they arrive. A state machine with no
/// I/O: feed it bytes, it answers whether it needs more, has a head, or the
/// request is refused (with the status to answer). Strict on purpose: CRLF line
/// ends, one space between request-line parts, token header names, no folded
/// lines, no request bodies, and the head bounded by `maxHeadBytes`.
public struct HTTPRequestParser {
  public enum Event: Equatable {
    case needMore
    case head(HTTPRequestHead)
    case refuse(status: Int, reason: String)
  }

  public let maxHeadBytes: Int
  private var buffer: [UInt8] = []
  private var scanned = 0
  private var finished = false

  public init(maxHeadBytes: Int = 8192) {
    self.maxHeadBytes = maxHeadBytes
  }

  public mutating func feed(_ bytes: UnsafeRawBufferPointer) -> Event {
    guard !finished else { return .needMore }
    let room = maxHeadBytes + 4 - buffer.count
    buffer.append(contentsOf: bytes.prefix(max(0, room)))
    // Look for CRLF CRLF from a little before where the last search stopped.
    var i = max(0, scanned - 3)
    while i + 3 < buffer.count {
      if buffer[i] == 0x0D && buffer[i + 1] == 0x0A && buffer[i + 2] == 0x0D && buffer[i + 3] == 0x0A {
        finished = true
        guard i + 4 <= maxHeadBytes else { return .refuse(status: 431, reason: "request head larger than \(maxHeadBytes) bytes") }
        return Self.parse(buffer[..<i])
      }
      i += 1
    }
    scanned = buffer.count
    if buffer.count >= maxHeadBytes {
      finished = true
      return .refuse(status: 431, reason: "request head larger than \(maxHeadBytes) bytes")
    }
    return .needMore
  }

  static func parse(_ head: ArraySlice<UInt8>) -> Event {
    var lines: [ArraySlice<UInt8>] = []
    var start = head.startIndex
    var i = head.startIndex
    while i < head.endIndex {
      if head[i] == 0x0D {
        guard i + 1 < head.endIndex, head[i + 1] == 0x0A else { return bad("bare CR in the request head") }
        lines.append(head[start..<i])
        i += 2
        start = i
        continue
      }
      if head[i] == 0x0A { return bad("bare LF in the request head") }
      if head[i] == 0 { return bad("NUL in the request head") }
      i += 1
    }
    lines.append(head[start..<head.endIndex])
    guard let requestLine = lines.first, !requestLine.isEmpty else { return bad("empty request line") }
    let parts = requestLine.split(separator: 0x20, omittingEmptySubsequences: false)
    guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else { return bad("malformed request line") }
    guard parts[0].allSatisfy(isTokenByte) else { return bad("malformed method") }
    let method = String(decoding: parts[0], as: UTF8.self)
    let version = String(decoding: parts[2], as: UTF8.self)
    guard version == "HTTP/1.1" || version == "HTTP/1.0" else {
      if version.hasPrefix("HTTP/") { return .refuse(status: 505, reason: "only HTTP/1.0 and HTTP/1.1 are served") }
      return bad("malformed HTTP version")
    }
    let target = parts[1]
    guard target.first == 0x2F, target.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
      return bad("the request target must be an absolute path")
    }
    let text = String(decoding: target, as: UTF8.self)
    let path: String
    let query: String
    if let q = text.firstIndex(of: "?") {
      path = String(text[..<q])
      query = String(text[text.index(after: q)...])
    } else {
      path = text
      query = ""
    }
    var headers: [(name: String, value: String)] = []
    for line in lines.dropFirst() {
      guard let colon = line.firstIndex(of: 0x3A) else { return bad("header line without a colon") }
      let name = line[line.startIndex..<colon]
      guard !name.isEmpty, name.allSatisfy(isTokenByte) else { return bad("malformed header name") }
      var value = line[(colon + 1)...]
      while let f = value.first, f == 0x20 || f == 0x09 { value = value.dropFirst() }
      while let l = value.last, l == 0x20 || l == 0x09 { value = value.dropLast() }
      guard value.allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }) else { return bad("control character in a header value") }
      headers.append((String(decoding: name, as: UTF8.self).lowercased(), String(decoding: value, as: UTF8.self)))
    }
    let head = HTTPRequestHead(method: method, path: path, query: query, version: version, headers: headers)
    if head.header("transfer-encoding") != nil { return .refuse(status: 400, reason: "request bodies are not accepted") }
    if let length = head.header("content-length"), length != "0" { return .refuse(status: 400, reason: "request bodies are not accepted") }
    if version == "HTTP/1.1", head.header("host") == nil { return bad("HTTP/1.1 requests need a Host header") }
    return .head(head)
  }

  private static func bad(_ reason: String) -> Event { .refuse(status: 400, reason: reason) }

  /// RFC 9110 `tchar`.
  static func isTokenByte(_ c: UInt8) -> Bool {
    switch c {
    case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
    case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
      UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
      UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
      true
    default: false
    }
  }
}
