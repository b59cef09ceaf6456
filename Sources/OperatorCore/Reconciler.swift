public import KubeClient
public import Logging
import UVRuntime
import TextFormats

/// One level-based pass from the cluster resource to the objects of the install. It
/// reads everything it decides on from the API server each time (no cache to go stale),
/// so running it again after any failure, event or restart converges the same way.
public struct Reconciler: Sendable {
  public let client: KubeClient
  public let config: OperatorConfig
  public let logger: Logger
  /// Versions this operator wrote: their watch events need no new pass.
  let ownWrites = OwnWrites()

  public init(client: KubeClient, config: OperatorConfig, logger: Logger) {
    self.client = client
    self.config = config
    self.logger = logger
  }

  /// What one pass did, for logs and tests.
  public struct Outcome: Sendable {
    public var created: [String] = []
    public var updated: [String] = []
    public var deleted: [String] = []
    public var status: OperatorStatus?
    /// Look again after this long although nothing may send an event (CRDs kept while
    /// SecretProviderClasses exist: their deletion is not watched).
    public var requeueAfter: Duration?
  }

  public struct Failure: Error, CustomStringConvertible {
    public var description: String
  }

  public func reconcile() async throws -> Outcome {
    let cr: JSONValue
    do {
      cr = try await client.get(JSONValue.self, config.clusterResource.resource, namespace: nil, name: config.clusterResource.name)
    } catch let error as KubeError where error.isNotFound {
      // Its objects are owned by it: the garbage collector removes them (CRDs stay).
      return Outcome()
    }
    let meta = cr["metadata"]
    if meta?["deletionTimestamp"] != nil { return Outcome() }
    let generation = meta?["generation"]?.int
    var outcome = Outcome()

    let settings: DriverSettings
    do {
      settings = try DriverSettings.parse(spec: cr["spec"])
    } catch {
      // Nothing is applied from a spec that does not validate; what runs keeps running.
      logger.warning("invalid spec: nothing applied", metadata: ["problem": "\(error)"])
      let ds = try? await liveDaemonSet()
      let health = DaemonSetHealth(ds)
      let status = OperatorStatus(
        observedGeneration: generation, available: health.available,
        progressing: Condition("Progressing", false, "InvalidSpec", "the spec is invalid; nothing was changed"),
        degraded: Condition("Degraded", true, "InvalidSpec", error.description))
      try await write(status, over: cr)
      outcome.status = status
      return outcome
    }

    let status: OperatorStatus
    switch settings.managementState {
    case .unmanaged:
      let health = DaemonSetHealth(try? await liveDaemonSet())
      status = OperatorStatus(
        observedGeneration: generation, available: health.available,
        progressing: Condition("Progressing", false, "Unmanaged", "managementState is Unmanaged: the operator changes nothing"),
        degraded: Condition("Degraded", false, "Unmanaged"))
    case .removed:
      var keptCRDs = 0
      do {
        keptCRDs = try await removeAll(keep: [], outcome: &outcome, deleteCRDs: true)
      } catch {
        try? await write(await failed(generation, "RemoveFailed", error), over: cr)
        throw error
      }
      if keptCRDs > 0 { outcome.requeueAfter = .seconds(30) }
      let message =
        keptCRDs > 0
        ? "the driver is removed; its CRDs are kept while SecretProviderClasses exist (delete them, and the CRDs go)"
        : "the driver is removed"
      status = OperatorStatus(
        observedGeneration: generation, available: Condition("Available", false, "Removed", message),
        progressing: Condition("Progressing", false, "Removed"), degraded: Condition("Degraded", false, "Removed"))
    case .managed:
      do {
        let owner = Owner(
          apiVersion: config.clusterResource.resource.apiVersion, kind: config.clusterResource.kind,
          name: config.clusterResource.name, uid: meta?["uid"]?.string ?? "")
        let desired = try Render.desired(
          settings: settings, namespace: config.namespace, flavour: config.flavour, defaultImage: config.defaultDriverImage, owner: owner)
        var daemonSet: JSONValue?
        for d in desired {
          let (result, live) = try await apply(d)
          switch result {
          case .created: outcome.created.append("\(d.kind)/\(d.name)")
          case .updated: outcome.updated.append("\(d.kind)/\(d.name)")
          case .unchanged: break
          }
          if d.resource == ManagedKinds.daemonSets { daemonSet = live }
        }
        // What an earlier spec wanted and this one does not (sync turned off: its RBAC).
        _ = try await removeAll(keep: Set(desired.map { Key($0.resource, $0.namespace, $0.name) }), outcome: &outcome, deleteCRDs: false)
        let health = DaemonSetHealth(daemonSet)
        status = OperatorStatus(
          observedGeneration: generation, available: health.available, progressing: health.progressing,
          degraded: Condition("Degraded", false, "AsExpected"))
      } catch {
        try? await write(await failed(generation, "ApplyFailed", error), over: cr)
        throw error
      }
    }
    try await write(status, over: cr)
    outcome.status = status
    return outcome
  }

