import CSIMessages
import GRPCCore
import GRPCH2
import Glibc
import Histogram
import UVRuntime

/// One simulated pod with one CSI inline volume.
struct Pod {
  enum State { case scheduled, pending, publishing, live, republishing, unpublishing }

  let id: Int
  let uid: String
  let name: String
  let volumeID: String
  /// `<root>/pods/<uid>/volumes/kubernetes.io~csi/<volume>`: kubelet creates it, the driver creates `mount` in it.
  let parent: String
  /// Index into the groups; `Kubelet.churnGroup` for replacements.
  let group: Int
  var state = State.pending
  var directoriesMade = false
  var attempts = 0
  var unpublishAttempts = 0
  var unpublishRequested = false
  /// A republish has been scheduled before (the first one may be spread differently).
  var republished = false
  /// After a secret change: this volume still shows the old value.
  var stale = false

  var target: String { parent + "/mount" }
}

/// Mounted volumes, for picking one at random in O(1).
struct LiveSet {
  private(set) var ids: [Int] = []
  private var positions: [Int: Int] = [:]

  var count: Int { ids.count }

  mutating func insert(_ id: Int) {
    guard positions[id] == nil else { return }
    positions[id] = ids.count
    ids.append(id)
  }

  mutating func remove(_ id: Int) {
    guard let p = positions.removeValue(forKey: id) else { return }
    let last = ids.removeLast()
    if last != id {
      ids[p] = last
      positions[last] = p
    }
  }
}

/// What happens when, on the harness's monotonic clock.
enum Event {
  case arrive(group: Int)
  case retryPublish(pod: Int)
  case republish(pod: Int)
  case retryUnpublish(pod: Int)
  case churn
  case changeSecret
  /// After the change: read the stale live volumes, which the driver's own rotation timer
  /// updates between republishes (kubelet does not look; a pod's reader would).
  case pollPropagation
}

/// A binary min-heap of events by time (ties in insertion order).
struct EventHeap {
  private var items: [(time: UInt64, seq: UInt64, event: Event)] = []
  private var seq: UInt64 = 0

  var nextTime: UInt64? { items.first?.time }
  var count: Int { items.count }

  mutating func push(_ time: UInt64, _ event: Event) {
    seq += 1
    items.append((time, seq, event))
    var i = items.count - 1
    while i > 0 {
      let parent = (i - 1) / 2
      guard less(i, parent) else { break }
      items.swapAt(i, parent)
      i = parent
    }
  }

  /// The earliest event and the time it was due.
  mutating func pop() -> (time: UInt64, event: Event)? {
    guard !items.isEmpty else { return nil }
    items.swapAt(0, items.count - 1)
    let top = items.removeLast()
    var i = 0
    while true {
      let l = 2 * i + 1
      let r = l + 1
      var m = i
      if l < items.count && less(l, m) { m = l }
      if r < items.count && less(r, m) { m = r }
      if m == i { break }
      items.swapAt(i, m)
      i = m
    }
    return (top.time, top.event)
  }

  private func less(_ a: Int, _ b: Int) -> Bool {
    items[a].time != items[b].time ? items[a].time < items[b].time : items[a].seq < items[b].seq
  }
}

/// Progress of one group of pods (the initial pods or a later wave).
struct GroupProgress {
  var spec: PodGroup
  var arrived = 0
  var live = 0
  var startNs: UInt64 = 0
  var allLiveNs: UInt64?
  var firstPublish = makeLatencyHistogram()
}

/// The secret change and how far it has spread.
struct Propagation {
  var changedNs: UInt64?
  var written = false
  var volumesAtChange = 0
  var staleCount = 0
  /// The last moment the stale count fell to zero (nil while some volume is stale).
  var allSeenNs: UInt64?
  /// Per volume that was stale: change → first sight of the new value (after a republish, or
  /// by the poll every `propagationPollSeconds` while the volume is live).
  var perVolume = makeLatencyHistogram()
  /// Stale volumes unpublished before they showed the new value.
  var removedStale = 0
}

/// Processes whose resources the sampler reads.
struct Watched: Sendable {
  var driverPid: pid_t?
  var driver: ChildProcess?
  var providerPid: pid_t?
  var providerStatsPath: String?
}

