import FoundationEssentials
import Glibc
public import UVRuntime

/// REST verbs on typed objects, with `resourceVersion`, typed errors from the server's
/// `Status`, client-side rate limits and bearer tokens that follow a rotated token file.
/// Holds no cache: list+watch caches are built on top (`KubeInformer`).
public final class KubeClient: Sendable {
  public struct Settings: Sendable {
    /// `--kube-api-qps` / `--kube-api-burst`. The defaults let a 250-pod burst on one node
    /// (one status write each, plus events) go out at once, and hold a crash-looping
    /// node to a steady 50 requests a second.
    public var qps: Double = 50
    public var burst: Int = 300
    public var requestTimeout: Duration = .seconds(30)
    public var userAgent = "secrets-store-csi-driver"
    public init() {}
  }

  public let config: KubeConfig
  let transport: any KubeTransport
  let settings: Settings
  let loop: EventLoop
  private let limiter: Locked<TokenBucket>
  private let token: TokenCache?

  public init(config: KubeConfig, transport: any KubeTransport, loop: EventLoop, settings: Settings = Settings()) {
    self.config = config
    self.transport = transport
    self.loop = loop
    self.settings = settings
    limiter = Locked(TokenBucket(ratePerSecond: settings.qps, burst: settings.burst, now: KubeClient.now()))
    switch config.credentials {
    case .token(let t): token = TokenCache(fixed: t)
    case .tokenFile(let path): token = TokenCache(file: path)
    case .none, .clientCertificate: token = nil
    }
  }

  /// Monotonic time as a Duration since an arbitrary start (for rate limits).
  public static func monotonicNow() -> Duration { now() }

  static func now() -> Duration {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return .seconds(ts.tv_sec) + .nanoseconds(ts.tv_nsec)
  }

  // MARK: verbs on typed objects

  public func get<T: KubeObject>(_ type: T.Type, namespace: String?, name: String) async throws -> T {
    try await get(T.self, T.resource, namespace: namespace, name: name)
  }

  public func list<T: KubeObject>(
    _ type: T.Type, namespace: String? = nil, labelSelector: String? = nil, fieldSelector: String? = nil,
    resourceVersion: String? = nil
  ) async throws -> KubeList<T> {
    try await list(T.self, T.resource, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector, resourceVersion: resourceVersion)
  }

  public func create<T: KubeObject>(_ object: T) async throws -> T {
    try await create(object, T.resource, namespace: object.metadata.namespace)
  }

  /// PUT: fails with a conflict when `metadata.resourceVersion` is stale.
  public func update<T: KubeObject>(_ object: T, subresource: String? = nil) async throws -> T {
    try await update(object, T.resource, namespace: object.metadata.namespace, name: object.metadata.name ?? "", subresource: subresource)
  }

  /// JSON merge patch (RFC 7386): only the fields in `patch` change.
  public func mergePatch<T: KubeObject>(
    _ type: T.Type, namespace: String?, name: String, patch: [UInt8], subresource: String? = nil
  ) async throws -> T {
    try await mergePatch(T.self, T.resource, namespace: namespace, name: name, patch: patch, subresource: subresource)
  }

  /// Deletes the object; with `uid`, only that incarnation of the name (a precondition).
  /// A missing object is not an error.
  public func delete<T: KubeObject>(_ type: T.Type, namespace: String?, name: String, uid: String? = nil) async throws {
    try await delete(T.resource, namespace: namespace, name: name, uid: uid)
  }

  // MARK: verbs on any resource (objects as any Codable shape, e.g. JSONValue)

  public func get<T: Decodable>(_ type: T.Type, _ resource: KubeResource, namespace: String?, name: String) async throws -> T {
    try decode(T.self, from: await call("GET", resource.path(namespace: namespace, name: name)))
  }

  public func list<T: Decodable & Sendable>(
    _ type: T.Type, _ resource: KubeResource, namespace: String? = nil, labelSelector: String? = nil, fieldSelector: String? = nil,
    resourceVersion: String? = nil
  ) async throws -> KubeList<T> {
    let query = Self.query(["labelSelector": labelSelector, "fieldSelector": fieldSelector, "resourceVersion": resourceVersion])
    return try decode(KubeList<T>.self, from: await call("GET", resource.path(namespace: namespace) + query))
  }

  public func create<T: Codable>(_ object: T, _ resource: KubeResource, namespace: String?) async throws -> T {
    try decode(T.self, from: await call("POST", resource.path(namespace: namespace), body: encode(object)))
  }

  public func update<T: Codable>(
    _ object: T, _ resource: KubeResource, namespace: String?, name: String, subresource: String? = nil
  ) async throws -> T {
    try decode(T.self, from: await call("PUT", resource.path(namespace: namespace, name: name, subresource: subresource), body: encode(object)))
  }

