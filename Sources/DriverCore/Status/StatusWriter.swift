public import KubeClient
public import Logging
public import UVRuntime

/// What one mounted volume looks like in its SecretProviderClassPodStatus.
public struct PodVolumeStatus: Sendable, Equatable {
  public var targetPath: String
  public var podName: String
  public var podNamespace: String
  public var podUID: String
  public var className: String
  public var objects: [SecretProviderClassPodStatusObject.ObjectVersion]
  /// The class's `secretObjects`, built from this mount's content.
  public var secrets: [SyncedSecret]
  /// True when this write follows a refresh that changed content (events say "rotation").
  public var rotated: Bool
  /// The class's provider: the `provider` label of `sync_k8s_secret_total`.
  public var provider: String

  public init(
    targetPath: String, podName: String, podNamespace: String, podUID: String, className: String,
    objects: [SecretProviderClassPodStatusObject.ObjectVersion], secrets: [SyncedSecret] = [], rotated: Bool = false,
    provider: String = ""
  ) {
    self.provider = provider
    self.targetPath = targetPath
    self.podName = podName
    self.podNamespace = podNamespace
    self.podUID = podUID
    self.className = className
    self.objects = objects
    self.secrets = secrets
    self.rotated = rotated
  }
}

/// Writes SecretProviderClassPodStatus objects, and then the Secrets of the class's
/// `secretObjects` (owned by that status object), without making a publish wait: each
/// volume has a queue of one (the latest wanted state wins), worked on by one task that
/// retries with backoff until the write lands or the volume is gone. The usual publish
/// costs one request (a create); an existing object costs a read and an update.
public actor StatusWriter {
  enum Wanted: Equatable {
    case present(PodVolumeStatus)
    case absent
  }

  let client: KubeClient
  let nodeName: String
  let logger: Logger
  let events: EventRecorder?
  let sync: SecretSync
  let metrics: DriverMetrics?
  nonisolated let loop: EventLoop
  public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

  private var wanted: [String: Wanted] = [:]  // by target path
  private var written: [String: Wanted] = [:]
  private var names: [String: (name: String, namespace: String)] = [:]
  /// Targets with a write to make: waiting for a worker in `ready` (FIFO), or being worked on.
  private var working: Set<String> = []
  private var ready: [String] = []
  private var active = 0
  /// Writes in flight at once: a burst of first mounts (or a drain) becomes a steady stream
  /// of requests instead of a thousand at once, which bounds the driver's memory (every
  /// request in flight holds buffers in libcurl) and is kind to the API server.
  static let maxConcurrentWrites = 16
  private var idleWaiters: [CheckedContinuation<Void, Never>] = []
  /// Writes that failed and were retried (a counter for metrics and tests).
  public private(set) var retries = 0

  public init(
    client: KubeClient, nodeName: String, loop: EventLoop, logger: Logger, events: EventRecorder? = nil, metrics: DriverMetrics? = nil
  ) {
    self.metrics = metrics
    self.client = client
    self.events = events
    self.sync = SecretSync(client: client)
    self.nodeName = nodeName
    self.loop = loop
    self.logger = logger
  }

  /// The latest wanted state per target, handed over from any thread. Tasks that carry
  /// the hand-over may run in any order; the inbox keeps only the latest state, so a
  /// quick publish-then-unpublish can never end with the object present.
  private nonisolated let inbox = Locked<[String: Wanted]>([:])

  /// The volume is mounted with these versions: create or update its object.
  public nonisolated func mounted(_ status: PodVolumeStatus) {
    post(.present(status), for: status.targetPath)
  }

  /// The volume is gone: delete its object.
  public nonisolated func unmounted(targetPath: String) {
    post(.absent, for: targetPath)
  }

  private nonisolated func post(_ state: Wanted, for target: String) {
    inbox.withLock { $0[target] = state }
    Task { await self.drainInbox() }
  }

  private func drainInbox() {
    let states = inbox.withLock { inbox -> [String: Wanted] in
      defer { inbox = [:] }
      return inbox
    }
    for (target, state) in states { want(state, for: target) }
  }

  /// No write is queued or in flight.
  public var isIdle: Bool { working.isEmpty }

  /// Returns when every queued write has landed (tests, graceful shutdown).
  public func waitUntilIdle() async {
    if working.isEmpty { return }
    await withCheckedContinuation { idleWaiters.append($0) }
  }

  func want(_ state: Wanted, for target: String) {
    wanted[target] = state
    guard !working.contains(target) else { return }
    working.insert(target)
    ready.append(target)
    startWorkers()
  }

  private func startWorkers() {
    while active < Self.maxConcurrentWrites, !ready.isEmpty {
      let target = ready.removeFirst()
      active += 1
      Task { await self.work(target) }
    }
  }

  private func work(_ target: String) async {
    var backoff = Duration.milliseconds(200)
    while let state = wanted[target], state != written[target] {
      do {
        try await write(state, target: target)
        written[target] = state
        backoff = .milliseconds(200)
      } catch {
        retries += 1
        logger.info(
          "SecretProviderClassPodStatus write failed, retrying",
          metadata: ["target": "\(target)", "error": "\(error)", "retry_in_ms": "\(backoff.timerMilliseconds)"])
        try? await loop.sleep(milliseconds: backoff.timerMilliseconds)
        backoff = min(backoff * 2, .seconds(30))
      }
    }
    if wanted[target] == .absent {
      wanted[target] = nil
      written[target] = nil
      names[target] = nil
    }
    working.remove(target)
    active -= 1
    startWorkers()
    if working.isEmpty {
      let waiters = idleWaiters
      idleWaiters = []
      for w in waiters { w.resume() }
    }
  }

  private func write(_ state: Wanted, target: String) async throws {
    switch state {
    case .absent:
      guard let (name, namespace) = names[target] else { return }  // never written
      try await client.delete(SecretProviderClassPodStatusObject.self, namespace: namespace, name: name)
    case .present(let status):
      let written: SecretProviderClassPodStatusObject
      if let (name, _) = names[target] {
        written = try await upsert(status, name: name)!
      } else {
        let plain = PodStatusNaming.plainName(pod: status.podName, namespace: status.podNamespace, spc: status.className)
        if plain.utf8.count <= PodStatusNaming.maxNameLength, let object = try await upsert(status, name: plain, unlessOtherTarget: true) {
          names[target] = (plain, status.podNamespace)
          written = object
        } else {
          let hashed = PodStatusNaming.hashedName(
            pod: status.podName, namespace: status.podNamespace, spc: status.className, targetPath: status.targetPath)
          written = try await upsert(status, name: hashed)!
          names[target] = (hashed, status.podNamespace)
        }
      }
      try await syncSecrets(status, owner: written)
    }
  }

  /// The class's Secrets, each owned by this volume's status object. A Secret the driver
  /// does not manage, or a class that names objects that were not mounted, is reported
  /// (event and log) and not retried; API failures are retried with the status write.
  private func syncSecrets(_ status: PodVolumeStatus, owner: SecretProviderClassPodStatusObject) async throws {
    guard !status.secrets.isEmpty, let name = owner.metadata.name, let uid = owner.metadata.uid else { return }
    let reference = OwnerReference(apiVersion: SecretProviderClassPodStatusObject.resource.apiVersion, kind: "SecretProviderClassPodStatus", name: name, uid: uid)
    let pod = EventRecorder.Pod(name: status.podName, namespace: status.podNamespace, uid: status.podUID)
    let started = ContinuousClock.now
    var synced = 0
    defer { metrics?.secretsSynced(synced, provider: status.provider, since: started) }
    for secret in status.secrets {
      let outcome: SecretSync.Outcome
      do {
        outcome = try await sync.apply(secret, owner: reference)
      } catch let error as SyncError {
        logger.error("Secret not synced", metadata: ["secret": "\(secret.namespace)/\(secret.name)", "error": "\(error)"])
        // After a rotation, upstream's rotation reason: the Secret now lags the mounted content.
        await events?.record(pod, warning: true, reason: status.rotated ? "SecretRotationFailed" : "SecretSyncFailed", message: error.message)
        continue
      }
      switch outcome {
      case .notManaged:
        let message = "Secret \(secret.namespace)/\(secret.name) exists and is not managed by the driver (no label \(SyncedSecret.managedLabel)=true): left unchanged"
        logger.error("Secret not synced", metadata: ["secret": "\(secret.namespace)/\(secret.name)", "reason": "not managed"])
        await events?.record(pod, warning: true, reason: "SecretNotManaged", message: message)
      case .updated where status.rotated:
        await events?.record(pod, warning: false, reason: "SecretRotationComplete", message: "Secret \(secret.namespace)/\(secret.name) updated with rotated content")
      case .created, .updated, .unchanged:
        break
      }
      if outcome != .notManaged { synced += 1 }  // in step with the mount, as upstream counts
    }
  }

  /// Creates the object, or updates the one there, and returns what the server holds.
  /// With `unlessOtherTarget`, returns nil (writing nothing) when the existing object
  /// records another volume of the same pod.
  private func upsert(_ status: PodVolumeStatus, name: String, unlessOtherTarget: Bool = false) async throws
    -> SecretProviderClassPodStatusObject?
  {
    let object = makeObject(status, name: name)
    do {
      return try await client.create(object)
    } catch let error as KubeError where error.isAlreadyExists {
      var otherTarget = false
      let current = try await client.modify(SecretProviderClassPodStatusObject.self, namespace: status.podNamespace, name: name) {
        existing in
        let samePod = existing.metadata.ownerReferences?.contains { $0.uid == status.podUID } ?? false
        if unlessOtherTarget, samePod, let recorded = existing.status?.targetPath, recorded != status.targetPath {
          otherTarget = true
          return false
        }
        if existing.status == object.status && existing.metadata.labels == object.metadata.labels
          && existing.metadata.ownerReferences == object.metadata.ownerReferences
        {
          return false
        }
        existing.status = object.status
        existing.metadata.labels = object.metadata.labels
        existing.metadata.ownerReferences = object.metadata.ownerReferences
        return true
      }
      return otherTarget ? nil : current
    }
  }

  func makeObject(_ status: PodVolumeStatus, name: String) -> SecretProviderClassPodStatusObject {
    SecretProviderClassPodStatusObject(
      metadata: ObjectMeta(
        name: name, namespace: status.podNamespace,
        labels: [
          PodStatusNaming.nodeLabel: PodStatusNaming.labelValue(nodeName),
          PodStatusNaming.podUIDLabel: PodStatusNaming.labelValue(status.podUID),
          PodStatusNaming.podNameLabel: PodStatusNaming.labelValue(status.podName),
          PodStatusNaming.classLabel: PodStatusNaming.labelValue(status.className),
        ],
        ownerReferences: [OwnerReference(apiVersion: "v1", kind: "Pod", name: status.podName, uid: status.podUID)]),
      status: .init(
        podName: status.podName, secretProviderClassName: status.className, mounted: true, targetPath: status.targetPath,
        objects: status.objects))
  }
}
