import CSIMessages
import Glibc
public import Logging
public import UVRuntime
import KubeClient
import VolumeFiles

/// How volumes are mounted and refreshed (from flags).
public struct VolumeSettings: Sendable, Hashable {
  /// `--enable-secret-rotation`: republishes refresh content once it is due.
  public var rotationEnabled: Bool
  /// `--rotation-poll-interval`: a volume is due this long after its last successful fetch.
  public var rotationPollInterval: Duration
  /// `--rotation-min-interval`: no class may ask for a shorter interval than this.
  public var rotationMinInterval: Duration
  /// tmpfs `size=`; room for the old and the new content during an update.
  public var tmpfsSizeBytes: Int
  /// The provider-call budget when kubelet sends no deadline.
  public var defaultCallTimeout: Duration
  /// `--rotation-backoff-base`, `--rotation-backoff-max`: a failed refresh's class and
  /// identity wait this long, doubling per failed round up to the maximum.
  public var rotationBackoffBase: Duration = .seconds(5)
  public var rotationBackoffMax: Duration = .seconds(300)
  /// The source name of the volumes' tmpfs mounts in the mount table: the driver's name,
  /// so that a restarted driver tells its volumes from other tmpfs mounts.
  public var mountSource: String = DriverConfig.defaultDriverName
  /// `--kubelet-root-dir`: every target lies under `<this>/pods` and is reached from it
  /// with openat2 (no symlinks). `Driver` sets it from `DriverConfig.kubeletRootDir`.
  public var kubeletRootDir: String

  public init(
    rotationEnabled: Bool = false,
    rotationPollInterval: Duration = .seconds(120),
    rotationMinInterval: Duration = .seconds(10),
    tmpfsSizeBytes: Int = 16 << 20,
    defaultCallTimeout: Duration = .seconds(100),
    kubeletRootDir: String = DriverConfig.defaultKubeletRootDir
  ) {
    self.kubeletRootDir = kubeletRootDir
    self.rotationEnabled = rotationEnabled
    self.rotationPollInterval = rotationPollInterval
    self.rotationMinInterval = rotationMinInterval
    self.tmpfsSizeBytes = tmpfsSizeBytes
    self.defaultCallTimeout = defaultCallTimeout
  }
}

/// Everything a volume needs from the rest of the driver.
public struct VolumeEnvironment: Sendable {
  public var classes: any SecretProviderClassSource
  public var providers: ProviderConnections
  public var settings: VolumeSettings
  public var logger: Logger
  public var now: @Sendable () -> ContinuousClock.Instant
  /// In a cluster: SecretProviderClassPodStatus objects and synced Secrets (nil standalone).
  public var status: StatusWriter?
  /// In a cluster: events on the pod (nil standalone).
  public var events: EventRecorder?
  /// With rotation on: the timer that refreshes volumes when they are due.
  public var rotation: RotationScheduler?
  public var metrics: DriverMetrics
  /// `--state-dir`: a record per volume, so a restarted driver keeps serving it (nil: none kept).
  public var state: VolumeStateStore?

  public init(
    classes: any SecretProviderClassSource, providers: ProviderConnections, settings: VolumeSettings, logger: Logger,
    now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }, status: StatusWriter? = nil,
    events: EventRecorder? = nil, rotation: RotationScheduler? = nil, metrics: DriverMetrics = DriverMetrics()
  ) {
    self.rotation = rotation
    self.classes = classes
    self.providers = providers
    self.settings = settings
    self.logger = logger
    self.now = now
    self.status = status
    self.events = events
    self.metrics = metrics
  }
}

/// What a successful NodePublishVolume did.
public enum PublishOutcome: Sendable, Hashable {
  /// First mount: tmpfs mounted and content written.
  case mounted
  /// Republish that fetched from the provider; `changed` says whether files moved.
  case refreshed(changed: Bool)
  /// Republish before the volume was due (or with rotation off): nothing done.
  case upToDate
  /// Republish whose refresh failed: the old content stays, the failure is logged.
  case refreshFailed(PublishError)
}

