import Glibc
import KubeClient
@testable import OperatorCore
import Testing

private let repoRoot: String = {
  var path = #filePath
  for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
  return path
}()

private func readFile(_ path: String) -> String? {
  guard let f = fopen(path, "r") else { return nil }
  defer { fclose(f) }
  var bytes: [UInt8] = []
  var buf = [UInt8](repeating: 0, count: 65536)
  while true {
    let n = fread(&buf, 1, buf.count, f)
    if n <= 0 { break }
    bytes += buf[0..<n]
  }
  return String(decoding: bytes, as: UTF8.self)
}

private let owner = Owner(apiVersion: "operator.secrets-store.csi.x-k8s.io/v1alpha1", kind: "SecretsStoreCSIDriver", name: "secrets-store.csi.k8s.io", uid: "u-1")

@Suite struct ManifestTests {
  @Test func embeddedTemplatesAreDeploysFiles() throws {
    #expect(Manifests.files.count >= 14)
    for file in Manifests.files {
      let onDisk = try #require(readFile(repoRoot + "/" + file.path), "\(file.path) is missing")
      #expect(file.text + "\n" == onDisk, "\(file.path) differs from the embedded copy: run make manifests")
    }
  }

  @Test func everyTemplateParsesToAKnownKind() throws {
    let templates = try Templates.load()
    #expect(Set(templates.map(\.kind)).isSuperset(of: ["CustomResourceDefinition", "CSIDriver", "DaemonSet", "ClusterRole", "ClusterRoleBinding", "ServiceAccount", "Service"]))
  }
}

@Suite struct RenderTests {
  func render(_ spec: JSONValue, flavour: Flavour = .kubernetes, image: String? = nil) throws -> [DesiredObject] {
    try Render.desired(settings: try DriverSettings.parse(spec: spec), namespace: "ns1", flavour: flavour, defaultImage: image, owner: owner)
  }

  func driverContainer(_ objects: [DesiredObject]) -> JSONValue? {
    objects.first { $0.kind == "DaemonSet" }?.object["spec"]?["template"]?["spec"]?["containers"]?.array?.first { $0["name"]?.string == "secrets-store" }
  }

  @Test func defaultsPutEverythingInTheNamespaceWithLabelAndOwner() throws {
    let objects = try render(.object([:]))
    #expect(!objects.contains { $0.kind == "SecurityContextConstraints" })
    #expect(!objects.contains { $0.name == "secretprovidersyncing-role" })
    for o in objects {
      #expect(o.object["metadata"]?["labels"]?[OperatorLabels.managedBy]?.string == OperatorLabels.managedByValue)
      if o.resource.namespaced { #expect(o.object["metadata"]?["namespace"]?.string == "ns1") }
      let refs = o.object["metadata"]?["ownerReferences"]?.array ?? []
      #expect(refs.isEmpty == (o.kind == "CustomResourceDefinition"), "\(o.kind)/\(o.name)")
    }
    let binding = try #require(objects.first { $0.kind == "ClusterRoleBinding" })
    #expect(binding.object["subjects"]?.array?.first?["namespace"]?.string == "ns1")
    let args = driverContainer(objects)?["args"]?.array?.compactMap(\.string) ?? []
    #expect(args.contains("--enable-secret-rotation=false"))
    #expect(args.contains("-v=2"))
  }

  @Test func specSettingsReachDaemonSetAndCSIDriver() throws {
    let spec: JSONValue = .object([
      "logLevel": .string("Debug"),
      "rotation": .object(["enabled": .bool(true), "pollInterval": .string("30s")]),
      "syncSecret": .object(["enabled": .bool(true)]),
      "tokenRequests": .array([.object(["audience": .string("sts.amazonaws.com")])]),
      "nodeSelector": .object(["role": .string("secrets")]),
      "tolerations": .array([.object(["key": .string("dedicated"), "operator": .string("Exists")])]),
      "image": .string("quay.io/example/driver:v2"),
    ])
    let objects = try render(spec)
    let c = try #require(driverContainer(objects))
    #expect(c["image"]?.string == "quay.io/example/driver:v2")
    let args = c["args"]?.array?.compactMap(\.string) ?? []
    #expect(args.contains("--enable-secret-rotation=true") && args.contains("--rotation-poll-interval=30s") && args.contains("-v=4"))
    #expect(!args.contains("--enable-secret-rotation=false"))
    let pod = objects.first { $0.kind == "DaemonSet" }?.object["spec"]?["template"]?["spec"]
    #expect(pod?["nodeSelector"]?["role"]?.string == "secrets")
    #expect(pod?["nodeSelector"]?["kubernetes.io/os"]?.string == "linux")
    #expect(pod?["tolerations"]?.array?.count == 1)
    #expect(objects.first { $0.kind == "CSIDriver" }?.object["spec"]?["tokenRequests"]?.array?.first?["audience"]?.string == "sts.amazonaws.com")
    #expect(objects.contains { $0.name == "secretprovidersyncing-role" })
    #expect(objects.contains { $0.name == "secretprovidersyncing-rolebinding" })
  }

  @Test func openshiftOverridesLiveInUnsupportedConfigOverrides() throws {
    let spec: JSONValue = .object([
      "managementState": .string("Managed"),
      "unsupportedConfigOverrides": .object(["rotation": .object(["enabled": .bool(true)])]),
    ])
    let objects = try render(spec, flavour: .openshift, image: "registry.example.com/d:1")
    #expect(objects.contains { $0.kind == "SecurityContextConstraints" })
    let c = try #require(driverContainer(objects))
    #expect(c["image"]?.string == "registry.example.com/d:1")
    #expect(c["args"]?.array?.contains(.string("--enable-secret-rotation=true")) == true)
  }
}

@Suite struct SettingsTests {
  @Test(arguments: [
    ("managementState", JSONValue.string("Sometimes")),
    ("logLevel", .string("Loud")),
    ("image", .string("Quay.io/Bad Image")),
    ("image", .string("quay.io/x/y:")),
    ("image", .string("quay.io/x/y@sha256:abc")),
    ("rotation", .object(["pollInterval": .string("soon")])),
    ("tokenRequests", .array([.object(["audience": .string("")])])),
    ("nodeSelector", .object(["bad key!": .string("x")])),
    ("tolerations", .array([.object(["operator": .string("Maybe")])])),
  ])
  func invalidSpecNamesItsField(field: String, value: JSONValue) {
    #expect(throws: DriverSettings.Invalid.self) { try DriverSettings.parse(spec: .object([field: value])) }
    do {
      _ = try DriverSettings.parse(spec: .object([field: value]))
    } catch {
      #expect(error.field.contains(field))
    }
  }