  public func mergePatch<T: Decodable>(
    _ type: T.Type, _ resource: KubeResource, namespace: String?, name: String, patch: [UInt8], subresource: String? = nil
  ) async throws -> T {
    try decode(
      T.self,
      from: await call(
        "PATCH", resource.path(namespace: namespace, name: name, subresource: subresource), body: patch,
        contentType: "application/merge-patch+json"))
  }

  /// A missing object is not an error. `propagation`: Background (dependents go later),
  /// Foreground or Orphan.
  public func delete(
    _ resource: KubeResource, namespace: String?, name: String, uid: String? = nil, propagation: String = "Background"
  ) async throws {
    var options = DeleteOptions()
    options.propagationPolicy = propagation
    options.preconditions = uid.map { .init(uid: $0) }
    let body = try encode(options)
    do {
      _ = try await call("DELETE", resource.path(namespace: namespace, name: name), body: body)
    } catch let error as KubeError where error.isNotFound {
      return
    }
  }

  /// Reads the object, lets `change` edit it, writes it back; on a conflict, reads
  /// again and retries (up to `attempts`). `change` returns false to leave it as it is.
  public func modify<T: KubeObject>(
    _ type: T.Type, namespace: String?, name: String, attempts: Int = 5, _ change: (inout T) throws -> Bool
  ) async throws -> T {
    var attempt = 0
    while true {
      attempt += 1
      var object = try await get(T.self, namespace: namespace, name: name)
      guard try change(&object) else { return object }
      do {
        return try await update(object)
      } catch let error as KubeError where error.isConflict && attempt < attempts {
        continue
      }
    }
  }

  /// A watch from `resourceVersion`, with bookmarks. The stream ends when the server
  /// closes it (a timeout, a restart); an `.error` event with 410 means list again.
  public func watch<T: KubeObject>(
    _ type: T.Type, namespace: String? = nil, labelSelector: String? = nil, fieldSelector: String? = nil,
    resourceVersion: String, timeoutSeconds: Int = 300
  ) async throws -> AsyncThrowingStream<WatchEvent<T>, any Error> {
    try await watch(
      T.self, T.resource, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector,
      resourceVersion: resourceVersion, timeoutSeconds: timeoutSeconds)
  }

  public func watch<T: Decodable & Sendable>(
    _ type: T.Type, _ resource: KubeResource, namespace: String? = nil, labelSelector: String? = nil, fieldSelector: String? = nil,
    resourceVersion: String, timeoutSeconds: Int = 300
  ) async throws -> AsyncThrowingStream<WatchEvent<T>, any Error> {
    let query = Self.query([
      "watch": "1", "allowWatchBookmarks": "true", "resourceVersion": resourceVersion, "timeoutSeconds": "\(timeoutSeconds)",
      "labelSelector": labelSelector, "fieldSelector": fieldSelector,
    ])
    let request = try await prepare("GET", resource.path(namespace: namespace) + query, body: nil, contentType: nil)
    var req = request
    // Between lines the server sends bookmarks about once a minute; twice that is a dead watch.
    req.timeout = .seconds(max(timeoutSeconds, 60) + 60)
    let stream = try await transport.streamLines(req)
    guard stream.status == 200 else {
      var body: [UInt8] = []
      for try await line in stream.lines { body += line + [10] }
      throw Self.error(status: stream.status, body: body)
    }
    let lines = stream.lines
    return AsyncThrowingStream { continuation in
      let task = Task {
        do {
          for try await line in lines where !line.isEmpty {
            continuation.yield(try Self.decodeWatchLine(line, as: T.self))
          }
          continuation.finish()
        } catch {
          continuation.finish(throwing: error)
        }
      }
      continuation.onTermination = { _ in task.cancel() }
    }
  }

  static func decodeWatchLine<T: Decodable & Sendable>(_ line: [UInt8], as: T.Type) throws -> WatchEvent<T> {
    let decoder = JSONDecoder()
    let data = Data(line)
    let head = try decoder.decode(Head.self, from: data)
    switch head.type {
    case "ADDED": return .added(try decoder.decode(Typed<T>.self, from: data).object)
    case "MODIFIED": return .modified(try decoder.decode(Typed<T>.self, from: data).object)
    case "DELETED": return .deleted(try decoder.decode(Typed<T>.self, from: data).object)
    case "BOOKMARK":
      return .bookmark(resourceVersion: try decoder.decode(Typed<Mark>.self, from: data).object.metadata.resourceVersion ?? "")
    case "ERROR": return .error(try decoder.decode(Typed<KubeStatus>.self, from: data).object)
    default: throw KubeError(code: 0, reason: "BadWatchEvent", message: "unknown watch event type \"\(head.type.prefix(32))\"")
    }
  }