/// The only code that mounts, writes, refreshes or unmounts one target path.
/// Requests for the target run one at a time, in arrival order; different
/// targets have different actors and proceed in parallel.
public actor VolumeActor {
  public nonisolated let targetPath: String
  nonisolated let loop: EventLoop

  /// What this driver process mounted here, or recovered after a restart.
  struct Record {
    /// What the provider last returned, sent back as current_object_version.
    var versions: [Provider.ObjectVersion]
    /// Last successful provider fetch; nil when recovered after a restart.
    var lastFetch: ContinuousClock.Instant?
    /// kubelet's latest publish of this volume (its tokens and secrets): what a
    /// timer-driven refresh sends, while the tokens are valid.
    var request: ValidPublishRequest? = nil
    /// The class's own interval, when it sets one (seen at the last fetch).
    var interval: Duration? = nil
  }

  private var record: Record?
  /// `volumeTarget(_:)`, once made.
  private var target: VolumeTarget?
  /// The pod's fsGroup from the latest publish (volume_mount_group), for the writer.
  private var mountGroup: UInt32?
  /// The provider of the last class this volume resolved ("" before one resolves): the metrics' `provider` label.
  var lastProvider = ""
  private var busy = false
  private var waiters: [CheckedContinuation<Void, Never>] = []
  /// The refresh holding this volume's lock while it waits for its provider: an
  /// unpublish, or a republish with new tokens, ends that wait at once (the refresh
  /// then writes nothing) instead of queueing behind a hung provider.
  private var refreshWait: RefreshWait?
  /// A due refresh was abandoned for a republish with new tokens: that republish
  /// refreshes whatever the interval says (the volume left the rotation plan when it
  /// came due, and only a refresh puts it back).
  private var refreshOwed = false

  public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

  /// Requests in flight across all volumes (shared with the registry).
  nonisolated let activity: VolumeActivity

  public init(targetPath: String, loop: EventLoop, activity: VolumeActivity = VolumeActivity()) {
    self.targetPath = targetPath
    self.loop = loop
    self.activity = activity
  }

  /// A volume an earlier run of the driver mounted and recorded, found mounted with
  /// content at startup: served from here on as if this run had mounted it.
  init(targetPath: String, loop: EventLoop, activity: VolumeActivity, adopting adopted: AdoptedVolume) {
    self.targetPath = targetPath
    self.loop = loop
    self.activity = activity
    record = Record(versions: adopted.versions, lastFetch: adopted.lastFetch, request: adopted.request, interval: adopted.interval)
    lastProvider = adopted.provider
  }

  /// True when nothing is mounted here as far as this actor knows.
  var isIdle: Bool { record == nil && !busy && waiters.isEmpty }

  // MARK: one request at a time

  private func acquire() async {
    if !busy {
      busy = true
      return
    }
    await withCheckedContinuation { waiters.append($0) }
  }

  private func release() {
    if waiters.isEmpty {
      busy = false
    } else {
      waiters.removeFirst().resume()  // hand over without clearing `busy`
    }
  }

  // MARK: publish

  /// `valid` has passed `NodeService.validate`: nothing is checked again under the lock.
  public func publish(
    _ valid: ValidPublishRequest, deadline: ContinuousClock.Instant?, env: VolumeEnvironment
  ) async throws(PublishError) -> PublishOutcome {
    if let refreshWait, let kept = record?.request, Self.tokens(of: valid) != Self.tokens(of: kept) {
      // New tokens: the refresh in flight asks with the old ones; this republish asks again.
      refreshWait.abandon()
      refreshOwed = true
    }
    await acquire()
    defer { release() }
    let (request, pod) = (valid.csi, valid.pod)
    mountGroup = valid.mountGroup
    let target = try volumeTarget(env)
    let mounted: Bool
    do {
      mounted = try target.isMountPoint()
    } catch {
      throw targetError("cannot read the mount table for \(targetPath)", error)
    }
    if mounted, try hasContent(target) {
      if record == nil {
        // Mounted by an earlier run of the driver: adopt it; its age is unknown, so it is due.
        record = Record(versions: [], lastFetch: nil)
      }
      if let adopted = record, adopted.request == nil, let lastFetch = adopted.lastFetch {
        // Adopted at startup without the tokens it needs: the timer may refresh it from now on.
        scheduleAdopted(valid, lastFetch: lastFetch, interval: adopted.interval, env: env)
      }
      record?.request = valid  // fresh tokens for the timer's refreshes
      return await republish(request, pod: pod, deadline: deadline, env: env)
    }
    if mounted {
      // A tmpfs without content: an earlier run stopped mid-publish. Start over.
      try unmountAll(target)
    }
    record = nil
    try await firstMount(request, pod: pod, deadline: deadline, env: env)
    return .mounted
  }

  /// Whether the writer's `..data` link is there.
  private nonisolated func hasContent(_ target: VolumeTarget) throws(PublishError) -> Bool {
    do {
      return try target.hasEntry("..data")
    } catch {
      throw targetError("cannot inspect the volume at \(targetPath)", error)
    }
  }

  /// The target beneath the kubelet root, reached without symlinks. `NodeService`
  /// already checked that the path lies under `<root>/pods`. Made once per volume:
  /// the path and the root never change, and a publish needs it several times.
  func volumeTarget(_ env: VolumeEnvironment) throws(PublishError) -> VolumeTarget {
    if let target, target.root == env.settings.kubeletRootDir { return target }
    guard let made = VolumeTarget(path: targetPath, under: env.settings.kubeletRootDir) else {
      throw PublishError.invalidArgument("target_path \(targetPath.debugDescription) is not under \(env.settings.kubeletRootDir)")
    }
    target = made
    return made
  }

  /// A target that leads out of the kubelet root (through a symlink) is the caller's
  /// mistake: INVALID_ARGUMENT; anything else is a mount point failure.
  nonisolated func targetError(_ what: String, _ error: any Error) -> PublishError {
    if let error = error as? PublishError { return error }
    if let error = error as? VolumeFileError, case .escapesRoot = error.kind {
      return PublishError.invalidArgument("target_path refused: \(error)")
    }
    return PublishError(.mountPoint, "\(what): \(error)")
  }

  private func firstMount(
    _ request: CSI.NodePublishVolumeRequest, pod: PodVolume, deadline: ContinuousClock.Instant?, env: VolumeEnvironment
  ) async throws(PublishError) {
    let t0 = ContinuousClock.now
    let spc = try await resolveClass(pod, env: env, scrubber: SecretScrubber(publishing: request))
    let t1 = ContinuousClock.now
    let size = env.settings.tmpfsSizeBytes
    let source = env.settings.mountSource
    let target = try volumeTarget(env)
    // With an fsGroup the volume root is the group's too (0o2755, as kubelet's rule for dirs).
    let group = mountGroup
    let created = try await onPool { [self] () throws(PublishError) -> [String] in
      do {
        // Removes what it created when the mount fails.
        return try target.makeDirectoryAndMountTmpfs(
          sizeBytes: size, mode: group == nil ? 0o755 : 0o2755, group: group, source: source)
      } catch {
        if let error = error as? VolumeFileError, case .system(let call, _, _) = error.kind, call.hasPrefix("mount") {
          throw targetError("cannot mount tmpfs at \(targetPath)", error)
        }
        throw targetError("cannot create \(targetPath)", error)
      }
    }
    let t2 = ContinuousClock.now
    do {
      let (versions, _, files, _) = try await fetchAndWrite(
        request, spc: spc, currentVersions: [], deadline: deadline, env: env, priority: .firstMount)
      if env.logger.logLevel <= .debug {
        let ms = LoggingInterceptor.milliseconds
        env.logger.debug(
          "first mount phases",
          metadata: ["target": "\(targetPath)", "class_ms": "\(ms(t1 - t0))", "mount_ms": "\(ms(t2 - t1))", "fetch_write_ms": "\(ms(ContinuousClock.now - t2))"])
      }
      record = Record(
        versions: versions, lastFetch: env.now(), request: ValidPublishRequest(csi: request, pod: pod, mountGroup: mountGroup),
        interval: spc.rotationInterval)
      await saveState(ValidPublishRequest(csi: request, pod: pod, mountGroup: mountGroup), spc: spc, versions: versions, files: files, env: env)
      report(pod: pod, spc: spc, versions: versions, files: files, rotated: false, env: env)
      scheduleNext(pod: pod, spc: spc, request: request, env: env)
    } catch {
      // Fail closed: no tmpfs, no directory, so kubelet's retry starts clean
      // and no pod starts on an empty or partial volume.
      do {
        try await onPool { [self] () throws(PublishError) in
          try unmountAll(target)
          target.removeCreated(created)
        }
      } catch let cleanup {
        env.logger.error("cannot clean up after a failed mount", metadata: ["target": "\(targetPath)", "error": "\(cleanup)"])
      }
      throw error
    }
  }

  private func republish(
    _ request: CSI.NodePublishVolumeRequest, pod: PodVolume, deadline: ContinuousClock.Instant?, env: VolumeEnvironment
  ) async -> PublishOutcome {
    // Without rotation, mounted content never changes (as upstream), even for a
    // volume adopted after a restart.
    guard let current = record, env.settings.rotationEnabled else {
      if record?.lastFetch == nil, let status = env.status {
        // Adopted after a restart: make sure its status object exists (no versions known).
        status.mounted(PodVolumeStatus(
          targetPath: targetPath, podName: pod.podName, podNamespace: pod.podNamespace, podUID: pod.podUID,
          className: pod.secretProviderClass, objects: []))
      }
      return .upToDate
    }
    let interval = current.interval.map { max($0, env.settings.rotationMinInterval) } ?? env.settings.rotationPollInterval
    let owed = refreshOwed
    refreshOwed = false
    if !owed, let last = current.lastFetch, env.now() - last < interval {
      return .upToDate
    }
    if let rotation = env.rotation, rotation.isBackingOff(key: Self.backoffKey(pod)) {
      // Its class and identity are backing off after failed refreshes: no call to the
      // store; the last good content stays and kubelet gets success (as after a failed
      // refresh). The timer retries when the backoff ends.
      return .upToDate
    }
    return await refresh(request, pod: pod, deadline: deadline, env: env)
  }

  /// A refresh the rotation scheduler started: the volume is due by its timer, or its
  /// class asked for one (`trigger`). Answers whether it succeeded; false too when there
  /// is nothing to refresh with (unmounted, no request kept).
  public func refreshDue(env: VolumeEnvironment, trigger: RotationScheduler.Trigger = .timer) async -> Bool {
    await acquire()
    defer { release() }
    guard let current = record, let valid = current.request else { return false }
    mountGroup = valid.mountGroup
    let target: VolumeTarget
    do {
      target = try volumeTarget(env)
    } catch {
      return false
    }
    guard (try? target.isMountPoint()) == true, (try? hasContent(target)) == true else {
      // Unmounted behind this driver's back (or by the driver it took over from): never
      // write where no tmpfs is; forget the volume.
      record = nil
      env.rotation?.noteGone(target: targetPath)
      return false
    }
    // The provider call timeout (gate wait included): docs/rotation-and-sync.md.
    let timeout = env.providers.settings.callTimeout
    let started = ContinuousClock.now
    let outcome = await refresh(valid.csi, pod: valid.pod, deadline: started + timeout, env: env)
    env.metrics.rotationReconciled(outcome, provider: lastProvider, target: targetPath, since: started, trigger: trigger.rawValue)
    switch outcome {
    case .refreshed: return true
    default: return false
    }
  }

  /// The one refresh path, for a republish that is due and for the timer: fetch,
  /// rewrite only what changed, report, schedule the next one. A failure keeps the
  /// mounted content and answers `.refreshFailed`.
  private func refresh(
    _ request: CSI.NodePublishVolumeRequest, pod: PodVolume, deadline: ContinuousClock.Instant?, env: VolumeEnvironment
  ) async -> PublishOutcome {
    guard var current = record else { return .upToDate }
    let wait = RefreshWait()
    refreshWait = wait
    defer { if refreshWait === wait { refreshWait = nil } }
    do {
      let spc = try await resolveClass(pod, env: env, scrubber: SecretScrubber(publishing: request))
      let (versions, changed, files, origin) = try await fetchAndWrite(
        request, spc: spc, currentVersions: current.versions, deadline: deadline, env: env, priority: .refresh, wait: wait)
      let adopted = current.lastFetch == nil
      let versionsMoved = versions != current.versions
      current.versions = versions
      current.lastFetch = env.now()
      current.interval = spc.rotationInterval
      record = current
      await saveState(ValidPublishRequest(csi: request, pod: pod, mountGroup: mountGroup), spc: spc, versions: versions, files: files, env: env)
      if changed || adopted || versionsMoved {
        report(pod: pod, spc: spc, versions: versions, files: files, rotated: changed, env: env)
      }
      if changed {
        env.events?.emit(
          eventPod(pod), warning: false, reason: "MountRotationComplete",
          message: "volume content of SecretProviderClass \(pod.secretProviderClass) was rotated")
      }
      scheduleNext(pod: pod, spc: spc, request: request, env: env, origin: origin)
      env.metrics.rotationGate.fetched(target: targetPath)
      return .refreshed(changed: changed)
    } catch {
      if wait.abandoned {
        // Ended by an unpublish or newer tokens: nothing was written, the old content
        // stays; not the store's failure, so no backoff and no event.
        env.logger.debug("refresh abandoned", metadata: ["target": "\(targetPath)"])
        return .upToDate
      }
      // Stale until a refresh succeeds; the class and identity back off (timer and
      // republish alike).
      env.metrics.rotationGate.refreshFailed(target: targetPath)
      env.rotation?.noteFailed(
        RotationPlan.Volume(
          target: targetPath, backoffKey: Self.backoffKey(pod), interval: current.interval, lastFetch: .zero, tokensExpire: nil))
      // kubelet may delete the mount directory after a failed republish: answer
      // success, keep the old content, and report the failure.
      // As MountingPublisher does for kubelet's answer: the parts are scrubbed already,
      // the whole once more with this request's secrets before a log line or an event.
      let message = SecretScrubber(publishing: request).scrub(error.message, limitBytes: 1024)
      env.logger.warning(
        "refresh failed; keeping the mounted content",
        metadata: [
          "target": "\(targetPath)", "class": "\(pod.podNamespace)/\(pod.secretProviderClass)", "code": "\(error.code)",
          "error": "\(message)",
        ])
      env.events?.emit(eventPod(pod), warning: true, reason: "MountRotationFailed", message: message)
      return .refreshFailed(error)
    }
  }

  /// Tells the rotation timer when this volume is next due (after a successful fetch).
  /// `origin`: the refresh took another volume's shared answer; it counts as fetched
  /// when that answer arrived and comes due with that volume.
  private func scheduleNext(
    pod: PodVolume, spc: SecretProviderClass, request: CSI.NodePublishVolumeRequest, env: VolumeEnvironment,
    origin: RefreshCoalescer.Origin? = nil
  ) {
    let nowMono = KubeClient.monotonicNow()
    schedule(
      pod: pod, request: request, interval: spc.rotationInterval, lastFetch: origin.map { min($0.answeredAt, nowMono) } ?? nowMono,
      jitterSeed: origin?.leader, env: env)
  }

  /// Puts this volume in the rotation plan: due at `lastFetch` (monotonic) + its interval,
  /// with the tokens of `request` usable until they expire. One place for fetched and
  /// adopted volumes, so both carry the same backoff key and class.
  func schedule(
    pod: PodVolume, request: CSI.NodePublishVolumeRequest, interval: Duration?, lastFetch: Duration, jitterSeed: String? = nil,
    env: VolumeEnvironment
  ) {
    guard let rotation = env.rotation else { return }
    let nowMono = KubeClient.monotonicNow()
    let expires = TokenExpiry.earliest(volumeContext: request.volumeContext, secrets: request.secrets).map { wall in
      nowMono + .milliseconds(Int64((wall - TokenExpiry.wallNow()) * 1000))
    }
    rotation.noteFetched(
      RotationPlan.Volume(
        target: targetPath, backoffKey: Self.backoffKey(pod), interval: interval, lastFetch: lastFetch, tokensExpire: expires,
        jitterSeed: jitterSeed, classKey: RotationPlan.Volume.classKey(namespace: pod.podNamespace, name: pod.secretProviderClass)))
  }

  /// Refreshes back off per class and identity.
  /// The service account tokens kubelet sent with a publish (nil: none).
  static func tokens(of request: ValidPublishRequest) -> String? {
    request.csi.volumeContext[PodVolume.tokensKey] ?? request.csi.secrets[PodVolume.tokensKey]
  }

  static func backoffKey(_ pod: PodVolume) -> String {
    RotationScheduler.backoffKey(namespace: pod.podNamespace, serviceAccount: pod.serviceAccount, className: pod.secretProviderClass)
  }

  /// Tells the cluster what is mounted (status object, then the class's Secrets); the
  /// writes happen later, off this request's path.
  private func report(
    pod: PodVolume, spc: SecretProviderClass, versions: [Provider.ObjectVersion], files: [SecretFile], rotated: Bool,
    env: VolumeEnvironment
  ) {
    guard let status = env.status else { return }
    var secrets: [SyncedSecret] = []
    if !spc.secretObjects.isEmpty {
      var byName: [String: [UInt8]] = [:]
      for file in files { byName[file.path] = file.contents }
      do {
        secrets = try SyncedSecret.build(spc.secretObjects, namespace: pod.podNamespace, files: byName)
      } catch {
        env.logger.error("secretObjects not synced", metadata: ["target": "\(targetPath)", "error": "\(error)"])
        env.events?.emit(eventPod(pod), warning: true, reason: rotated ? "SecretRotationFailed" : "SecretSyncFailed", message: error.message)
      }
    }
    status.mounted(
      PodVolumeStatus(
        targetPath: targetPath, podName: pod.podName, podNamespace: pod.podNamespace, podUID: pod.podUID,
        className: pod.secretProviderClass, objects: versions.map { .init(id: $0.id, version: $0.version) }, secrets: secrets,
        rotated: rotated, provider: spc.provider))
  }

  private nonisolated func eventPod(_ pod: PodVolume) -> EventRecorder.Pod {
    EventRecorder.Pod(name: pod.podName, namespace: pod.podNamespace, uid: pod.podUID)
  }

  /// Parse and lookup errors quote files and API answers: they go through `scrubber`.
  private func resolveClass(
    _ pod: PodVolume, env: VolumeEnvironment, scrubber: SecretScrubber
  ) async throws(PublishError) -> SecretProviderClass {
    lastProvider = ""
    let found: SecretProviderClass?
    do {
      found = try await env.classes.secretProviderClass(name: pod.secretProviderClass, namespace: pod.podNamespace)
    } catch let error as SecretProviderClassError {
      throw PublishError(.classInvalid, scrubber.scrub(error.description))
    } catch {
      throw PublishError(
        .classInvalid, "cannot read SecretProviderClass \(pod.podNamespace)/\(pod.secretProviderClass): \(scrubber.scrub("\(error)"))")
    }
    guard let spc = found else {
      throw PublishError(
        .classNotFound,
        "SecretProviderClass \"\(pod.secretProviderClass)\" not found in namespace \"\(pod.podNamespace)\"")
    }
    guard SecretProviderClass.isValidProviderName(spc.provider), !spc.provider.isEmpty else {
      throw PublishError(.classInvalid, "SecretProviderClass \(spc.namespace)/\(spc.name) has an invalid spec.provider")
    }
    lastProvider = spc.provider
    return spc
  }

  /// Asks the provider and writes what it returns. Returns the new versions
  /// and whether any file changed on disk. A first mount (`priority` `.firstMount`) writes
  /// into the tmpfs this request has just mounted, so the writer need not list it.
  private func fetchAndWrite(
    _ request: CSI.NodePublishVolumeRequest, spc: SecretProviderClass, currentVersions: [Provider.ObjectVersion],
    deadline: ContinuousClock.Instant?, env: VolumeEnvironment, priority: ProviderGate.Priority, wait: RefreshWait? = nil
  ) async throws(PublishError) -> ([Provider.ObjectVersion], Bool, [SecretFile], RefreshCoalescer.Origin?) {
    let timeout = try Self.callBudget(deadline: deadline, now: env.now(), fallback: env.settings.defaultCallTimeout)
    let mountRequest = MountRequestBuilder.build(spc: spc, publish: request, currentVersions: currentVersions)
    // What the provider says goes through this before any log, event or status.
    var scrubber = SecretScrubber(publishing: request).adding(parameters: spc.parameters)
    let response: Provider.MountResponse
    var origin: RefreshCoalescer.Origin?
    let connection = env.providers.connection(for: spc.provider)
    do throws(ProviderCallError) {
      if priority == .refresh {
        // Refreshes of one identity may share a call (--rotation-coalesce-window); first mounts never do.
        let key = connection.coalescer == nil ? nil : CoalesceKey(
          provider: spc.provider, parameters: spc.parameters, volumeContext: request.volumeContext, secrets: request.secrets,
          currentVersions: currentVersions)
        let call = { @Sendable [scrubber] () async -> Result<(Provider.MountResponse, RefreshCoalescer.Origin?), ProviderCallError> in
          do throws(ProviderCallError) {
            let (answer, sharedFrom) = try await connection.refresh(mountRequest, key: key, timeout: timeout, scrubber: scrubber)
            return .success((answer, sharedFrom))
          } catch {
            return .failure(error)
          }
        }
        // With coalescing, the call may be other volumes' answer too: abandoning the wait
        // leaves it running for them.
        let answered: RefreshWait.Answer? =
          if let wait { await wait.run(on: loop, cancelOnAbandon: key == nil, call) } else { await call() }
        guard let result = answered else {
          throw ProviderCallError(provider: spc.provider, kind: .deadlineExceeded, detail: "the refresh was abandoned: the volume was unpublished or republished")
        }
        let (answer, sharedFrom) = try result.get()
        if sharedFrom != nil { env.metrics.coalescedRefresh(provider: spc.provider) }
        response = answer
        origin = sharedFrom
      } else {
        response = try await connection.mount(mountRequest, timeout: timeout, scrubber: scrubber, priority: priority)
      }
    } catch {
      throw PublishError(error)
    }
    scrubber = scrubber.adding(files: response.files)
    let files = try Self.check(response, provider: spc.provider, scrubber: scrubber)
    if files.isEmpty { return (response.objectVersion, false, [], origin) }  // a legacy provider wrote the files itself
    let provider = spc.provider
    let target = try volumeTarget(env)
    let group = mountGroup
    let emptyVolume = priority == .firstMount
    // On the pool when other volumes are busy (a burst), so the loop keeps
    // receiving provider answers and replying to kubelet meanwhile; alone, inline.
    let outcome = try await onPool { [targetPath, scrubber] () throws(PublishError) -> WriteOutcome in
      do {
        return try AtomicWriter(target: target).write(
          files, defaultMode: MountRequestBuilder.defaultFileMode, group: group, emptyVolume: emptyVolume)
      } catch let error as VolumeFileError {
        // These quote the provider's file names.
        switch error.kind {
        case .escapesRoot:
          throw PublishError.invalidArgument("target_path refused: \(error)")
        case .invalidPath, .invalidMode:
          throw PublishError(.badProviderResponse, "provider \"\(provider)\" returned a bad file: \(scrubber.scrub("\(error)"))")
        default: throw PublishError(.writeFailed, "cannot write secrets to \(targetPath): \(scrubber.scrub("\(error)"))")
        }
      } catch {
        throw PublishError(.writeFailed, "cannot write secrets to \(targetPath): \(scrubber.scrub("\(error)"))")
      }
    }
    return (response.objectVersion, outcome == .written, files, origin)
  }

  /// Runs blocking filesystem work (mkdir, mount, writes, unmount) on libuv's
  /// thread pool when other volumes have requests in flight, so the loop keeps
  /// sending their provider requests and answering kubelet meanwhile. Alone,
  /// it runs inline: two thread hops would cost more than they save. The
  /// actor's own gate still keeps one request per target at a time.
  func onPool<T: Sendable>(
    _ body: @escaping @Sendable () throws(PublishError) -> T
  ) async throws(PublishError) -> T {
    if activity.inFlight <= 1 { return try body() }
    do {
      return try await loop.offload { try body() }
    } catch let error as PublishError {
      throw error
    } catch {
      throw PublishError(.mountPoint, "filesystem work for \(targetPath) could not run: \(error)")
    }
  }

  /// The provider's rules: an error code or no object versions is a failure;
  /// modes must be permission bits. The code and file names are the
  /// provider's text: only scrubbed do they reach messages and metric labels.
  static func check(
    _ response: Provider.MountResponse, provider: String, scrubber: SecretScrubber
  ) throws(PublishError) -> [SecretFile] {
    if let code = response.error?.code, !code.isEmpty {
      let safe = scrubber.scrub(code, limitBytes: 128)
      throw PublishError(.providerError(code: safe), "provider \"\(provider)\" failed to mount: error code \(safe)")
    }
    guard !response.objectVersion.isEmpty else {
      throw PublishError(.badProviderResponse, "provider \"\(provider)\" returned no object versions")
    }
    return try response.files.map { file throws(PublishError) in
      guard file.mode >= 0, file.mode <= 0o7777 else {
        throw PublishError(
          .badProviderResponse,
          "provider \"\(provider)\" returned mode \(String(file.mode, radix: 8)) for \(scrubber.scrub(file.path, limitBytes: 256))")
      }
      return SecretFile(path: file.path, mode: UInt32(file.mode), contents: file.contents)
    }
  }

  /// The provider gets kubelet's remaining time less a margin, so the driver
  /// can still clean up and answer before kubelet gives up.
  static func callBudget(deadline: ContinuousClock.Instant?, now: ContinuousClock.Instant, fallback: Duration) throws(PublishError) -> Duration {
    guard let deadline else { return fallback }
    let remaining = deadline - now
    let margin = min(remaining / 10, .seconds(5))
    let budget = min(remaining - margin, fallback)
    guard budget > .milliseconds(1) else {
      throw PublishError(.providerDeadline, "kubelet's deadline leaves no time to call the provider")
    }
    return budget
  }

  // MARK: unpublish

  /// Unmounts and removes the target. Idempotent, never calls the provider,
  /// and works for volumes mounted before the driver restarted.
  public func unpublish(env: VolumeEnvironment) async throws(PublishError) {
    // A refresh waiting for its provider would hold the lock until its budget ends.
    refreshWait?.abandon()
    await acquire()
    defer { release() }
    env.status?.unmounted(targetPath: targetPath)
    env.rotation?.noteGone(target: targetPath)
    let target = try volumeTarget(env)
    try await onPool { [self] () throws(PublishError) in
      do {
        try target.unmountAndRemove()
      } catch let error as VolumeFileError {
        if case .unexpectedEntry = error.kind { throw PublishError(.mountPoint, "\(error)") }
        switch error.errno {
        case ENOTEMPTY, EEXIST:
          throw PublishError(.mountPoint, "\(targetPath) is not a mount point and not empty; left in place")
        default:
          if case .system(let call, _, _) = error.kind, call == "unlinkat" {
            throw targetError("cannot remove \(targetPath)", error)
          }
          throw targetError("cannot unmount \(targetPath)", error)
        }
      } catch {
        throw targetError("cannot unmount \(targetPath)", error)
      }
    }
    record = nil
    await removeState(env: env)
  }

  /// After a restart, as the holder of the state directory's lock, under this volume's
  /// lock: finishes what a killed write left (`AtomicWriter.repairInterruptedWrite`), or
  /// removes a first mount that never completed (a tmpfs without `..data`: unmounted and
  /// its target removed; kubelet retries the publish). Does nothing to a volume this run
  /// has mounted or is publishing.
  func settleAfterRestart(env: VolumeEnvironment) async -> RestartSettlement {
    await acquire()
    defer { release() }
    guard let target = try? volumeTarget(env), (try? target.isMountPoint()) == true else { return .none }
    let repair: WriteRepair
    do {
      repair = try AtomicWriter(target: target).repairInterruptedWrite()
    } catch {
      return .failed("\(error)")
    }
    if repair.hasContent { return repair.removed.isEmpty && repair.linksFixed == 0 ? .none : .repaired(repair) }
    guard record == nil else { return .none }
    do {
      try unmountAll(target)
      try? target.removeDirectory()
      await removeState(env: env)
      return .removedHalfBuilt
    } catch {
      return .failed(error.message)
    }
  }

  /// Unmounts every mount stacked on the target, never following a symlink on the way.
  private nonisolated func unmountAll(_ target: VolumeTarget) throws(PublishError) {
    do {
      try target.unmountAll()
    } catch let error as VolumeFileError {
      if case .unexpectedEntry = error.kind { throw PublishError(.mountPoint, "\(error)") }
      throw targetError("cannot unmount \(targetPath)", error)
    } catch {
      throw targetError("cannot unmount \(targetPath)", error)
    }
  }
}