  /// A failed pass: Degraded, retried; Available still says what the DaemonSet shows
  /// (a transient API error does not make a running driver unavailable).
  func failed(_ generation: Int64?, _ reason: String, _ error: any Error) async -> OperatorStatus {
    let health = DaemonSetHealth(try? await liveDaemonSet())
    return OperatorStatus(
      observedGeneration: generation, available: health.available,
      progressing: Condition("Progressing", true, reason, "retrying"),
      degraded: Condition("Degraded", true, reason, "\(error)"))
  }

  func liveDaemonSet() async throws -> JSONValue? {
    guard let name = Self.daemonSetName else { return nil }
    do {
      return try await client.get(JSONValue.self, ManagedKinds.daemonSets, namespace: config.namespace, name: name)
    } catch let error as KubeError where error.isNotFound {
      return nil
    }
  }

  static let daemonSetName: String? = {
    guard case .success(let t) = Templates.parsed else { return nil }
    return t.first { $0.resource == ManagedKinds.daemonSets }?.name
  }()

  func write(_ status: OperatorStatus, over cr: JSONValue) async throws {
    guard let patch = status.patch(over: cr["status"], now: OperatorStatus.timestamp()) else { return }
    let body = try JSONEncoding.encode(patch)
    let written = try await client.mergePatch(
      JSONValue.self, config.clusterResource.resource, namespace: nil, name: config.clusterResource.name, patch: body,
      subresource: "status")
    ownWrites.note(written)
  }

  enum ApplyResult { case created, updated, unchanged }

  /// Create, or update what differs (the desired object must be contained in the live
  /// one: the server adds defaults); a conflict reads again and retries.
  func apply(_ d: DesiredObject) async throws -> (ApplyResult, JSONValue) {
    var attempt = 0
    while true {
      attempt += 1
      let live: JSONValue
      do {
        live = try await client.get(JSONValue.self, d.resource, namespace: d.namespace, name: d.name)
      } catch let error as KubeError where error.isNotFound {
        do {
          let created = try await client.create(d.object, d.resource, namespace: d.namespace)
          ownWrites.note(created)
          logger.info("created", metadata: ["object": "\(d.kind)/\(d.name)"])
          return (.created, created)
        } catch let error as KubeError where error.isAlreadyExists && attempt < 5 {
          continue
        }
      }
      if live["metadata"]?["deletionTimestamp"] != nil {
        throw Failure(description: "\(d.kind) \(d.name) is being deleted; it is created again once it is gone")
      }
      if JSONTree.upToDate(live: live, desired: d.object) { return (.unchanged, live) }
      let merged = JSONTree.merge(live: live, desired: d.object)
      do {
        let updated = try await client.update(merged, d.resource, namespace: d.namespace, name: d.name)
        ownWrites.note(updated)
        logger.info("updated", metadata: ["object": "\(d.kind)/\(d.name)"])
        return (.updated, updated)
      } catch let error as KubeError where error.isConflict && attempt < 5 {
        continue
      }
    }
  }

  struct Key: Hashable {
    var resource: KubeResource
    var namespace: String?
    var name: String
    init(_ resource: KubeResource, _ namespace: String?, _ name: String) {
      self.resource = resource
      self.namespace = namespace
      self.name = name
    }
  }

