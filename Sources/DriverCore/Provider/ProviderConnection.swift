public import CSIMessages
import CLinux
import GRPCH2
public import GRPCCore
public import UVRuntime

/// Where provider sockets live and how calls to them are bounded.
public struct ProviderSettings: Sendable, Hashable {
  /// Searched in order for `<dir>/<provider>.sock`: the additional paths first,
  /// then `--provider-volume`, as upstream does.
  public var searchDirectories: [String]
  /// The largest MountResponse accepted (`--max-call-recv-msg-size`).
  public var maxReceiveMessageBytes: Int
  /// The longest a single provider call may take, even when kubelet allows more.
  public var callTimeout: Duration

  public static let defaultProviderVolume = "/var/run/secrets-store-csi-providers"
  public static let defaultAdditionalProviderVolumePaths = ["/etc/kubernetes/secrets-store-csi-providers"]

  public init(
    searchDirectories: [String] = Self.defaultAdditionalProviderVolumePaths + [Self.defaultProviderVolume],
    maxReceiveMessageBytes: Int = 4 << 20,
    callTimeout: Duration = .seconds(100)
  ) {
    self.searchDirectories = searchDirectories
    self.maxReceiveMessageBytes = maxReceiveMessageBytes
    self.callTimeout = callTimeout
  }
}

/// Why a provider call failed, in terms the mount path maps to gRPC codes.
public struct ProviderCallError: Error, Sendable, CustomStringConvertible {
  public enum Kind: Sendable, Hashable {
    /// No socket, connection refused or lost: UNAVAILABLE, kubelet retries.
    case unreachable
    /// The provider did not answer within the call's deadline.
    case deadlineExceeded
    /// The provider answered with a gRPC error status.
    case status(RPCError.Code)
  }

  public var provider: String
  public var kind: Kind
  /// Scrubbed by the call's ``SecretScrubber``: safe to log and to return.
  public var detail: String

  public var description: String {
    switch kind {
    case .unreachable: "provider \"\(provider)\" is unreachable: \(detail)"
    case .deadlineExceeded: "provider \"\(provider)\" did not answer in time: \(detail)"
    case .status(let code): "provider \"\(provider)\" failed the call with \(code.canonicalName): \(detail)"
    }
  }
}

/// One provider plugin: finds its socket, connects lazily, multiplexes calls
/// on one HTTP/2 connection (the transport redials after the provider
/// restarts, so a dead connection is never reused) and follows the socket if
/// the provider moves to another of the searched directories.
public actor ProviderConnection {
  public nonisolated let name: String
  nonisolated let loop: EventLoop
  nonisolated let settings: ProviderSettings
  nonisolated let metrics: ProviderCallMetrics?

  private var client: ProviderClient?
  private var clientPath: String?
  private var running: Task<Void, Never>?

  public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

  public init(name: String, loop: EventLoop, settings: ProviderSettings, metrics: DriverMetrics? = nil) {
    self.name = name
    self.loop = loop
    self.settings = settings
    self.metrics = metrics?.providerCalls(for: name)
  }

  /// The first `<dir>/<name>.sock` that is a socket, or nil.
  public nonisolated func socketPath() -> String? {
    for dir in settings.searchDirectories {
      let path = dir.hasSuffix("/") ? "\(dir)\(name).sock" : "\(dir)/\(name).sock"
      if clinux_is_socket(path) == 1 { return path }
    }
    return nil
  }

  /// `scrubber` knows the call's secrets: what the provider says in an error
  /// passes through it before it is kept in the ``ProviderCallError``.
  public func mount(
    _ request: Provider.MountRequest, timeout: Duration, scrubber: SecretScrubber
  ) async throws(ProviderCallError) -> Provider.MountResponse {
    try await call(method: "Mount", timeout: timeout, scrubber: scrubber) { client, budget in try await client.mount(request, timeout: budget) }
  }

  /// A Version request carries none of our secrets, so its error text is
  /// scrubbed of credential-shaped runs (``SecretScrubber/unknownSecrets``).
  public func version(timeout: Duration) async throws(ProviderCallError) -> Provider.VersionResponse {
    try await call(method: "Version", timeout: timeout, scrubber: .unknownSecrets) { client, budget in try await client.version(timeout: budget) }
  }

  /// One call, retried once when the connection turns out to be dead: after a
  /// provider restart the first call can still go out on the old connection
  /// before its end has been read. Mount and Version are idempotent, so the
  /// retry is safe; it gets what is left of the same budget.
  private func call<R: Sendable>(
    method: String, timeout: Duration, scrubber: SecretScrubber, _ body: (ProviderClient, Duration) async throws -> R
  ) async throws(ProviderCallError) -> R {
    let budget = min(timeout, settings.callTimeout)
    let start = ContinuousClock.now
    var attempt = 0
    while true {
      let client: ProviderClient
      do { client = try currentClient() } catch {
        metrics?.record(method: method, error: error, since: start)
        throw error
      }
      do {
        let result = try await body(client, budget - (ContinuousClock.now - start))
        metrics?.record(method: method, code: "OK", since: start)
        return result
      } catch {
        let failure = classify(error, scrubber: scrubber)
        attempt += 1
        guard failure.kind == .unreachable, attempt < 2, budget - (ContinuousClock.now - start) > .milliseconds(10) else {
          metrics?.record(method: method, error: failure, since: start)
          throw failure
        }
      }
    }
  }

  /// Closes the connection; calls in flight finish first.
  public func close() async {
    client?.close()
    client = nil
    clientPath = nil
    let task = running
    running = nil
    await task?.value
  }

  private func currentClient() throws(ProviderCallError) -> ProviderClient {
    guard let path = socketPath() else {
      let dirs = settings.searchDirectories.joined(separator: ", ")
      throw ProviderCallError(provider: name, kind: .unreachable, detail: "no socket \(name).sock in \(dirs)")
    }
    if let client, clientPath == path { return client }
    // First use, or the provider now listens elsewhere: start a fresh client.
    client?.close()
    let fresh = ProviderClient(endpoint: .unix(path: path), loop: loop, maxReceiveMessageBytes: settings.maxReceiveMessageBytes)
    client = fresh
    clientPath = path
    let previous = running
    running = Task(executorPreference: loop) {
      await previous?.value
      try? await fresh.run()
    }
    return fresh
  }

  /// Provider text reaches kubelet events, logs and the CSI status: only scrubbed.
  private func classify(_ error: any Error, scrubber: SecretScrubber) -> ProviderCallError {
    guard let rpc = error as? RPCError else {
      return ProviderCallError(provider: name, kind: .unreachable, detail: scrubber.scrub("\(error)"))
    }
    let detail = scrubber.scrub(rpc.message)
    switch rpc.code {
    case .unavailable: return ProviderCallError(provider: name, kind: .unreachable, detail: detail)
    case .deadlineExceeded: return ProviderCallError(provider: name, kind: .deadlineExceeded, detail: detail)
    default: return ProviderCallError(provider: name, kind: .status(rpc.code), detail: detail)
    }
  }
}

