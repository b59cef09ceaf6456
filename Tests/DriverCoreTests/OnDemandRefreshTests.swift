import Glibc
import Logging
import Telemetry
import Testing
import UVRuntime

@testable import DriverCore
@testable import KubeClient

/// On-demand refresh: a class asks (its refresh annotation changed, its file was touched)
/// and the scheduler refreshes exactly that class's volumes, through the same refresh path.
@Suite struct OnDemandRefreshTests {
  /// Waits until `condition` holds (bounded at about 10 s: the loop runs on its own thread).
  static func eventually(_ what: String, _ condition: () async -> Bool) async {
    for _ in 0..<10_000 {
      if await condition() { return }
      try? await Task.sleep(for: .milliseconds(1))
    }
    Issue.record("never: \(what)")
  }

  static func volume(_ target: String, namespace: String, spc: String, expires: Duration? = nil) -> RotationPlan.Volume {
    RotationPlan.Volume(
      target: target, backoffKey: "\(namespace)/sa/\(spc)", interval: .seconds(3600), lastFetch: KubeClient.monotonicNow(),
      tokensExpire: expires, classKey: RotationPlan.Volume.classKey(namespace: namespace, name: spc))
  }

  @Test func planFindsTheVolumesOfOneClass() {
    var plan = RotationPlan(settings: .init(defaultInterval: .seconds(60), floor: .seconds(1)))
    plan.upsert(Self.volume("/a1", namespace: "ns", spc: "a"))
    plan.upsert(Self.volume("/a2", namespace: "ns", spc: "a"))
    plan.upsert(Self.volume("/b1", namespace: "ns", spc: "b"))
    plan.upsert(Self.volume("/a-other-ns", namespace: "other", spc: "a"))
    #expect(Set(plan.volumes(ofClass: "ns/a").map(\.target)) == ["/a1", "/a2"])
    #expect(plan.volumes(ofClass: "ns/c").isEmpty)
    plan.remove(target: "/a1")
    #expect(plan.volumes(ofClass: "ns/a").map(\.target) == ["/a2"])
  }

  @Test func refreshesExactlyThatClassesVolumesNow() async throws {
    try await withLoop("on-demand") { loop in
      let scheduler = RotationScheduler(
        settings: .init(defaultInterval: .seconds(3600), floor: .seconds(1)), loop: loop, logger: Logger(label: "test"))
      let refreshed = Locked<[String: [RotationScheduler.Trigger]]>([:])
      await scheduler.start { target, trigger in
        refreshed.withLock { $0[target, default: []].append(trigger) }
        return true
      }
      for v in [
        Self.volume("/a1", namespace: "ns", spc: "a"), Self.volume("/a2", namespace: "ns", spc: "a"),
        Self.volume("/b1", namespace: "ns", spc: "b"), Self.volume("/a-other", namespace: "other", spc: "a"),
        Self.volume("/a-expired", namespace: "ns", spc: "a", expires: KubeClient.monotonicNow() - .seconds(1)),
      ] {
        await scheduler.fetched(v)
      }
      // A class nobody mounts, and one whose name matches in another namespace only: nothing.
      #expect(await scheduler.refreshClass(namespace: "ns", name: "c") == 0)
      #expect(await scheduler.refreshClass(namespace: "ns", name: "a") == 2)
      await Self.eventually("both volumes of ns/a refreshed") { refreshed.withLock { $0.count } == 2 }
      // Nothing is due for an hour: only the on-demand refreshes ran, once each.
      #expect(refreshed.withLock { $0 } == ["/a1": [.onDemand], "/a2": [.onDemand]])
      #expect(await scheduler.onDemandRefreshes == 2)
      #expect(await scheduler.timerRefreshes == 0)
      await scheduler.stop()
    }
  }