  /// Deletes every object with the operator's label not in `keep`, in dependency order.
  /// CRDs only with `deleteCRDs`, and only when no SecretProviderClass is left (deleting
  /// the CRD would delete them all). Returns how many CRDs were kept for that reason.
  func removeAll(keep: Set<Key>, outcome: inout Outcome, deleteCRDs: Bool) async throws -> Int {
    var keptCRDs = 0
    for resource in ManagedKinds.all(flavour: config.flavour) {
      if resource == ManagedKinds.customResourceDefinitions && !deleteCRDs { continue }
      let namespace = resource.namespaced ? config.namespace : nil
      let items: [JSONValue]
      do {
        items = try await client.list(JSONValue.self, resource, namespace: namespace, labelSelector: OperatorLabels.selector).items
      } catch let error as KubeError where error.isNotFound {
        continue  // a kind this cluster does not have (no SCCs outside OpenShift)
      }
      for item in items {
        guard let name = item["metadata"]?["name"]?.string, !keep.contains(Key(resource, namespace, name)) else { continue }
        if item["metadata"]?["deletionTimestamp"] != nil { continue }
        if resource == ManagedKinds.customResourceDefinitions, try await classesRemain() {
          keptCRDs += 1
          continue
        }
        try await client.delete(resource, namespace: namespace, name: name, uid: item["metadata"]?["uid"]?.string)
        logger.info("deleted", metadata: ["object": "\(item["kind"]?.string ?? resource.plural)/\(name)"])
        outcome.deleted.append("\(item["kind"]?.string ?? resource.plural)/\(name)")
      }
    }
    return keptCRDs
  }

  func classesRemain() async throws -> Bool {
    do {
      return try await !client.list(JSONValue.self, KubeResource.secretProviderClasses).items.isEmpty
    } catch let error as KubeError where error.isNotFound {
      return false
    }
  }
}

/// The resourceVersions of the operator's own writes. A watch event carrying one of them
/// is the echo of a write the pass that made it already accounted for: skipping it saves
/// a pass that would change nothing. Any other version (another writer, the DaemonSet
/// controller's status) still queues a pass.
final class OwnWrites: Sendable {
  private let versions = Locked<Set<String>>([])

  func note(_ object: JSONValue) {
    guard let v = object["metadata"]?["resourceVersion"]?.string else { return }
    versions.withLock {
      if $0.count > 1000 { $0.removeAll() }  // echoes that never came (a watch restarted)
      $0.insert(v)
    }
  }

  /// True (and forgotten) when `object` is exactly what this operator wrote.
  func isEcho(_ object: JSONValue) -> Bool {
    guard let v = object["metadata"]?["resourceVersion"]?.string else { return false }
    return versions.withLock { $0.remove(v) != nil }
  }
}

enum JSONEncoding {
  static func encode(_ value: JSONValue) throws -> [UInt8] {
    var out: [UInt8] = []
    write(value, to: &out)
    return out
  }

  static func write(_ value: JSONValue, to out: inout [UInt8]) {
    switch value {
    case .null: out += Array("null".utf8)
    case .bool(let b): out += Array((b ? "true" : "false").utf8)
    case .int(let i): out += Array(String(i).utf8)
    case .double(let d): out += Array((d.isFinite ? "\(d)" : "null").utf8)
    case .string(let s): JSONText.appendString(s, to: &out, htmlSafe: false)
    case .array(let a):
      out.append(UInt8(ascii: "["))
      for (i, v) in a.enumerated() {
        if i > 0 { out.append(UInt8(ascii: ",")) }
        write(v, to: &out)
      }
      out.append(UInt8(ascii: "]"))
    case .object(let o):
      out.append(UInt8(ascii: "{"))
      for (i, k) in o.keys.sorted().enumerated() {
        if i > 0 { out.append(UInt8(ascii: ",")) }
        JSONText.appendString(k, to: &out, htmlSafe: false)
        out.append(UInt8(ascii: ":"))
        write(o[k]!, to: &out)
      }
      out.append(UInt8(ascii: "}"))
    }
  }
}
