import UVRuntime

/// A list+watch cache of one resource (optionally one namespace and a label selector):
/// lists once, then follows a watch from the list's resourceVersion with bookmarks.
/// A watch that ends is resumed from the last resourceVersion seen; a 410 Gone (the
/// version was compacted away) leads to a fresh list. Failures back off exponentially
/// (up to `maxBackoff`) and the cache keeps serving what it has meanwhile.
///
/// Reads never wait for the API: `object(namespace:name:)` answers from memory.
public final class KubeInformer<T: KubeObject>: Sendable {
  public struct Key: Hashable, Sendable {
    public var namespace: String
    public var name: String
    public init(namespace: String, name: String) {
      self.namespace = namespace
      self.name = name
    }
  }

  /// What the cache saw change, for those who react to it (on-demand refresh).
  public enum Change: Sendable {
    case upserted(T)
    case deleted(T)
  }

  private struct State {
    var objects: [Key: T] = [:]
    var resourceVersion = ""
    var synced = false
    var syncWaiters: [CheckedContinuation<Void, Never>] = []
    var lists = 0
    var watches = 0
  }

  let client: KubeClient
  let namespace: String?
  let labelSelector: String?
  let maxBackoff: Duration
  private let state = Locked(State())
  private let onChange: (@Sendable (Change) -> Void)?

  public init(
    client: KubeClient, namespace: String? = nil, labelSelector: String? = nil, maxBackoff: Duration = .seconds(30),
    onChange: (@Sendable (Change) -> Void)? = nil
  ) {
    self.client = client
    self.namespace = namespace
    self.labelSelector = labelSelector
    self.maxBackoff = maxBackoff
    self.onChange = onChange
  }

  public func object(namespace: String, name: String) -> T? {
    state.withLock { $0.objects[Key(namespace: namespace, name: name)] }
  }

  public var count: Int { state.withLock { $0.objects.count } }
  public var isSynced: Bool { state.withLock { $0.synced } }
  /// Lists and watches started so far (a cost counter for tests and metrics).
  public var requestCounts: (lists: Int, watches: Int) { state.withLock { ($0.lists, $0.watches) } }

  /// Returns once the first list has landed.
  public func waitUntilSynced() async {
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
      let ready = state.withLock { s -> Bool in
        if s.synced { return true }
        s.syncWaiters.append(c)
        return false
      }
      if ready { c.resume() }
    }
  }

  /// Puts an object read directly (a lookup that missed the cache) into the cache,
  /// unless the cache already holds a newer one.
  public func remember(_ object: T) {
    guard let name = object.metadata.name else { return }
    let key = Key(namespace: object.metadata.namespace ?? "", name: name)
    state.withLock { s in
      if let old = s.objects[key], Self.newer(old, than: object) { return }
      s.objects[key] = object
    }
  }

  /// Runs until the task is cancelled.
  public func run() async {
    var backoff = Duration.milliseconds(200)
    var needList = true
    while !Task.isCancelled {
      do {
        if needList {
          try await relist()
          needList = false
        }
        let rv = state.withLock { s -> String in
          s.watches += 1
          return s.resourceVersion
        }
        let events = try await client.watch(T.self, namespace: namespace, labelSelector: labelSelector, resourceVersion: rv)
        for try await event in events {
          if case .error(let status) = event {
            if status.code == 410 { needList = true }
            throw KubeError(code: status.code ?? 0, status: status)
          }
          apply(event)
          backoff = .milliseconds(200)
        }
      } catch let error as KubeError where error.isGone {
        needList = true
        continue  // re-list at once: nothing is wrong with the server
      } catch {
        if Task.isCancelled { return }
        try? await client.loop.sleep(milliseconds: backoff.timerMilliseconds)
        backoff = min(backoff * 2, maxBackoff)
      }
    }
  }

  private func relist() async throws {
    state.withLock { $0.lists += 1 }
    let list = try await client.list(T.self, namespace: namespace, labelSelector: labelSelector)
    var fresh: [Key: T] = [:]
    for item in list.items {
      guard let name = item.metadata.name else { continue }
      fresh[Key(namespace: item.metadata.namespace ?? "", name: name)] = item
    }
    let (waiters, removed) = state.withLock { s -> ([CheckedContinuation<Void, Never>], [T]) in
      let removed = s.objects.filter { fresh[$0.key] == nil }.map(\.value)
      s.objects = fresh
      s.resourceVersion = list.metadata.resourceVersion ?? ""
      s.synced = true
      defer { s.syncWaiters = [] }
      return (s.syncWaiters, removed)
    }
    for waiter in waiters { waiter.resume() }
    if let onChange {
      for object in removed { onChange(.deleted(object)) }
      for object in list.items { onChange(.upserted(object)) }
    }
  }

  private func apply(_ event: WatchEvent<T>) {
    switch event {
    case .added(let object), .modified(let object):
      guard let name = object.metadata.name else { return }
      state.withLock { s in
        s.objects[Key(namespace: object.metadata.namespace ?? "", name: name)] = object
        if let rv = object.metadata.resourceVersion { s.resourceVersion = rv }
      }
      onChange?(.upserted(object))
    case .deleted(let object):
      guard let name = object.metadata.name else { return }
      state.withLock { s in
        s.objects[Key(namespace: object.metadata.namespace ?? "", name: name)] = nil
        if let rv = object.metadata.resourceVersion { s.resourceVersion = rv }
      }
      onChange?(.deleted(object))
    case .bookmark(let rv):
      state.withLock { $0.resourceVersion = rv }
    case .error:
      break
    }
  }

  /// resourceVersions are opaque strings; equal-length decimal ones (etcd's) compare as numbers.
  static func newer(_ a: T, than b: T) -> Bool {
    guard let x = a.metadata.resourceVersion.flatMap(UInt64.init), let y = b.metadata.resourceVersion.flatMap(UInt64.init) else {
      return false
    }
    return x > y
  }
}