  @Test func aRequestDuringARefreshRefreshesOnceMoreAfter() async throws {
    try await withLoop("on-demand") { loop in
      let scheduler = RotationScheduler(
        settings: .init(defaultInterval: .seconds(3600), floor: .seconds(1)), loop: loop, logger: Logger(label: "test"))
      let calls = Locked(0)
      let gate = Locked<CheckedContinuation<Void, Never>?>(nil)
      await scheduler.start { _, _ in
        let n = calls.withLock { n -> Int in
          n += 1
          return n
        }
        if n == 1 { await withCheckedContinuation { c in gate.withLock { $0 = c } } }  // the first one hangs until let go
        return true
      }
      await scheduler.fetched(Self.volume("/a1", namespace: "ns", spc: "a"))
      #expect(await scheduler.refreshClass(namespace: "ns", name: "a") == 1)
      await Self.eventually("the first refresh started") { gate.withLock { $0 != nil } }
      // Asked again while the first one is in flight: its answer may predate the request.
      #expect(await scheduler.refreshClass(namespace: "ns", name: "a") == 1)
      #expect(calls.withLock { $0 } == 1)
      gate.withLock { $0 }!.resume()
      await Self.eventually("a second refresh after the first") { calls.withLock { $0 } == 2 }
      await scheduler.stop()
      #expect(calls.withLock { $0 } == 2)
    }
  }

  // MARK: the cluster source: which changes ask

  static func object(_ name: String, namespace: String = "ns", annotations: [String: String]?) -> SecretProviderClassObject {
    var meta = ObjectMeta(name: name, namespace: namespace)
    meta.annotations = annotations
    return SecretProviderClassObject(metadata: meta, spec: .init(provider: "p"))
  }

  @Test func onlyANewValueOfTheRefreshAnnotationAsks() {
    let requests = ClusterSecretProviderClassSource.RefreshRequests()
    let asked = Locked<[String]>([])
    requests.handler.withLock { $0 = { ns, name in asked.withLock { $0.append("\(ns)/\(name)") } } }
    let key = SecretProviderClass.refreshRequestAnnotation
    // First sight (the cache's first list): nothing, whatever the annotation says.
    requests.changed(.upserted(Self.object("a", annotations: [key: "2026-12-03T10:00:00Z"])))
    requests.changed(.upserted(Self.object("b", annotations: nil)))
    #expect(asked.withLock { $0 } == [])
    // Another annotation, a spec change, the same value again: nothing.
    requests.changed(.upserted(Self.object("a", annotations: [key: "2026-12-03T10:00:00Z", "argocd.argoproj.io/tracking-id": "x"])))
    requests.changed(.upserted(Self.object("b", annotations: ["kubectl.kubernetes.io/last-applied-configuration": "{}"])))
    #expect(asked.withLock { $0 } == [])
    // A new value asks for that class only; so does a first value on a class seen without one.
    requests.changed(.upserted(Self.object("a", annotations: [key: "2026-12-03T10:05:00Z"])))
    requests.changed(.upserted(Self.object("b", annotations: [key: "1"])))
    #expect(asked.withLock { $0 } == ["ns/a", "ns/b"])
    // Removing it asks for nothing; a class deleted and created again is seen for the first time.
    requests.changed(.upserted(Self.object("a", annotations: nil)))
    requests.changed(.deleted(Self.object("b", annotations: [key: "1"])))
    requests.changed(.upserted(Self.object("b", annotations: [key: "2"])))
    #expect(asked.withLock { $0 } == ["ns/a", "ns/b"])
    // Same name in another namespace is another class.
    requests.changed(.upserted(Self.object("a", namespace: "other", annotations: [key: "3"])))
    requests.changed(.upserted(Self.object("a", namespace: "other", annotations: [key: "4"])))
    #expect(asked.withLock { $0 } == ["ns/a", "ns/b", "other/a"])
  }

  // MARK: the directory source: a touched file asks for its classes

  static func setMtime(_ path: String, seconds: Int) {
    var times = [timespec(tv_sec: seconds, tv_nsec: 0), timespec(tv_sec: seconds, tv_nsec: 0)]
    _ = utimensat(AT_FDCWD, path, &times, 0)
  }

