/// One header field. Names compare case-insensitively where it matters (`HTTPHeaders[name]`).
public struct HTTPHeader: Sendable, Hashable {
  public var name: String
  public var value: String

  public init(_ name: String, _ value: String) {
    self.name = name
    self.value = value
  }
}

/// Header fields in order, repeated names allowed.
public struct HTTPHeaders: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
  public private(set) var fields: [HTTPHeader] = []

  public init() {}
  public init(_ fields: [HTTPHeader]) { self.fields = fields }
  public init(dictionaryLiteral elements: (String, String)...) {
    fields = elements.map { HTTPHeader($0.0, $0.1) }
  }

  public mutating func add(_ name: String, _ value: String) { fields.append(HTTPHeader(name, value)) }

  /// Replaces every field named `name` (any case) with one.
  public mutating func set(_ name: String, _ value: String) {
    remove(name)
    add(name, value)
  }

  public mutating func remove(_ name: String) {
    let lower = name.lowercased()
    fields.removeAll { $0.name.lowercased() == lower }
  }

  /// The first value of `name`, any case.
  public subscript(name: String) -> String? {
    let lower = name.lowercased()
    return fields.first { $0.name.lowercased() == lower }?.value
  }

  /// Every value of `name`, any case, in order.
  public func values(_ name: String) -> [String] {
    let lower = name.lowercased()
    return fields.filter { $0.name.lowercased() == lower }.map(\.value)
  }

  public var count: Int { fields.count }
  public func makeIterator() -> IndexingIterator<[HTTPHeader]> { fields.makeIterator() }
}

public struct HTTPMethod: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
  public var rawValue: String
  public init(rawValue: String) { self.rawValue = rawValue }

  public static let get = HTTPMethod(rawValue: "GET")
  public static let head = HTTPMethod(rawValue: "HEAD")
  public static let post = HTTPMethod(rawValue: "POST")
  public static let put = HTTPMethod(rawValue: "PUT")
  public static let patch = HTTPMethod(rawValue: "PATCH")
  public static let delete = HTTPMethod(rawValue: "DELETE")

  public var description: String { rawValue }
}

/// Which HTTP the client speaks.
public enum HTTPVersionPreference: Sendable, Hashable {
  /// HTTP/1.1 only.
  case http1_1
  /// HTTP/2 where an HTTPS server offers it (ALPN), HTTP/1.1 otherwise (plain
  /// `http://` included). Requests to the same server share one connection, as
  /// concurrent streams. (No cleartext HTTP/2 "prior knowledge": libcurl 7.88 fails
  /// the second request on such a connection.)
  case http2
}

/// How the server is authenticated, and how the client authenticates itself.
public struct TLSConfiguration: Sendable, Hashable {
  /// Which certificate authorities the client trusts.
  public enum Trust: Sendable, Hashable {
    /// The system's bundle.
    case system
    /// Only the certificates in this PEM file.
    case caFile(String)
    /// Only the certificates in these PEM bytes (kubeconfig `certificate-authority-data`).
    case caPEM([UInt8])
  }

  public var trust: Trust
  /// A client certificate chain and its private key, PEM (kubeconfig `client-certificate-data`
  /// and `client-key-data`). Both or neither.
  public var clientCertificatePEM: [UInt8]?
  public var clientKeyPEM: [UInt8]?
  /// Accepts any server certificate and name. For tests only.
  public var insecureSkipVerify: Bool

  public init(
    trust: Trust = .system, clientCertificatePEM: [UInt8]? = nil, clientKeyPEM: [UInt8]? = nil,
    insecureSkipVerify: Bool = false
  ) {
    self.trust = trust
    self.clientCertificatePEM = clientCertificatePEM
    self.clientKeyPEM = clientKeyPEM
    self.insecureSkipVerify = insecureSkipVerify
  }
}

/// Time limits of one request. Each is off when nil.
public struct HTTPTimeouts: Sendable, Hashable {
  /// Name resolution, TCP connect and TLS handshake (a reused connection skips them).
  public var connect: Duration?
  /// The whole exchange, from start to the last byte. `execute` only: a stream,
  /// which may never end, is bounded by `idle` instead.
  public var total: Duration?
  /// The longest wait for the next bytes from the server (the response head included),
  /// not counting time a stream is paused because its reader lags behind.
  public var idle: Duration?

  public init(connect: Duration? = .seconds(10), total: Duration? = .seconds(30), idle: Duration? = nil) {
    self.connect = connect
    self.total = total
    self.idle = idle
  }
}

public struct HTTPRequest: Sendable {
  public var method: HTTPMethod
  /// `http://` or `https://` only. Credentials belong in headers, not in the URL.
  public var url: String
  /// Sent as given. A bearer token is `Authorization: Bearer ...`; the client never logs headers.
  public var headers: HTTPHeaders
  public var body: [UInt8]?
  public var timeouts: HTTPTimeouts
  public var tls: TLSConfiguration
  public var version: HTTPVersionPreference
  /// `execute`: the largest response body accepted; `stream`: the longest line.
  /// Beyond it the request fails with `.bodyTooLarge`. Counts decoded bytes.
  public var maxResponseBytes: Int
  /// Offers gzip (and the other encodings libcurl decodes) and decodes the response:
  /// large JSON lists travel in a fraction of their size.
  public var acceptCompressedResponse: Bool

  public init(
    method: HTTPMethod = .get, url: String, headers: HTTPHeaders = [:], body: [UInt8]? = nil,
    timeouts: HTTPTimeouts = HTTPTimeouts(), tls: TLSConfiguration = TLSConfiguration(),
    version: HTTPVersionPreference = .http2, maxResponseBytes: Int = 16 << 20, acceptCompressedResponse: Bool = false
  ) {
    self.method = method
    self.url = url
    self.headers = headers
    self.body = body
    self.timeouts = timeouts
    self.tls = tls
    self.version = version
    self.maxResponseBytes = maxResponseBytes
    self.acceptCompressedResponse = acceptCompressedResponse
  }

  /// The URL without user information, query or fragment: safe for messages.
  var redactedURL: String {
    var rest = Substring(url)
    var scheme = ""
    if let range = rest.firstRange(of: "://") {
      scheme = String(rest[..<range.upperBound])
      rest = rest[range.upperBound...]
    }
    if let end = rest.firstIndex(where: { $0 == "?" || $0 == "#" }) { rest = rest[..<end] }
    let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
    if let at = rest[..<authorityEnd].lastIndex(of: "@") { rest = rest[rest.index(after: at)...] }
    return scheme + rest
  }
}

/// The HTTP version a response came over.
public enum HTTPVersion: Sendable, Hashable {
  case http1_0, http1_1, http2, http3, unknown
}

/// Status line and headers of a final (non-1xx) response.
public struct HTTPResponseHead: Sendable {
  public var status: Int
  public var headers: HTTPHeaders
  public var version: HTTPVersion

  public init(status: Int, headers: HTTPHeaders, version: HTTPVersion) {
    self.status = status
    self.headers = headers
    self.version = version
  }
}

public struct HTTPResponse: Sendable {
  public var head: HTTPResponseHead
  public var body: [UInt8]
  /// Connections this request opened: 0 when it reused one (or shared an HTTP/2 one).
  public var newConnections: Int

  public var status: Int { head.status }
  public var headers: HTTPHeaders { head.headers }
  public var version: HTTPVersion { head.version }
}