  @Test(arguments: [
    "registry.k8s.io/csi-secrets-store/driver:v1.6.0", "localhost:5000/driver", "driver",
    "quay.io/a/b@sha256:" + String(repeating: "a", count: 64), "quay.io/a/b:v1@sha256:" + String(repeating: "0", count: 64),
  ])
  func validImages(ref: String) {
    #expect(ImageReference.problem(ref) == nil)
  }
}

@Suite struct JSONTreeTests {
  @Test func desiredContainedInLiveWithServerDefaults() {
    let desired: JSONValue = .object(["spec": .object(["a": .int(1), "list": .array([.object(["name": .string("x")])])])])
    let live: JSONValue = .object(["spec": .object(["a": .int(1), "b": .bool(true), "list": .array([.object(["name": .string("x"), "default": .string("d")])])])])
    #expect(JSONTree.upToDate(live: live, desired: desired))
    var edited = live
    edited["spec"]?["a"] = .int(2)
    #expect(!JSONTree.upToDate(live: edited, desired: desired))
    let merged = JSONTree.merge(live: edited, desired: desired)
    #expect(merged["spec"]?["a"] == .int(1))
    #expect(merged["spec"]?["b"] == nil)  // spec replaced whole: a field the operator no longer wants goes
  }

  @Test func labelsMergedOwnerReferencesAdded() {
    let desired: JSONValue = .object(["metadata": .object([
      "labels": .object(["a": .string("1")]), "ownerReferences": .array([.object(["uid": .string("u")])]),
    ])])
    let live: JSONValue = .object(["metadata": .object(["labels": .object(["other": .string("x")]), "resourceVersion": .string("7")])])
    #expect(!JSONTree.upToDate(live: live, desired: desired))
    let merged = JSONTree.merge(live: live, desired: desired)
    #expect(merged["metadata"]?["labels"]?["other"]?.string == "x")
    #expect(merged["metadata"]?["resourceVersion"]?.string == "7")
    #expect(JSONTree.upToDate(live: merged, desired: desired))
  }
}

extension JSONTreeTests {
  @Test func anotherControllerKeepsItsReferenceOursOnlyOwns() {
    let desired: JSONValue = .object(["metadata": .object([
      "ownerReferences": .array([.object(["uid": .string("ours"), "controller": .bool(true)])])
    ])])
    let live: JSONValue = .object(["metadata": .object([
      "ownerReferences": .array([.object(["uid": .string("theirs"), "controller": .bool(true)])])
    ])])
    let refs = JSONTree.merge(live: live, desired: desired)["metadata"]?["ownerReferences"]?.array ?? []
    #expect(refs.count == 2)
    #expect(refs.filter { $0["controller"] == .bool(true) }.count == 1)
    #expect(JSONTree.upToDate(live: JSONTree.merge(live: live, desired: desired), desired: desired))
  }
}

@Suite struct ConditionTests {
  func ds(generation: Int64, observed: Int64?, desired: Int64, ready: Int64, updated: Int64) -> JSONValue {
    var status: [String: JSONValue] = ["desiredNumberScheduled": .int(desired), "numberReady": .int(ready), "updatedNumberScheduled": .int(updated)]
    if let observed { status["observedGeneration"] = .int(observed) }
    return .object(["metadata": .object(["generation": .int(generation)]), "status": .object(status)])
  }