  @Test func aTouchedClassFileAsksForItsClassesOnly() async throws {
    try await DirectorySourceTests.withDirectory { (dir: String) async throws in
      DirectorySourceTests.write(dir + "/a.yaml", DirectorySourceTests.spc("a", provider: "p") + "---\n" + DirectorySourceTests.spc("a2", provider: "p"))
      DirectorySourceTests.write(dir + "/b.yaml", DirectorySourceTests.spc("b", provider: "p"))
      Self.setMtime(dir + "/a.yaml", seconds: 1_000_000)
      Self.setMtime(dir + "/b.yaml", seconds: 1_000_000)
      try await withLoop("on-demand") { loop in
        let source = DirectorySecretProviderClassSource(directory: dir)
        let asked = Locked<[[String]]>([])
        let watch = Task(executorPreference: loop) {
          await source.watchChanges(loop: loop, every: .milliseconds(5)) { classes in
            asked.withLock { $0.append(classes.map { "\($0.namespace)/\($0.name)" }.sorted()) }
          }
        }
        // Give the watch its first listing, then touch a.yaml (same bytes, new mtime).
        try await loop.sleep(milliseconds: 50)
        #expect(asked.withLock { $0 } == [])
        Self.setMtime(dir + "/a.yaml", seconds: 2_000_000)
        await Self.eventually("the touch is seen") { asked.withLock { $0.count } == 1 }
        #expect(asked.withLock { $0 } == [["default/a", "default/a2"]])
        // A rewrite of b.yaml (new inode, new content) names b's classes.
        DirectorySourceTests.write(dir + "/b.yaml", DirectorySourceTests.spc("b", provider: "q"))
        await Self.eventually("the rewrite is seen") { asked.withLock { $0.count } == 2 }
        #expect(asked.withLock { $0.last } == ["default/b"])
        // A file that does not parse names nothing.
        DirectorySourceTests.write(dir + "/c.yaml", "{{{ not yaml")
        try await loop.sleep(milliseconds: 50)
        #expect(asked.withLock { $0.count } == 2)
        watch.cancel()
        await watch.value
      }
    }
  }

  @Test func classFilesCarryTheIntervalAndRefreshAnnotations() throws {
    let yaml = """
      apiVersion: secrets-store.csi.x-k8s.io/v1
      kind: SecretProviderClass
      metadata:
        name: a
        annotations:
          secrets-store.csi.x-k8s.io/rotation-poll-interval: 10m
          secrets-store.csi.x-k8s.io/refresh-requested-at: "2026-12-03T10:00:00Z"
          other: [not, a, string]
      spec: {provider: p}
      """
    guard case .spc(let spc) = try SPCDecoding.decodeAll(yaml).first else {
      Issue.record("no class decoded")
      return
    }
    #expect(spc.rotationInterval == .seconds(600))
    #expect(spc.refreshRequest == "2026-12-03T10:00:00Z")
    let bad = yaml.replacing("10m", with: "-1s")
    guard case .invalid(_, _, let reason) = try SPCDecoding.decodeAll(bad).first else {
      Issue.record("a bad interval was accepted")
      return
    }
    #expect(reason.contains("rotation-poll-interval"))
  }

  // MARK: metrics

  @Test func refreshesCountByTriggerAndResult() {
    let m = DriverMetrics()
    m.rotationReconciled(.refreshed(changed: true), provider: "aws", target: "/t/a", since: .now, trigger: "on_demand")
    m.rotationReconciled(.refreshed(changed: false), provider: "aws", target: "/t/b", since: .now)
    m.rotationReconciled(.refreshFailed(PublishError(.providerUnreachable, "x")), provider: "aws", target: "/t/b", since: .now)
    m.published(.refreshed(changed: false), provider: "aws", target: "/t/a", since: .now)
    m.published(.mounted, provider: "aws", target: "/t/c", since: .now)
    m.onDemandRefreshRequested(source: "annotation")
    m.onDemandRefreshRequested(source: "annotation")
    m.onDemandRefreshRequested(source: "file")
    let text = m.registry.render()
    #expect(text.contains("secrets_store_rotation_refreshes_total{provider=\"aws\",trigger=\"on_demand\",result=\"changed\"} 1\n"))
    #expect(text.contains("secrets_store_rotation_refreshes_total{provider=\"aws\",trigger=\"timer\",result=\"unchanged\"} 1\n"))
    #expect(text.contains("secrets_store_rotation_refreshes_total{provider=\"aws\",trigger=\"timer\",result=\"failed\"} 1\n"))
    #expect(text.contains("secrets_store_rotation_refreshes_total{provider=\"aws\",trigger=\"republish\",result=\"unchanged\"} 1\n"))
    #expect(!text.contains("result=\"mounted\""))
    #expect(text.contains("secrets_store_rotation_on_demand_requests_total{source=\"annotation\"} 2\n"))
    #expect(text.contains("secrets_store_rotation_on_demand_requests_total{source=\"file\"} 1\n"))
    // Upstream's series see the on-demand refresh like any other.
    #expect(text.contains("rotation_reconcile_total{os_type=\"linux\",provider=\"aws\",rotated=\"true\"} 1\n"))
  }
}