/// The simulated kubelet. An actor whose executor is the harness's event
/// loop: pod state, the schedule, the gRPC client and the recorders all live
/// on one thread, so the harness uses at most one core of the node it measures.
actor Kubelet {
  static let churnGroup = -1
  static let tokensKey = "csi.storage.k8s.io/serviceAccount.tokens"

  nonisolated let loop: EventLoop
  nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

  let client: GRPCClient<H2ClientTransport>
  let plan: Plan
  let watched: Watched
  /// Set from the signal handler: end the measured part now.
  let stopRequested: Locked<Bool>
  /// kubelet's deadline, as `grpc-timeout`, enforced by our client transport's loop timer.
  let callMetadata: Metadata

  var rng: SeededRandom
  var pods: [Int: Pod] = [:]
  var nextPodID = 0
  var live = LiveSet()
  var peakLive = 0
  var heap = EventHeap()
  /// Per group, the pods made ahead of their arrival (next to arrive first).
  var scheduled: [[Int]] = []
  var scheduledCount = 0
  var inFlight = 0
  var stopping = false
  var aborted: String?

  var startNs: UInt64 = 0
  var measureFromNs: UInt64 = 0
  var endNs: UInt64 = 0
  var measuredEndNs: UInt64 = 0
  var teardownStartNs: UInt64?
  var teardownEndNs: UInt64?

  var kinds: [CallKind: KindRecord] = [:]
  var groups: [GroupProgress]
  var propagation = Propagation()
  var cycles = 0
  /// Measured cycles begun (for --cycles).
  private var cyclesBegun = 0
  var leftoverTargets = 0
  var errorSamples: [String] = []
  var series = TimeSeries()
  /// From each call's scheduled time to the moment it was handed to the client: the
  /// harness's own queueing, included in every latency (coordinated omission).
  var scheduleLag = makeLatencyHistogram()

  let verifier: VolumeVerifier
  /// Successful publishes seen and volumes checked (every `plan.verifyEvery`-th).
  var publishesOK = 0
  var volumesChecked = 0
  /// CPU time the checks took (this thread's clock): what verifying costs the harness.
  var verifyCPUNs: UInt64 = 0
  /// Calls sent until the end of the measured part (warm-up included), and the CPU
  /// time the harness and the driver used meanwhile: CPU per call.
  var callsSent = 0
  var cpuAtStart: (harness: Double, driver: Double?) = (0, nil)
  var cpuAtEnd: (harness: Double, driver: Double?)?

  // Sampler state.
  var samplerRunning = false
  var samplerDone = true
  var driverSampler: ProcessSampler?
  var providerSampler: ProcessSampler?
  var selfSampler = ProcessSampler(pid: getpid())
  var providerStats: ProviderStats?
  var lastProviderMounts: Int?
  var driverHWMKiB = 0
  var providerHWMKiB = 0
  let progressIsTerminal = isatty(2) != 0
  let quotedAudiences: [String]

  init(client: GRPCClient<H2ClientTransport>, loop: EventLoop, plan: Plan, watched: Watched, stopRequested: Locked<Bool>) {
    self.client = client
    self.loop = loop
    self.plan = plan
    self.watched = watched
    self.stopRequested = stopRequested
    self.rng = SeededRandom(seed: plan.seed)
    self.groups = plan.groups.map { GroupProgress(spec: $0) }
    self.verifier = VolumeVerifier(expected: plan.expectedObjects)
    self.quotedAudiences = plan.tokenAudiences.map { a in
      var q = ""
      JSON.quote(a, into: &q)
      return q
    }
    self.callMetadata = plan.callTimeoutSeconds > 0 ? GRPCTimeout.metadata(.milliseconds(Int64(plan.callTimeoutSeconds * 1000))) : [:]
    for kind in CallKind.allCases { kinds[kind] = KindRecord() }
    if let pid = watched.driverPid { driverSampler = ProcessSampler(pid: pid) }
    if let pid = watched.providerPid { providerSampler = ProcessSampler(pid: pid) }
  }

  // MARK: running

  /// Runs the workload, then unpublishes every remaining volume.
  func run() async -> RunRecord {
    if plan.workload == .kubelet { preparePods() }
    startNs = monotonicNs()
    cpuAtStart = cpuNow()
    switch plan.workload {
    case .kubelet:
      measureFromNs = startNs
      endNs = startNs + ns(plan.durationSeconds)
      startSampler()
      await runKubelet()
    case .cycles(let concurrency):
      measureFromNs = startNs + ns(plan.warmupSeconds)
      endNs = measureFromNs + ns(plan.durationSeconds)
      startSampler()
      await withTaskGroup(of: Void.self) { group in
        for _ in 0..<concurrency {
          group.addTask { await self.cycleWorker() }
        }
      }
      measuredEndNs = monotonicNs()
      cpuAtEnd = cpuNow()
    }
    await stopSampler()
    if progressIsTerminal && plan.progress { printError("") }
    return record()
  }

  /// Makes every scheduled pod and its directories before the clock starts:
  /// on the node's disk that takes a few hundred microseconds a pod, which
  /// would otherwise smear a burst of pods over tens of milliseconds.
  private func preparePods() {
    scheduled = plan.groups.enumerated().map { g, group in
      Array(
        (0..<group.count).map { _ in
          let id = newPod(group: g)
          pods[id]!.state = .scheduled
          pods[id]!.directoriesMade = Files.makeDirectories(pods[id]!.parent)
          return id
        }.reversed())
    }
    scheduledCount = scheduled.reduce(0) { $0 + $1.count }
  }

  private func runKubelet() async {
    for (g, group) in plan.groups.enumerated() {
      groups[g].startNs = startNs + ns(group.atSeconds)
      for i in 0..<group.count {
        heap.push(startNs + ns(group.atSeconds + group.arrival.offset(of: i, count: group.count)), .arrive(group: g))
      }
    }
    if plan.churnPerSecond > 0 { heap.push(startNs + ns(1 / plan.churnPerSecond), .churn) }
    if let change = plan.change { heap.push(startNs + ns(change.atSeconds), .changeSecret) }

    while true {
      let now = monotonicNs()
      if now >= endNs || aborted != nil || stopRequested.withLock({ $0 }) { break }
      while let next = heap.nextTime, next <= now, let (due, event) = heap.pop() {
        handle(event, due: due)
      }
      let next = Swift.min(heap.nextTime ?? .max, endNs)
      // Events scheduled while asleep are at least 500 ms out; 50 ms bounds their lateness.
      let waitMs = next > now ? Swift.min((next - now + 999_999) / 1_000_000, 50) : 0
      if waitMs > 0 { try? await loop.sleep(milliseconds: waitMs) }
    }
    measuredEndNs = monotonicNs()
    stopping = true
    await waitIdle(seconds: plan.callTimeoutSeconds + 5)
    cpuAtEnd = cpuNow()
    guard aborted == nil else { return }
    // A node drain: every volume kubelet knows about, mounted or uncertain.
    let drainAt = monotonicNs()
    teardownStartNs = drainAt
    // Every unpublish of the drain is due at its start: what queues in the harness counts.
    for id in pods.keys.sorted() where pods[id]!.attempts > 0 && pods[id]!.state != .unpublishing {
      beginUnpublish(id, kind: .teardown, due: drainAt)
    }
    await waitIdle(seconds: plan.callTimeoutSeconds * 3 + 5)
    teardownEndNs = monotonicNs()
    // Pods that never arrived (a run stopped early).
    for id in scheduled.joined() {
      removeDirectories(of: pods[id]!)
      pods[id] = nil
    }
    scheduled = []
    scheduledCount = 0
  }

  private func waitIdle(seconds: Double) async {
    let deadline = monotonicNs() + ns(seconds)
    while inFlight > 0 && monotonicNs() < deadline {
      try? await loop.sleep(milliseconds: 10)
    }
  }

  /// `due`: when the event was scheduled for; the latency of the call it starts counts from then.
  private func handle(_ event: Event, due: UInt64) {
    switch event {
    case .arrive(let g):
      groups[g].arrived += 1
      let id = scheduled[g].removeLast()
      scheduledCount -= 1
      pods[id]!.state = .pending
      startFirstPublish(id, due: due)
    case .retryPublish(let id):
      if pods[id]?.state == .pending { startFirstPublish(id, due: due) }
    case .republish(let id):
      guard let pod = pods[id], pod.state == .live else { return }
      pods[id]!.state = .republishing
      spawn { await self.republish(id, due: due) }
    case .retryUnpublish(let id):
      if pods[id] != nil { beginUnpublish(id, kind: .unpublish, due: due) }
    case .churn:
      if live.count > 0 {
        let victim = live.ids[Int.random(in: 0..<live.count, using: &rng)]
        beginUnpublish(victim, kind: .unpublish, due: due)
        startFirstPublish(newPod(group: Self.churnGroup), due: due)
      }
      heap.push(due + ns(1 / plan.churnPerSecond), .churn)
    case .changeSecret:
      changeSecret()
      heap.push(due + ns(Self.propagationPollSeconds), .pollPropagation)
    case .pollPropagation:
      pollStale()
      if propagation.staleCount > 0 { heap.push(due + ns(Self.propagationPollSeconds), .pollPropagation) }
    }
  }

  /// Runs `body` as its own task on the loop, counted until it returns.
  private func spawn(_ body: @escaping @Sendable () async -> Void) {
    inFlight += 1
    Task(executorPreference: loop) {
      await body()
      await self.callEnded()
    }
  }

  private func callEnded() { inFlight -= 1 }

  // MARK: pods and requests

  private func newPod(group: Int) -> Int {
    let id = nextPodID
    nextPodID += 1
    let uid = rng.uuid()
    let parent = "\(plan.kubeletRoot)/pods/\(uid)/volumes/kubernetes.io~csi/\(plan.volumeName)"
    pods[id] = Pod(
      id: id, uid: uid, name: "load-\(id)", volumeID: "csi-" + rng.hex(64), parent: parent, group: group)
    return id
  }

  /// kubelet's request: same for a first publish and a republish, with fresh tokens each time.
  private func publishRequest(_ pod: Pod) -> CSI.NodePublishVolumeRequest {
    var context = [
      "secretProviderClass": plan.spc,
      "csi.storage.k8s.io/pod.name": pod.name,
      "csi.storage.k8s.io/pod.namespace": plan.namespace,
      "csi.storage.k8s.io/pod.uid": pod.uid,
      "csi.storage.k8s.io/serviceAccount.name": plan.serviceAccount,
      "csi.storage.k8s.io/ephemeral": "true",
    ]
    if !plan.tokenAudiences.isEmpty { context[Self.tokensKey] = freshTokens() }
    return CSI.NodePublishVolumeRequest(
      volumeID: pod.volumeID,
      targetPath: pod.target,
      volumeCapability: CSI.VolumeCapability(
        accessType: .mount(CSI.VolumeCapability.MountVolume()),
        accessMode: CSI.VolumeCapability.AccessMode(mode: .singleNodeWriter)),
      readonly: true,
      volumeContext: context)
  }

  /// `{"<audience>": {"token": "<JWT-sized>", "expirationTimestamp": "<now + 1h>"}}`.
  /// Built as text: base64url and the timestamp need no escaping.
  private func freshTokens() -> String {
    let expiry = rfc3339(offsetSeconds: 3600)
    var out = "{"
    for (i, audience) in quotedAudiences.enumerated() {
      if i > 0 { out += "," }
      out += audience + ":{\"token\":\"eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ." + rng.base64url(620) + "." + rng.base64url(342)
      out += "\",\"expirationTimestamp\":\"" + expiry + "\"}"
    }
    return out + "}"
  }

  /// One call's outcome: `failure` is nil for a successful, verified call, else a gRPC
  /// status name or a `VERIFY_*` code. `t0` is the call's scheduled time.
  private func record(_ kind: CallKind, _ t0: UInt64, _ t1: UInt64, _ failure: String?, detail: String? = nil) {
    guard t0 >= measureFromNs else { return }  // warm-up
    kinds[kind]!.record(micros: (t1 &- t0) / 1000, error: failure)
    if let failure, errorSamples.count < 20 {
      let sample = "\(kind.key): \(detail ?? failure)"
      if !errorSamples.contains(sample) { errorSamples.append(sample) }
    }
  }

  /// When the call was sent, when its answer came, and its error.
  private func send(_ due: UInt64, _ body: () async throws -> Void) async -> (UInt64, UInt64, (any Error)?) {
    let sent = monotonicNs()
    if !stopping { callsSent += 1 }
    if due >= measureFromNs { scheduleLag.recordClamped((sent &- Swift.min(due, sent)) / 1000) }
    do {
      try await body()
      return (sent, monotonicNs(), nil)
    } catch {
      return (sent, monotonicNs(), error)
    }
  }

  /// NodePublishVolume due at `due`: returns `due` (the latency's start), the answer's time and the error.
  private func call(_ request: CSI.NodePublishVolumeRequest, due: UInt64) async -> (UInt64, UInt64, (any Error)?) {
    let (_, t1, error) = await send(due) { _ = try await client.call(CSI.Node.nodePublishVolume, request, metadata: callMetadata) }
    return (due, t1, error)
  }

  private func call(_ request: CSI.NodeUnpublishVolumeRequest, due: UInt64) async -> (UInt64, UInt64, (any Error)?) {
    let (_, t1, error) = await send(due) { _ = try await client.call(CSI.Node.nodeUnpublishVolume, request, metadata: callMetadata) }
    return (due, t1, error)
  }

  /// After NodePublishVolume answered OK: nil when the volume holds what the provider
  /// serves (or this publish is not among the sampled ones), else the failure's code.
  /// Also follows the secret change with the bytes it read.
  private func verifyPublished(_ id: Int, now: UInt64) -> VolumeProblem? {
    guard let pod = pods[id] else { return nil }
    publishesOK += 1
    var changedBytes: [UInt8]?
    if (publishesOK - 1) % plan.verifyEvery == 0 {
      volumesChecked += 1
      let cpu0 = threadCPUNs()
      let outcome = verifier.check(target: pod.target)
      verifyCPUNs &+= threadCPUNs() &- cpu0
      switch outcome {
      case .failure(let problem): return problem
      case .success(let checked):
        if let change = plan.change, let i = plan.expectedObjects?.firstIndex(where: { $0.name == change.volumePath }) {
          changedBytes = checked.contents[i]
        }
      }
    }
    checkContent(id, now: now, bytes: changedBytes)
    return nil
  }

  // MARK: publish, republish, unpublish

  private func startFirstPublish(_ id: Int, due: UInt64) {
    guard !stopping, var pod = pods[id] else { return }
    if !pod.directoriesMade { pod.directoriesMade = Files.makeDirectories(pod.parent) }  // kubelet creates the parent
    pod.attempts += 1
    pod.state = .publishing
    pods[id] = pod
    spawn { await self.firstPublish(id, due: due) }
  }

  private func firstPublish(_ id: Int, due: UInt64) async {
    guard let pod = pods[id] else { return }
    let (t0, t1, error) = await call(publishRequest(pod), due: due)
    // The driver thinks the volume is mounted even when its content is wrong: kubelet
    // does not look, so the pod goes on (republished, unpublished) as a live one.
    let failed = error == nil ? verifyPublished(id, now: t1) : nil
    record(.firstPublish, t0, t1, error.map(statusName) ?? failed?.failure.code, detail: error.map(errorDetail) ?? failed?.detail)
    guard var pod = pods[id] else { return }
    if let _ = error {
      pod.state = .pending
      pods[id] = pod
      // kubelet's exponential backoff: 500 ms doubling, at most 2m2s.
      let backoff = Swift.min(0.5 * Double(1 << Swift.min(pod.attempts - 1, 10)), 122)
      if !stopping { heap.push(t1 + ns(backoff), .retryPublish(pod: id)) }
      return
    }
    pod.state = .live
    pods[id] = pod
    live.insert(id)
    peakLive = Swift.max(peakLive, live.count)
    if pod.group >= 0 {
      groups[pod.group].live += 1
      if t0 >= measureFromNs && failed == nil { groups[pod.group].firstPublish.recordClamped((t1 &- t0) / 1000) }
      if groups[pod.group].live == groups[pod.group].spec.count { groups[pod.group].allLiveNs = t1 }
    }
    afterCall(id, now: t1)
  }

  private func republish(_ id: Int, due: UInt64) async {
    guard let pod = pods[id] else { return }
    let (t0, t1, error) = await call(publishRequest(pod), due: due)
    let failed = error == nil ? verifyPublished(id, now: t1) : nil
    record(.republish, t0, t1, error.map(statusName) ?? failed?.failure.code, detail: error.map(errorDetail) ?? failed?.detail)
    guard pods[id] != nil else { return }
    // The volume stays mounted whatever the answer; kubelet tries again next period.
    pods[id]!.state = .live
    afterCall(id, now: t1)
  }

  /// Next republish, or the unpublish churn asked for while a call was in flight.
  private func afterCall(_ id: Int, now: UInt64) {
    guard let pod = pods[id] else { return }
    if pod.unpublishRequested {
      beginUnpublish(id, kind: stopping ? .teardown : .unpublish, due: now)
      return
    }
    if let range = plan.republish, !stopping {
      var wait = Double.random(in: range, using: &rng)
      if plan.spreadFirstRepublish && pod.group == 0 && pod.state == .live && !pod.republished {
        wait = Double.random(in: 0...range.upperBound, using: &rng)
      }
      pods[id]!.republished = true
      heap.push(now + ns(wait), .republish(pod: id))
    }
  }

  private func beginUnpublish(_ id: Int, kind: CallKind, due: UInt64) {
    guard var pod = pods[id] else { return }
    if pod.state == .publishing || pod.state == .republishing {
      pod.unpublishRequested = true
      pods[id] = pod
      return
    }
    pod.state = .unpublishing
    pod.unpublishAttempts += 1
    // After the measured part the propagation result is frozen: a drain is no update.
    if pod.stale && !stopping {
      pod.stale = false
      propagation.removedStale += 1
      staleFell(now: monotonicNs())
    }
    pods[id] = pod
    live.remove(id)
    spawn { await self.unpublish(id, kind: kind, due: due) }
  }

  private func unpublish(_ id: Int, kind: CallKind, due: UInt64) async {
    guard let pod = pods[id] else { return }
    let request = CSI.NodeUnpublishVolumeRequest(volumeID: pod.volumeID, targetPath: pod.target)
    var (t0, t1, error) = await call(request, due: due)
    recordUnpublish(kind, pod, t0, t1, error)
    // While draining there is no scheduler: retry here, as kubelet would.
    var attempt = 1
    while error != nil && kind == .teardown && attempt < 3 {
      try? await loop.sleep(milliseconds: 500 << UInt64(attempt - 1))
      attempt += 1
      (t0, t1, error) = await call(request, due: monotonicNs())
      recordUnpublish(kind, pod, t0, t1, error)
    }
    if error != nil {
      if kind == .unpublish && !stopping {
        pods[id]!.state = .pending
        let backoff = Swift.min(0.5 * Double(1 << Swift.min(pod.unpublishAttempts - 1, 10)), 122)
        heap.push(t1 + ns(backoff), .retryUnpublish(pod: id))
      }
      return
    }
    removeDirectories(of: pod)
    pods[id] = nil
  }

  /// An OK that leaves the target behind is a failure too (kubelet would find it there).
  /// True when the volume is gone.
  @discardableResult
  private func recordUnpublish(_ kind: CallKind, _ pod: Pod, _ t0: UInt64, _ t1: UInt64, _ error: (any Error)?) -> Bool {
    var failure = error.map(statusName)
    var detail = error.map(errorDetail)
    if error == nil && Files.exists(pod.target) {
      leftoverTargets += 1
      failure = VerifyFailure.targetLeft.code
      detail = "\(VerifyFailure.targetLeft.code): the target is still there after an OK (\(pod.target))"
    }
    record(kind, t0, t1, failure, detail: detail)
    return failure == nil
  }

  // MARK: cycles

  /// Publish then unpublish one pod's volume, back to back, until the end.
  /// Each worker keeps its pod (like a pod restarting in place): making and
  /// removing four directories per cycle on the node's disk would cost the
  /// harness more CPU than the RPCs, and that CPU is taken from the driver.
  private func cycleWorker() async {
    let id = newPod(group: 0)
    let pod = pods[id]!
    Files.makeDirectories(pod.parent)
    // A closed loop: each call is due when the worker is ready to send it.
    while monotonicNs() < endNs && aborted == nil && !stopRequested.withLock({ $0 }) {
      if plan.cycleLimit > 0 && monotonicNs() >= measureFromNs {
        guard cyclesBegun < plan.cycleLimit else { break }
        cyclesBegun += 1
      }
      let (t0, t1, error) = await call(publishRequest(pod), due: monotonicNs())
      let failed = error == nil ? verifyPublished(id, now: t1) : nil
      record(.firstPublish, t0, t1, error.map(statusName) ?? failed?.failure.code, detail: error.map(errorDetail) ?? failed?.detail)
      if error == nil {
        live.insert(id)
        peakLive = Swift.max(peakLive, live.count)
      }
      let (u0, u1, uerror) = await call(
        CSI.NodeUnpublishVolumeRequest(volumeID: pod.volumeID, targetPath: pod.target), due: monotonicNs())
      let unpublished = recordUnpublish(.unpublish, pod, u0, u1, uerror)
      live.remove(id)
      if t0 >= measureFromNs && error == nil && failed == nil && unpublished { cycles += 1 }
    }
    removeDirectories(of: pod)
    pods[id] = nil
  }

  /// kubelet removes the pod's volume directories once the driver is done.
  private func removeDirectories(of pod: Pod) {
    var dir = pod.parent
    for _ in 0..<4 {
      rmdir(dir)
      dir = String(dir[..<dir.lastIndex(of: "/")!])
    }
  }

  // MARK: secret change

  private func changeSecret() {
    guard let change = plan.change else { return }
    let now = monotonicNs()
    propagation.changedNs = now
    propagation.written = Files.writeAtomically(change.newValue, to: change.dataFile)
    if !propagation.written {
      printError("csi-load: cannot rewrite \(change.dataFile); propagation is not measured")
      propagation.changedNs = nil
      return
    }
    for id in live.ids {
      pods[id]!.stale = true
    }
    propagation.volumesAtChange = live.count
    propagation.staleCount = live.count
    if live.count == 0 { propagation.allSeenNs = now }
  }

  /// After a successful (re)publish: does the volume show the changed secret? `bytes`:
  /// the changed object as verification read it (nil: read it here).
  private func checkContent(_ id: Int, now: UInt64, bytes: [UInt8]?) {
    guard !stopping, let change = plan.change, let changed = propagation.changedNs, var pod = pods[id] else { return }
    let seesNew = (bytes ?? Files.read(pod.target + "/..data/" + change.volumePath)) == change.newValue
    if seesNew && pod.stale {
      pod.stale = false
      propagation.perVolume.recordClamped((now - changed) / 1000)
      staleFell(now: now)
    } else if !seesNew && !pod.stale {
      // A volume that went live after the change with content fetched before it.
      pod.stale = true
      propagation.staleCount += 1
      propagation.allSeenNs = nil
    }
    pods[id] = pod
  }

  /// How often stale volumes are read after the change: the resolution of the propagation
  /// figures for updates the driver makes on its own (a republish checks at once).
  static let propagationPollSeconds = 0.5

  /// Reads each stale volume that is live and idle (no call of ours in flight on it).
  private func pollStale() {
    guard propagation.changedNs != nil, propagation.staleCount > 0 else { return }
    let now = monotonicNs()
    for id in live.ids where pods[id]?.stale == true && pods[id]?.state == .live {
      checkContent(id, now: now, bytes: nil)
    }
  }

  private func staleFell(now: UInt64) {
    propagation.staleCount -= 1
    if propagation.staleCount == 0 { propagation.allSeenNs = now }
  }

  // MARK: sampling

  private func startSampler() {
    samplerRunning = true
    samplerDone = false
    _ = driverSampler?.sample()
    _ = providerSampler?.sample()
    _ = selfSampler.sample()
    Task(executorPreference: loop) { await self.samplerLoop() }
  }

  private func stopSampler() async {
    samplerRunning = false
    while !samplerDone { try? await loop.sleep(milliseconds: 10) }
  }

  private func samplerLoop() async {
    var second: UInt64 = 1
    while samplerRunning {
      let due = startNs + second * 1_000_000_000
      let now = monotonicNs()
      if due > now { try? await loop.sleep(milliseconds: (due - now + 999_999) / 1_000_000) }
      guard samplerRunning else { break }
      tick(second: Double(second))
      second += 1
    }
    samplerDone = true
  }

  private func tick(second: Double) {
    series.t.append(second)
    series.live.append(live.count)
    series.pending.append(pods.count - live.count - scheduledCount)
    var errors = 0
    var callsThisSecond = 0
    for kind in CallKind.allCases {
      var k = kinds[kind]!
      series.calls[kind, default: []].append(k.secondCalls)
      callsThisSecond += k.secondCalls
      errors += k.secondErrors
      let has = k.second.totalCount > 0
      series.p50[kind, default: []].append(has ? Double(k.second.valueAtPercentile(50)) : nil)
      series.p99[kind, default: []].append(has ? Double(k.second.valueAtPercentile(99)) : nil)
      series.max[kind, default: []].append(has ? Double(k.second.max) : nil)
      k.second.reset()
      k.secondCalls = 0
      k.secondErrors = 0
      kinds[kind] = k
    }
    series.errors.append(errors)

    let d = driverSampler?.sample()
    series.driverRSS.append(d?.rssKiB.map { Double($0) / 1024 })
    series.driverHWM.append(d?.hwmKiB.map { Double($0) / 1024 })
    series.driverCPU.append(d?.cpuPercent)
    driverHWMKiB = Swift.max(driverHWMKiB, d?.hwmKiB ?? 0)

    if let path = watched.providerStatsPath, let stats = ProviderStats.read(path) {
      providerStats = stats
      if providerSampler == nil, let pid = stats.pid {
        providerSampler = ProcessSampler(pid: pid)
        _ = providerSampler?.sample()
      }
    }
    let p = providerSampler?.sample()
    series.providerRSS.append(p?.rssKiB.map { Double($0) / 1024 })
    series.providerCPU.append(p?.cpuPercent)
    providerHWMKiB = Swift.max(providerHWMKiB, p?.hwmKiB ?? 0)
    let mounts = providerStats?.mount_calls
    series.providerMountsPerSecond.append(mounts.map { $0 - (lastProviderMounts ?? 0) })
    if mounts != nil { lastProviderMounts = mounts }
    series.providerInFlight.append(providerStats?.in_flight)
    series.harnessCPU.append(selfSampler.sample().cpuPercent)
    series.staleVolumes.append(propagation.changedNs == nil ? nil : propagation.staleCount)

    if let driver = watched.driver, aborted == nil, let status = driver.exitStatus() {
      aborted = "the driver stopped during the run (\(ChildProcess.describe(status))); its log ends:\n\(driver.logTail())"
    }
    if plan.progress { progress(second: second, callsPerSecond: callsThisSecond, sample: d) }
  }

  private func progress(second: Double, callsPerSecond: Int, sample d: ProcessSampler.Sample?) {
    let first = kinds[.firstPublish]!
    let errors = kinds.values.reduce(0) { $0 + ($1.calls - $1.ok) }
    var line = "csi-load \(Int(second))s"
    if teardownStartNs != nil { line += " (teardown)" }
    line += "  live \(live.count)"
    let starting = pods.count - live.count - scheduledCount
    if starting > 0 { line += " (+\(starting) not mounted)" }
    line += "  calls/s \(callsPerSecond)"
    if first.total.totalCount > 0 {
      line += "  publish p99 " + Self.ms(Double(first.total.valueAtPercentile(99)))
    }
    if let r = kinds[.republish], r.total.totalCount > 0 {
      line += "  republish p99 " + Self.ms(Double(r.total.valueAtPercentile(99)))
    }
    line += "  errors \(errors)"
    if let d {
      line += "  driver " + (d.rssKiB.map { JSON.format((Double($0) / 1024 * 10).rounded() / 10) + " MiB" } ?? "?")
      line += " " + (d.cpuPercent.map { JSON.format($0.rounded()) + "% cpu" } ?? "")
    }
    if let m = providerStats?.mount_calls { line += "  provider calls \(m)" }
    if propagation.changedNs != nil { line += "  stale \(propagation.staleCount)" }
    if progressIsTerminal {
      var bytes = Array(("\r\u{1B}[K" + line).utf8)
      _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    } else if Int(second) % 10 == 0 {
      printError(line)
    }
  }

  static func ms(_ micros: Double) -> String {
    let v = micros / 1000
    return (v >= 100 ? JSON.format(v.rounded()) : JSON.format((v * 100).rounded() / 100)) + "ms"
  }

  /// CPU seconds (user + system) of the harness (getrusage, microsecond resolution) and of the driver (/proc ticks).
  private func cpuNow() -> (harness: Double, driver: Double?) {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let harness = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    let driver = watched.driverPid.flatMap { ProcessSampler.cpuSeconds($0) }
    return (harness, driver)
  }

  // MARK: results

  private func record() -> RunRecord {
    RunRecord(
      startNs: startNs, measureFromNs: measureFromNs, measuredEndNs: measuredEndNs,
      teardownStartNs: teardownStartNs, teardownEndNs: teardownEndNs,
      kinds: kinds, groups: groups, propagation: propagation, cycles: cycles, peakLive: peakLive,
      liveAtEnd: live.count, leftoverTargets: leftoverTargets, errorSamples: errorSamples, series: series,
      providerStats: providerStats, driverHWMKiB: driverHWMKiB,
      providerHWMKiB: providerHWMKiB, aborted: aborted, stoppedEarly: stopRequested.withLock { $0 },
      podsCreated: nextPodID - scheduledCount, scheduleLag: scheduleLag, publishesOK: publishesOK,
      volumesChecked: volumesChecked, verifyCPUNs: verifyCPUNs, callsSent: callsSent,
      harnessCPUSeconds: cpuAtEnd.map { $0.harness - cpuAtStart.harness },
      driverCPUSeconds: cpuAtEnd.flatMap { end in end.driver.flatMap { d in cpuAtStart.driver.map { d - $0 } } })
  }
}