  @Test func availableOnlyWhenEverySelectedNodeIsReadyAndUpdated() {
    #expect(DaemonSetHealth(ds(generation: 2, observed: 2, desired: 3, ready: 3, updated: 3)) == .ready(3))
    #expect(DaemonSetHealth(ds(generation: 2, observed: 1, desired: 3, ready: 3, updated: 3)) == .notObserved)
    #expect(DaemonSetHealth(ds(generation: 2, observed: 2, desired: 3, ready: 2, updated: 3)).available.status == false)
    #expect(DaemonSetHealth(ds(generation: 2, observed: 2, desired: 3, ready: 3, updated: 2)).progressing.status == true)
    #expect(DaemonSetHealth(ds(generation: 1, observed: nil, desired: 0, ready: 0, updated: 0)) == .notObserved)
    #expect(DaemonSetHealth(nil) == .missing)
  }

  @Test func transitionTimeKeptWhileStatusStays() throws {
    let s = OperatorStatus(
      observedGeneration: 3, available: Condition("Available", true, "AsExpected"), progressing: Condition("Progressing", false, "AsExpected"),
      degraded: Condition("Degraded", false, "AsExpected"))
    let first = try #require(s.patch(over: nil, now: "2026-01-01T00:00:00Z"))
    #expect(s.patch(over: first["status"], now: "2026-01-02T00:00:00Z") == nil)
    var t = s
    t.available = Condition("Available", false, "Deploying")
    let second = try #require(t.patch(over: first["status"], now: "2026-01-02T00:00:00Z"))
    let conditions = second["status"]?["conditions"]?.array ?? []
    #expect(conditions.first { $0["type"]?.string == "Available" }?["lastTransitionTime"]?.string == "2026-01-02T00:00:00Z")
    #expect(conditions.first { $0["type"]?.string == "Degraded" }?["lastTransitionTime"]?.string == "2026-01-01T00:00:00Z")
  }
}

@Suite struct WorkQueueTests {
  @Test func addsCoalesceAndAKeyIsNeverProcessedTwiceAtOnce() async {
    let q = WorkQueue()
    await q.add("a")
    await q.add("a")
    await q.add("b")
    #expect(await q.length == 2)
    let first = await q.next()
    #expect(first == "a")
    await q.add("a")  // while processing: queued again after done
    #expect(await q.length == 1)
    #expect(await q.next() == "b")
    await q.done("a")
    #expect(await q.next() == "a")
  }

  @Test func failuresBackOffExponentiallyUntilForgotten() async {
    let q = WorkQueue(baseDelay: .milliseconds(100), maxDelay: .seconds(1))
    #expect(await q.addAfterFailure("k") == .milliseconds(100))
    #expect(await q.addAfterFailure("k") == .milliseconds(200))
    #expect(await q.addAfterFailure("k") == .milliseconds(400))
    #expect(await q.addAfterFailure("k") == .milliseconds(800))
    #expect(await q.addAfterFailure("k") == .seconds(1))
    #expect(await q.addAfterFailure("other") == .milliseconds(100))
    await q.forget("k")
    #expect(await q.addAfterFailure("k") == .milliseconds(100))
  }

  @Test func shutDownWakesWaiters() async {
    let q = WorkQueue()
    async let key = q.next()
    await Task.yield()
    await q.shutDown()
    #expect(await key == nil)
  }
}