/// All provider connections: one per provider name and loop, made on first use.
///
/// A volume calls its provider on the connection of the loop it runs on, so the
/// call, its HTTP/2 framing and the answer stay on that loop's thread, and each
/// loop's connection carries only its own volumes' calls (a provider sees one
/// connection per loop that has used it).
public final class ProviderConnections: Sendable {
  public let loops: EventLoopGroup
  public let settings: ProviderSettings
  let metrics: DriverMetrics?
  /// One table per loop, in the group's order.
  private let connections: [Locked<[String: ProviderConnection]>]

  public init(loops: EventLoopGroup, settings: ProviderSettings, metrics: DriverMetrics? = nil) {
    self.loops = loops
    self.settings = settings
    self.metrics = metrics
    connections = loops.loops.map { _ in Locked([:]) }
  }

  /// One loop: one connection per provider (as before loop groups).
  public convenience init(loop: EventLoop, settings: ProviderSettings, metrics: DriverMetrics? = nil) {
    self.init(loops: EventLoopGroup(loops: [loop]), settings: settings, metrics: metrics)
  }

  /// Loop 0 of the group.
  public var loop: EventLoop { loops.first }

  /// The connection for a provider name already checked by `SecretProviderClass.isValidProviderName`,
  /// on the loop the caller runs on (a volume's actor: its own loop), or on loop 0 when
  /// the caller is on none of the group's loops.
  public func connection(for provider: String) -> ProviderConnection {
    connection(for: provider, loopIndex: loops.currentIndex ?? 0)
  }

  /// The connection for a provider on loop `loopIndex` of the group.
  public func connection(for provider: String, loopIndex: Int) -> ProviderConnection {
    connections[loopIndex].withLock { all in
      if let c = all[provider] { return c }
      let c = ProviderConnection(name: provider, loop: loops.loops[loopIndex], settings: settings, metrics: metrics)
      all[provider] = c
      return c
    }
  }

  /// How many connections are open or were made, per loop (for tests and diagnostics).
  public var connectionCounts: [Int] { connections.map { $0.withLock { $0.count } } }

  /// Names of providers with a socket in the search directories now.
  public func discoverProviders() -> [String] {
    var names: Set<String> = []
    for dir in settings.searchDirectories {
      for entry in FileIO.directoryEntries(dir) where entry.hasSuffix(".sock") {
        let name = String(entry.dropLast(".sock".count))
        if SecretProviderClass.isValidProviderName(name), !name.isEmpty, clinux_is_socket(dir + "/" + entry) == 1 {
          names.insert(name)
        }
      }
    }
    return names.sorted()
  }

  /// Closes every connection on every loop; calls in flight finish first.
  public func closeAll() async {
    let all = connections.flatMap { table in
      table.withLock { all in
        defer { all = [:] }
        return Array(all.values)
      }
    }
    for c in all { await c.close() }
  }
}
