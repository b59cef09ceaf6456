public import CSIMessages
import FoundationEssentials
import KubeClient
public import UVRuntime

/// What makes two refreshes the same request for the same identity: the provider, the
/// class parameters overlaid with the volume context (so the namespace, the service
/// account, the class name and any volume attributes), the `nodePublishSecretRef`
/// secrets, the set of token audiences, and the object versions the volume holds. Left
/// out are only what differs per pod of one identity: the pod's name and UID, its
/// tokens' values (their audiences stay in) and the target path.
///
/// The key holds secret material (the secrets, the parameters): it never prints it.
public struct CoalesceKey: Hashable, Sendable, CustomStringConvertible, CustomReflectable {
  private let material: [UInt8]

  public var description: String { "CoalesceKey(\(material.count) bytes)" }
  public var customMirror: Mirror { Mirror(self, children: [:]) }

  /// Volume-context keys that differ between pods of one identity.
  static let perPodKeys: Set<String> = [PodVolume.podNameKey, PodVolume.podUIDKey, PodVolume.tokensKey]

  private struct TokenEntry: Decodable {}

  /// nil when the refresh must not be shared: no service account known, or tokens
  /// that cannot be read (their audiences could not be compared).
  public init?(
    provider: String, parameters: [String: String], volumeContext: [String: String], secrets: [String: String],
    currentVersions: [Provider.ObjectVersion]
  ) {
    var attributes = parameters
    for (k, v) in volumeContext { attributes[k] = v }
    var secrets = secrets
    let tokens = secrets.removeValue(forKey: PodVolume.tokensKey) ?? attributes[PodVolume.tokensKey]
    guard let namespace = attributes[PodVolume.podNamespaceKey], !namespace.isEmpty,
      let serviceAccount = attributes[PodVolume.serviceAccountKey], !serviceAccount.isEmpty
    else { return nil }
    var audiences: [String] = []
    if let tokens {
      guard let entries = try? JSONDecoder().decode([String: TokenEntry].self, from: Data(tokens.utf8)) else { return nil }
      audiences = entries.keys.sorted()
    }
    var out: [UInt8] = []
    func field(_ s: String) {
      let bytes = Array(s.utf8)
      out += Array(String(bytes.count).utf8)
      out.append(UInt8(ascii: ":"))
      out += bytes
    }
    field("provider")
    field(provider)
    field("attributes")
    for (k, v) in attributes.sorted(by: { $0.key < $1.key }) where !Self.perPodKeys.contains(k) {
      field(k)
      field(v)
    }
    field("secrets")
    for (k, v) in secrets.sorted(by: { $0.key < $1.key }) {
      field(k)
      field(v)
    }
    field("audiences")
    audiences.forEach(field)
    field("versions")
    for v in currentVersions {
      field(v.id)
      field(v.version)
    }
    material = out
  }
}