/// Lets a refresh's provider call be abandoned while the refresh waits for it: the
/// waiting refresh resumes at once with nothing (and writes nothing), and the call's
/// task is cancelled unless others may share its answer (it gives back its gate slot
/// when it ends; its answer is dropped).
final class RefreshWait: Sendable {
  typealias Answer = Result<(Provider.MountResponse, RefreshCoalescer.Origin?), ProviderCallError>

  private struct State {
    var abandoned = false
    var waiter: CheckedContinuation<Answer?, Never>?
    var task: Task<Void, Never>?
    var cancelOnAbandon = true
  }

  private let state = Locked(State())

  var abandoned: Bool { state.withLock { $0.abandoned } }

  /// `call`'s answer, or nil once abandoned. The call runs in a task of its own (so
  /// that the wait can end before it does); cancelling the waiting task abandons the
  /// wait too, so a shutdown does not wait for a hung provider either.
  func run(on loop: EventLoop, cancelOnAbandon: Bool, _ call: @escaping @Sendable () async -> Answer) async -> Answer? {
    await withTaskCancellationHandler {
      await withCheckedContinuation { (c: CheckedContinuation<Answer?, Never>) in
        let started = state.withLock { s -> Bool in
          guard !s.abandoned else { return false }
          s.waiter = c
          s.cancelOnAbandon = cancelOnAbandon
          s.task = Task(executorPreference: loop) { self.finish(await call()) }
          return true
        }
        if !started { c.resume(returning: nil) }
      }
    } onCancel: {
      self.abandon()
    }
  }

  private func finish(_ answer: Answer) {
    let waiter = state.withLock { s in
      defer { s.waiter = nil; s.task = nil }
      return s.waiter
    }
    waiter?.resume(returning: answer)
  }

  func abandon() {
    let (waiter, task) = state.withLock { s in
      s.abandoned = true
      defer { s.waiter = nil; s.task = nil }
      return (s.waiter, s.cancelOnAbandon ? s.task : nil)
    }
    task?.cancel()
    waiter?.resume(returning: nil)
  }
}
