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
  /// Mount calls to one provider: in flight at once (`--provider-max-concurrency`) and
  /// started per second with a burst (`--provider-qps`, `--provider-burst`). First
  /// mounts always go ahead of refreshes waiting for the same provider.
  public var gate: ProviderGate.Limits

  /// `--rotation-coalesce-window`: refreshes of one identity with the same request
  /// share one Mount call within this window (zero: every refresh makes its own call).
  public var coalesceWindow: Duration = .zero

  /// 256 calls in flight; refreshes at 100 a second with a burst of 500 (first mounts
  /// wait only for a free slot, never for a token): a storm of refreshes (every volume
  /// due at once after a restart) is spread over seconds instead of hitting the store
  /// together, while pods starting meanwhile go first. docs/rotation-and-sync.md explains.
  public static let defaultGate = ProviderGate.Limits(concurrency: 256, ratePerSecond: 100, burst: 500)

  public static let defaultProviderVolume = "/var/run/secrets-store-csi-providers"
  public static let defaultAdditionalProviderVolumePaths = ["/etc/kubernetes/secrets-store-csi-providers"]

  public init(
    searchDirectories: [String] = Self.defaultAdditionalProviderVolumePaths + [Self.defaultProviderVolume],
    maxReceiveMessageBytes: Int = 4 << 20,
    callTimeout: Duration = .seconds(100),
    gate: ProviderGate.Limits = ProviderSettings.defaultGate
  ) {
    self.searchDirectories = searchDirectories
    self.maxReceiveMessageBytes = maxReceiveMessageBytes
    self.callTimeout = callTimeout
    self.gate = gate
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
    /// The provider's answer could not be read: not a valid protobuf encoding, or a
    /// string in it (a file path, an object id or version, the error code) that is not
    /// valid UTF-8 or holds a NUL byte. Such a response is refused whole.
    case badResponse
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
    case .badResponse: "provider \"\(provider)\" sent a response the driver refuses: \(detail)"
    }
  }
}