func ns(_ seconds: Double) -> UInt64 { UInt64(Swift.max(0, seconds) * 1e9) }

/// CPU nanoseconds the calling thread has used.
func threadCPUNs() -> UInt64 {
  var ts = timespec()
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
  return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Everything the run measured, handed to the report writers.
struct RunRecord: Sendable {
  var startNs: UInt64
  var measureFromNs: UInt64
  var measuredEndNs: UInt64
  var teardownStartNs: UInt64?
  var teardownEndNs: UInt64?
  var kinds: [CallKind: KindRecord]
  var groups: [GroupProgress]
  var propagation: Propagation
  var cycles: Int
  var peakLive: Int
  var liveAtEnd: Int
  var leftoverTargets: Int
  var errorSamples: [String]
  var series: TimeSeries
  var providerStats: ProviderStats?
  var driverHWMKiB: Int
  var providerHWMKiB: Int
  var aborted: String?
  /// SIGINT or SIGTERM ended the measured part before --duration.
  var stoppedEarly: Bool
  var podsCreated: Int
  var scheduleLag: LatencyHistogram
  var publishesOK: Int
  var volumesChecked: Int
  var verifyCPUNs: UInt64
  /// Calls sent before the end of the measured part, warm-up included, and the CPU
  /// each process used over the same stretch.
  var callsSent: Int
  var harnessCPUSeconds: Double?
  var driverCPUSeconds: Double?
}
