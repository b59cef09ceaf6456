import FoundationEssentials
import KubeClient
import Logging
@testable import OperatorCore
import Testing
import UVRuntime

/// A small in-memory API server behind `KubeTransport`: objects by path, labelled lists,
/// create/update (with resourceVersion checks)/status merge patch/delete, and injected
/// conflicts. Enough for a Reconciler pass, deterministic, no sockets.
final class FakeAPI: KubeTransport, @unchecked Sendable {
  struct State {
    var objects: [String: JSONValue] = [:]
    var version = 100
    var conflictsOnPut = 0
    var log: [(method: String, path: String)] = []
  }
  let state = Locked(State())

  static let plurals: Set<String> = [
    "customresourcedefinitions", "csidrivers", "serviceaccounts", "services", "clusterroles", "clusterrolebindings",
    "daemonsets", "secretsstorecsidrivers", "secretproviderclasses", "securitycontextconstraints",
  ]

  func put(_ path: String, _ object: JSONValue) {
    state.withLock { s in
      var o = object
      s.version += 1
      o["metadata"]?["resourceVersion"] = .string("\(s.version)")
      if o["metadata"]?["uid"] == nil { o["metadata"]?["uid"] = .string("uid-\(s.version)") }
      if o["metadata"]?["generation"] == nil { o["metadata"]?["generation"] = .int(1) }
      s.objects[path] = o
    }
  }

  func object(_ path: String) -> JSONValue? { state.withLock { $0.objects[path] } }
  func writes() -> [String] { state.withLock { $0.log.filter { $0.method != "GET" }.map { "\($0.method) \($0.path)" } } }
  func clearLog() { state.withLock { $0.log = [] } }