/// Shares one provider call among refreshes that would send the same request for the
/// same identity (`CoalesceKey`) within `window` (`--rotation-coalesce-window`):
///
/// - the first refresh of a key calls the provider; refreshes of that key that arrive
///   while it is in flight wait for its answer;
/// - an answer that carries files is kept for `window` after it arrived and hands its
///   files to later refreshes of the key, each of which writes them into its own
///   volume; an answer with an error code is shared with those waiting (a throttled
///   store gets one call, not one per volume) but not kept;
/// - an answer without files and without an error (a provider that wrote the files
///   into the caller's target itself) cannot be handed to anyone: each waiting refresh
///   makes its own call;
/// - a failed call is shared with those waiting, not kept.
///
/// Kept answers hold secrets in memory: each is dropped when its window ends, and all
/// at `close()`.
public actor RefreshCoalescer {
  public typealias Call = @Sendable () async -> Result<Provider.MountResponse, ProviderCallError>

  /// Whose call answered a shared refresh, and when the answer arrived (monotonic):
  /// the volume counts as fetched then, and takes the leader's place in the schedule,
  /// so the volumes of one identity come due together and keep sharing.
  public struct Origin: Sendable, Hashable {
    public var leader: String
    public var answeredAt: Duration
  }

  /// How a refresh was answered.
  public enum Answer: Sendable {
    /// By its own call.
    case called(Result<Provider.MountResponse, ProviderCallError>)
    /// By another volume's call (a call saved).
    case shared(Result<Provider.MountResponse, ProviderCallError>, Origin)
  }

  private enum Shared: Sendable {
    case result(Result<Provider.MountResponse, ProviderCallError>, Origin)
    /// The answer cannot be handed on: call yourself.
    case callYourself
    /// The call ended before the wait began and its answer was not kept: start over.
    case lookAgain
  }

  private struct Waiter {
    var continuation: CheckedContinuation<Shared, Never>
    var timer: Task<Void, Never>?
  }

  private enum Entry {
    case inFlight(waiters: [Int: Waiter], leader: String)
    case kept(Provider.MountResponse, Origin, expiry: Task<Void, Never>)
  }

  public nonisolated let window: Duration
  nonisolated let provider: String
  nonisolated let loop: EventLoop
  public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
  private var entries: [CoalesceKey: Entry] = [:]
  private var nextID = 0
  private var closed = false
  /// Provider calls made and refreshes answered by another's call (tests).
  public private(set) var calls = 0
  public private(set) var saved = 0

  public init(provider: String, window: Duration, loop: EventLoop) {
    self.provider = provider
    self.window = window
    self.loop = loop
  }

  /// Answers are kept at most this many keys at once (a bound on memory, far above
  /// the identities one node serves).
  static let maxKept = 4096

  /// The refresh's answer: shared, or from `call`. `timeout` bounds the wait for
  /// another volume's call; the own call bounds itself.
  /// `target` is the refreshing volume (the leader, if it makes the call).
  public func refresh(_ key: CoalesceKey, target: String, timeout: Duration, call: Call) async -> Answer {
    while true {
      switch entries[key] {
      case .kept(let response, let origin, _):
        saved += 1
        return .shared(.success(response), origin)
      case .inFlight:
        switch await join(key, timeout: timeout) {
        case .result(let result, let origin):
          saved += 1
          return .shared(result, origin)
        case .callYourself:
          calls += 1
          return .called(await call())
        case .lookAgain:
          continue
        }
      case nil:
        // In flight before the first `await`: a caller arriving meanwhile waits for it.
        entries[key] = .inFlight(waiters: [:], leader: target)
        calls += 1
        return .called(await lead(key, target: target, call: call))
      }
    }
  }

  /// Waits for the answer of the call in flight for `key`.
  ///
  /// The `await` below is a suspension point before the body runs, and for callers from
  /// another loop it really suspends: the loop runs this actor's jobs with itself as the
  /// task executor, the caller's task prefers its own loop's, so the runtime puts the
  /// task back in this loop's queue, and the call in flight may answer meanwhile. So the
  /// body looks at the entry again: an answer kept by then is taken (it is this call's
  /// answer); none (it was not kept) sends the caller back to look again, as a refresh
  /// arriving just after the answer would.
  private func join(_ key: CoalesceKey, timeout: Duration) async -> Shared {
    nextID += 1
    let id = nextID
    return await withCheckedContinuation { (c: CheckedContinuation<Shared, Never>) in
      switch entries[key] {
      case .inFlight(var waiters, let leader):
        let timer = Task { [loop] in
          do { try await loop.sleep(milliseconds: max(1, timeout.timerMilliseconds)) } catch { return }
          self.timedOut(key, id)
        }
        waiters[id] = Waiter(continuation: c, timer: timer)
        entries[key] = .inFlight(waiters: waiters, leader: leader)
      case .kept(let response, let origin, _):
        c.resume(returning: .result(.success(response), origin))
      case nil:
        c.resume(returning: .lookAgain)
      }
    }
  }

  /// Makes the call for `key`, already marked in flight, and hands its answer to those
  /// waiting (and keeps it, when it carries files, for `window`).
  private func lead(_ key: CoalesceKey, target: String, call: Call) async -> Result<Provider.MountResponse, ProviderCallError> {
    let result = await call()
    let origin = Origin(leader: target, answeredAt: KubeClient.monotonicNow())
    let waiters: [Int: Waiter]
    if case .inFlight(let w, _) = entries[key] { waiters = w } else { waiters = [:] }
    let shareable: Bool
    switch result {
    case .success(let response): shareable = !response.files.isEmpty || !(response.error?.code.isEmpty ?? true)
    case .failure: shareable = true
    }
    if !closed, case .success(let response) = result, !response.files.isEmpty, window > .zero,
      entries.count <= Self.maxKept
    {
      entries[key] = .kept(response, origin, expiry: expire(key))
    } else {
      entries[key] = nil
    }
    for waiter in waiters.values {
      waiter.timer?.cancel()
      waiter.continuation.resume(returning: shareable ? .result(result, origin) : .callYourself)
    }
    return result
  }

  /// Keys with an answer kept or a call in flight (tests).
  public var keys: Int { entries.count }

  /// Refreshes waiting for another volume's call (tests).
  public var waiting: Int {
    entries.values.reduce(0) { n, entry in
      if case .inFlight(let waiters, _) = entry { n + waiters.count } else { n }
    }
  }

  /// Drops every kept answer and stops their timers (shutdown); waiters call themselves.
  public func close() {
    closed = true
    for (_, entry) in entries {
      switch entry {
      case .kept(_, _, let expiry): expiry.cancel()
      case .inFlight: break  // its caller finishes and wakes them
      }
    }
    entries = entries.filter { if case .inFlight = $0.value { true } else { false } }
  }

  private func expire(_ key: CoalesceKey) -> Task<Void, Never> {
    Task { [loop, window] in
      do { try await loop.sleep(milliseconds: max(1, window.timerMilliseconds)) } catch { return }
      self.dropKept(key)
    }
  }

  private func dropKept(_ key: CoalesceKey) {
    if case .kept = entries[key] { entries[key] = nil }
  }

  private func timedOut(_ key: CoalesceKey, _ id: Int) {
    guard case .inFlight(var waiters, let leader) = entries[key], let waiter = waiters.removeValue(forKey: id) else { return }
    entries[key] = .inFlight(waiters: waiters, leader: leader)
    let failure = ProviderCallError(provider: provider, kind: .deadlineExceeded, detail: "waited too long for an identical call")
    waiter.continuation.resume(returning: .result(.failure(failure), Origin(leader: leader, answeredAt: KubeClient.monotonicNow())))
  }
}