  // MARK: plumbing

  private func call(_ method: String, _ path: String, body: [UInt8]? = nil, contentType: String? = "application/json") async throws -> [UInt8] {
    var retriedAuth = false
    while true {
      let request = try await prepare(method, path, body: body, contentType: body == nil ? nil : contentType)
      let response: KubeHTTPResponse
      do {
        response = try await transport.send(request)
      } catch let error as KubeTransportError {
        throw KubeError(code: 0, reason: "Unreachable", message: error.message)
      }
      if (200..<300).contains(response.status) { return response.body }
      // A rotated token file: read it again once before giving up.
      if response.status == 401, !retriedAuth, let token, token.isFile {
        retriedAuth = true
        token.invalidate()
        continue
      }
      throw Self.error(status: response.status, body: response.body)
    }
  }

  private func prepare(_ method: String, _ path: String, body: [UInt8]?, contentType: String?) async throws -> KubeHTTPRequest {
    try await throttle()
    var headers: [(name: String, value: String)] = [("Accept", "application/json"), ("User-Agent", settings.userAgent)]
    if let contentType { headers.append(("Content-Type", contentType)) }
    if let token, let value = try token.current() { headers.append(("Authorization", "Bearer " + value)) }
    return KubeHTTPRequest(method: method, path: path, headers: headers, body: body, timeout: settings.requestTimeout)
  }

  private func throttle() async throws {
    let wait = limiter.withLock { $0.reserve(now: Self.now()) }
    guard wait > .zero else { return }
    try await loop.sleep(milliseconds: wait.timerMilliseconds)
  }

  static func error(status: Int, body: [UInt8]) -> KubeError {
    KubeError(code: status, status: try? JSONDecoder().decode(KubeStatus.self, from: Data(body)))
  }

  func decode<T: Decodable>(_ type: T.Type, from body: [UInt8]) throws -> T {
    do {
      return try JSONDecoder().decode(T.self, from: Data(body))
    } catch {
      // The decoder's own text can quote values; name only the type.
      throw KubeError(code: 0, reason: "BadResponse", message: "the API server's answer is not a valid \(T.self)")
    }
  }

  func encode<T: Encodable>(_ value: T) throws -> [UInt8] { try Self.encode(value) }

  static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
    return Array(try encoder.encode(value))
  }

  static func query(_ items: KeyValuePairs<String, String?>) -> String {
    var parts: [String] = []
    for (key, value) in items {
      guard let value else { continue }
      parts.append(key + "=" + KubeResource.escape(value))
    }
    return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
  }
}


/// The bearer token: fixed, or read from a file that kubelet rotates. The file is read
/// again when it was last read more than `maxAge` ago or after a 401.
final class TokenCache: Sendable {
  private struct State {
    var value: String?
    var readAt: Duration = .zero
  }
  private let path: String?
  private let state: Locked<State>
  private let maxAge: Duration = .seconds(60)

  init(fixed: String) {
    path = nil
    state = Locked(State(value: fixed))
  }

  init(file: String) {
    path = file
    state = Locked(State())
  }

  var isFile: Bool { path != nil }

  func invalidate() {
    state.withLock { $0.value = nil }
  }

  func current() throws -> String? {
    guard let path else { return state.withLock { $0.value } }
    let now = KubeClient.now()
    if let cached = state.withLock({ s -> String? in s.value != nil && now - s.readAt < maxAge ? s.value : nil }) {
      return cached
    }
    let bytes: [UInt8]
    do {
      bytes = try KubeConfig.readFile(path, what: "token file")
    } catch {
      throw KubeError(code: 0, reason: "TokenUnreadable", message: error.message)
    }
    let token = String(decoding: bytes, as: UTF8.self).trimmedOfWhitespace
    state.withLock { $0 = State(value: token, readAt: now) }
    return token
  }
}

private struct Head: Decodable { var type: String }
private struct Typed<O: Decodable>: Decodable { var object: O }
private struct Mark: Decodable { var metadata: ObjectMeta }

private struct DeleteOptions: Encodable {
  struct Preconditions: Encodable { var uid: String }
  var kind = "DeleteOptions"
  var apiVersion = "v1"
  var propagationPolicy = "Background"
  var preconditions: Preconditions?
}

extension String {
  /// Without leading and trailing spaces, tabs and newlines (a token file ends in one).
  var trimmedOfWhitespace: String {
    let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
    let bytes = Array(utf8)
    guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) }) else { return "" }
    return String(decoding: bytes[first...last], as: UTF8.self)
  }
}