  static func status(_ code: Int, _ reason: String) -> KubeHTTPResponse {
    KubeHTTPResponse(status: code, body: Array(#"{"kind":"Status","status":"Failure","code":\#(code),"reason":"\#(reason)","message":"\#(reason)"}"#.utf8))
  }

  static func body(_ v: JSONValue) -> [UInt8] { Array(try! JSONEncoder().encode(v)) }

  func send(_ request: KubeHTTPRequest) async throws -> KubeHTTPResponse {
    var path = request.path
    var query = ""
    if let q = path.firstIndex(of: "?") {
      query = String(path[path.index(after: q)...])
      path = String(path[..<q])
    }
    let body = try request.body.map { try JSONDecoder().decode(JSONValue.self, from: Data($0)) }
    return state.withLock { s -> KubeHTTPResponse in
      s.log.append((request.method, path))
      let last = String(path.split(separator: "/").last ?? "")
      let isCollection = Self.plurals.contains(last)
      switch request.method {
      case "GET" where isCollection:
        var selector: (String, String)?
        for part in query.split(separator: "&") where part.hasPrefix("labelSelector=") {
          let v = String(part.dropFirst("labelSelector=".count)).replacing("%3D", with: "=").replacing("%2F", with: "/")
          let kv = v.split(separator: "=", maxSplits: 1).map(String.init)
          selector = (kv[0], kv[1])
        }
        let items = s.objects.filter { p, o in
          p.hasPrefix(path + "/") && !p.dropFirst(path.count + 1).contains("/")
            && (selector.map { o["metadata"]?["labels"]?[$0.0]?.string == $0.1 } ?? true)
        }.map(\.value)
        return KubeHTTPResponse(
          status: 200, body: Self.body(.object(["metadata": .object(["resourceVersion": .string("\(s.version)")]), "items": .array(items)])))
      case "GET":
        guard let o = s.objects[path] else { return Self.status(404, "NotFound") }
        return KubeHTTPResponse(status: 200, body: Self.body(o))
      case "POST":
        guard var o = body, let name = o["metadata"]?["name"]?.string else { return Self.status(400, "BadRequest") }
        let objectPath = path + "/" + name
        if s.objects[objectPath] != nil { return Self.status(409, "AlreadyExists") }
        s.version += 1
        o["metadata"]?["resourceVersion"] = .string("\(s.version)")
        o["metadata"]?["uid"] = .string("uid-\(s.version)")
        o["metadata"]?["generation"] = .int(1)
        s.objects[objectPath] = o
        return KubeHTTPResponse(status: 201, body: Self.body(o))
      case "PUT":
        guard var o = body, let live = s.objects[path] else { return Self.status(404, "NotFound") }
        if s.conflictsOnPut > 0 || o["metadata"]?["resourceVersion"] != live["metadata"]?["resourceVersion"] {
          s.conflictsOnPut = max(0, s.conflictsOnPut - 1)
          return Self.status(409, "Conflict")
        }
        s.version += 1
        o["metadata"]?["resourceVersion"] = .string("\(s.version)")
        s.objects[path] = o
        return KubeHTTPResponse(status: 200, body: Self.body(o))
      case "PATCH" where path.hasSuffix("/status"):
        let objectPath = String(path.dropLast("/status".count))
        guard var o = s.objects[objectPath] else { return Self.status(404, "NotFound") }
        o["status"] = body?["status"]
        s.version += 1
        o["metadata"]?["resourceVersion"] = .string("\(s.version)")
        s.objects[objectPath] = o
        return KubeHTTPResponse(status: 200, body: Self.body(o))
      case "DELETE":
        guard s.objects.removeValue(forKey: path) != nil else { return Self.status(404, "NotFound") }
        return KubeHTTPResponse(status: 200, body: Array(#"{"kind":"Status","status":"Success"}"#.utf8))
      default:
        return Self.status(405, "MethodNotAllowed")
      }
    }
  }

  func streamLines(_ request: KubeHTTPRequest) async throws -> KubeHTTPStream {
    throw KubeTransportError("no watches here")
  }
}

let crPath = "/apis/operator.secrets-store.csi.x-k8s.io/v1alpha1/secretsstorecsidrivers/secrets-store.csi.k8s.io"
let dsPath = "/apis/apps/v1/namespaces/ns1/daemonsets/csi-secrets-store"
let spcCRDPath = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/secretproviderclasses.secrets-store.csi.x-k8s.io"

func withReconciler(spec: JSONValue, _ body: (Reconciler, FakeAPI) async throws -> Void) async throws {
  let loop = EventLoop(name: "reconciler-test")
  let api = FakeAPI()
  api.put(crPath, .object(["apiVersion": .string("operator.secrets-store.csi.x-k8s.io/v1alpha1"), "kind": .string("SecretsStoreCSIDriver"),
    "metadata": .object(["name": .string("secrets-store.csi.k8s.io")]), "spec": spec]))
  let client = KubeClient(config: KubeConfig(server: "https://fake", credentials: .none), transport: api, loop: loop)
  let config = OperatorConfig(clusterResource: .secretsStoreCSIDriver, namespace: "ns1", defaultDriverImage: "example.com/d:1")
  do {
    try await body(Reconciler(client: client, config: config, logger: Logger(label: "test")), api)
  } catch {
    await loop.shutdownAndWait()
    throw error
  }
  await loop.shutdownAndWait()
  #expect(loop.leakedHandles.isEmpty && loop.closeResult == 0)
}

func conditionStatus(_ api: FakeAPI, _ type: String) -> (String?, String?) {
  let c = api.object(crPath)?["status"]?["conditions"]?.array?.first { $0["type"]?.string == type }
  return (c?["status"]?.string, c?["reason"]?.string)
}

@Suite struct ReconcilerTests {
  @Test func managedCreatesEverythingOnceThenChangesNothing() async throws {
    try await withReconciler(spec: .object(["managementState": .string("Managed")])) { r, api in
      let first = try await r.reconcile()
      #expect(first.created.count == 11)
      #expect(api.object(dsPath)?["metadata"]?["ownerReferences"]?.array?.first?["uid"] == api.object(crPath)?["metadata"]?["uid"])
      #expect(conditionStatus(api, "Progressing").0 == "True")
      api.clearLog()
      let second = try await r.reconcile()
      #expect(second.created.isEmpty && second.updated.isEmpty && second.deleted.isEmpty)
      #expect(api.writes().isEmpty, "a pass over an up-to-date install writes nothing: \(api.writes())")
    }
  }

  @Test func driftIsPutBackThroughAConflict() async throws {
    try await withReconciler(spec: .object([:])) { r, api in
      _ = try await r.reconcile()
      var ds = try #require(api.object(dsPath))
      var containers = ds["spec"]?["template"]?["spec"]?["containers"]?.array ?? []
      for i in containers.indices where containers[i]["name"]?.string == "secrets-store" { containers[i]["image"] = .string("other:1") }
      ds["spec"]?["template"]?["spec"]?["containers"] = .array(containers)
      api.put(dsPath, ds)
      api.state.withLock { $0.conflictsOnPut = 1 }
      api.clearLog()
      let outcome = try await r.reconcile()
      #expect(outcome.updated == ["DaemonSet/csi-secrets-store"])
      #expect(api.writes().filter { $0 == "PUT \(dsPath)" }.count == 2)
      let image = api.object(dsPath)?["spec"]?["template"]?["spec"]?["containers"]?.array?.first { $0["name"]?.string == "secrets-store" }?["image"]
      #expect(image == .string("example.com/d:1"))
    }
  }

  @Test func removedKeepsTheCRDsWhileAClassExists() async throws {
    try await withReconciler(spec: .object([:])) { r, api in
      _ = try await r.reconcile()
      let spc = "/apis/secrets-store.csi.x-k8s.io/v1/secretproviderclasses/app"
      api.put(spc, .object(["metadata": .object(["name": .string("app")])]))
      api.put("/api/v1/namespaces/ns1/serviceaccounts/unrelated", .object(["metadata": .object(["name": .string("unrelated")])]))
      var cr = try #require(api.object(crPath))
      cr["spec"] = .object(["managementState": .string("Removed")])
      api.put(crPath, cr)
      let outcome = try await r.reconcile()
      #expect(outcome.deleted.count == 9)
      #expect(outcome.requeueAfter != nil)
      #expect(api.object(dsPath) == nil)
      #expect(api.object(spcCRDPath) != nil)
      #expect(api.object("/api/v1/namespaces/ns1/serviceaccounts/unrelated") != nil)
      #expect(conditionStatus(api, "Available") == ("False", "Removed"))
      _ = api.state.withLock { $0.objects.removeValue(forKey: spc) }
      let again = try await r.reconcile()
      #expect(again.deleted.count == 2)
      #expect(api.object(spcCRDPath) == nil)
    }
  }

  @Test func anInvalidSpecWritesOnlyTheStatus() async throws {
    try await withReconciler(spec: .object(["rotation": .object(["pollInterval": .string("often")])])) { r, api in
      _ = try await r.reconcile()
      #expect(api.writes() == ["PATCH \(crPath)/status"])
      #expect(conditionStatus(api, "Degraded") == ("True", "InvalidSpec"))
    }
  }
}