/// One provider plugin: finds its socket, connects lazily, multiplexes calls
/// on one HTTP/2 connection (the transport redials after the provider
/// restarts, so a dead connection is never reused) and follows the socket if
/// the provider moves to another of the searched directories.
///
/// The socket is looked up once and then only after a call failed as unreachable
/// (a provider that moved leaves a path nothing answers on): one stat per call
/// saved. Like upstream's client, a connection that works is kept even when a
/// socket of the same name appears in a directory searched earlier.
public actor ProviderConnection {
  public nonisolated let name: String
  nonisolated let loop: EventLoop
  nonisolated let settings: ProviderSettings
  nonisolated let metrics: ProviderCallMetrics?
  /// Bounds and orders this provider's Mount calls (Version calls bypass it: they
  /// are health checks and must not queue behind a storm).
  public nonisolated let gate: ProviderGate
  /// Shares refresh calls of one identity (nil: `--rotation-coalesce-window` is 0).
  public nonisolated let coalescer: RefreshCoalescer?

  private var client: ProviderClient?
  private var clientPath: String?
  /// A call failed as unreachable: the next one looks for the socket again.
  private var lookAgain = false
  private var running: Task<Void, Never>?

  public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

  /// `shared` is the provider's gate and coalescer when other loops' connections to the
  /// same provider use them too (``ProviderConnections``); nil: this connection's own.
  public init(
    name: String, loop: EventLoop, settings: ProviderSettings, metrics: DriverMetrics? = nil,
    shared: ProviderConnections.PerProvider? = nil
  ) {
    self.name = name
    self.loop = loop
    self.settings = settings
    self.metrics = metrics?.providerCalls(for: name)
    let shared = shared ?? ProviderConnections.PerProvider(name: name, settings: settings, loop: loop)
    self.gate = shared.gate
    self.coalescer = shared.coalescer
  }

  /// A refresh's Mount call, shared with refreshes of the same `key` when coalescing
  /// is on (`key` nil: never shared). Answers whose call answered it when it was
  /// another volume's (nil: its own).
  public func refresh(
    _ request: Provider.MountRequest, key: CoalesceKey?, timeout: Duration, scrubber: SecretScrubber
  ) async throws(ProviderCallError) -> (response: Provider.MountResponse, sharedFrom: RefreshCoalescer.Origin?) {
    guard let coalescer, let key else {
      return (try await mount(request, timeout: timeout, scrubber: scrubber, priority: .refresh), nil)
    }
    let answer = await coalescer.refresh(key, target: request.targetPath, timeout: timeout) { [self] in
      do throws(ProviderCallError) {
        return .success(try await mount(request, timeout: timeout, scrubber: scrubber, priority: .refresh))
      } catch {
        return .failure(error)
      }
    }
    switch answer {
    case .called(let result): return (try result.get(), nil)
    case .shared(let result, let origin): return (try result.get(), origin)
    }
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
  ///
  /// The call first passes this provider's gate at `priority`; the wait there counts
  /// against `timeout`, so a call that cannot start in time fails with
  /// `deadlineExceeded` instead of outliving its caller's deadline.
  public func mount(
    _ request: Provider.MountRequest, timeout: Duration, scrubber: SecretScrubber, priority: ProviderGate.Priority = .firstMount
  ) async throws(ProviderCallError) -> Provider.MountResponse {
    let start = ContinuousClock.now
    let waited: Bool
    do {
      waited = try await gate.acquire(priority, timeout: min(timeout, settings.callTimeout))
    } catch let timedOut as ProviderGate.TimedOut {
      metrics?.gateTimedOut(priority)
      throw ProviderCallError(
        provider: name, kind: .deadlineExceeded,
        detail: "the call could not start within its deadline: \(timedOut) (--provider-max-concurrency, --provider-qps)")
    } catch {
      throw ProviderCallError(provider: name, kind: .deadlineExceeded, detail: "the call was cancelled while waiting to start")
    }
    metrics?.gated(priority, waited: waited)
    let left = timeout - (ContinuousClock.now - start)
    let result: Result<Provider.MountResponse, ProviderCallError>
    if left > .milliseconds(1) {
      do {
        result = .success(try await call(method: "Mount", timeout: left, scrubber: scrubber) { client, budget in
          try await client.mount(request, timeout: budget)
        })
      } catch {
        result = .failure(error)
      }
    } else {
      result = .failure(ProviderCallError(provider: name, kind: .deadlineExceeded, detail: "no time left for the call after waiting to start"))
    }
    gate.release()
    return try result.get()
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
        if failure.kind == .unreachable { lookAgain = true }
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
    await coalescer?.close()
    client?.close()
    client = nil
    clientPath = nil
    let task = running
    running = nil
    await task?.value
  }

  private func currentClient() throws(ProviderCallError) -> ProviderClient {
    if let client, !lookAgain { return client }
    guard let path = socketPath() else {
      let dirs = settings.searchDirectories.joined(separator: ", ")
      throw ProviderCallError(provider: name, kind: .unreachable, detail: "no socket \(name).sock in \(dirs)")
    }
    lookAgain = false
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
    // Our deserializer failed on the provider's answer (its description names the
    // message and field, never a value).
    if let bad = rpc.cause as? ProtoFieldError {
      return ProviderCallError(provider: name, kind: .badResponse, detail: scrubber.scrub(bad.description))
    }
    if let bad = rpc.cause as? ProtoDecodingError {
      return ProviderCallError(provider: name, kind: .badResponse, detail: scrubber.scrub(bad.description))
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
///
/// The limits are per provider, not per connection: every loop's connection to a
/// provider passes the same ``ProviderGate`` (one concurrency limit, one token bucket,
/// one queue with first mounts ahead of refreshes, whichever loop they come from) and
/// offers its refreshes to the same ``RefreshCoalescer``.
public final class ProviderConnections: Sendable {
  /// What the connections of one provider on every loop share.
  public struct PerProvider: Sendable {
    public let gate: ProviderGate
    public let coalescer: RefreshCoalescer?

    /// Both run their timers on `loop`; the coalescer is an actor on it (refreshes
    /// from other loops hop there only when coalescing is on).
    public init(name: String, settings: ProviderSettings, loop: EventLoop) {
      gate = ProviderGate(limits: settings.gate, loop: loop)
      coalescer = settings.coalesceWindow > .zero ? RefreshCoalescer(provider: name, window: settings.coalesceWindow, loop: loop) : nil
    }
  }

  public let loops: EventLoopGroup
  public let settings: ProviderSettings
  let metrics: DriverMetrics?
  /// One table per loop, in the group's order.
  private let connections: [Locked<[String: ProviderConnection]>]
  /// Per provider, across loops.
  private let perProvider = Locked([String: PerProvider]())

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
      let c = ProviderConnection(
        name: provider, loop: loops.loops[loopIndex], settings: settings, metrics: metrics, shared: shared(provider))
      all[provider] = c
      return c
    }
  }

  /// The gate and coalescer of `provider`, made on first use (on loop 0).
  public func shared(_ provider: String) -> PerProvider {
    perProvider.withLock { all in
      if let p = all[provider] { return p }
      let p = PerProvider(name: provider, settings: settings, loop: loops.first)
      all[provider] = p
      return p
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
