public import KubeClient
import Glibc

/// An OpenShift operator condition (`Available`, `Progressing`, `Degraded`).
public struct Condition: Sendable, Equatable {
  public var type: String
  public var status: Bool
  public var reason: String
  public var message: String

  public init(_ type: String, _ status: Bool, _ reason: String, _ message: String = "") {
    self.type = type
    self.status = status
    self.reason = reason
    self.message = message
  }
}

/// What a reconcile concluded, as the status the cluster resource shows.
public struct OperatorStatus: Sendable, Equatable {
  public var observedGeneration: Int64?
  public var available: Condition
  public var progressing: Condition
  public var degraded: Condition

  var conditions: [Condition] { [available, progressing, degraded] }

  /// The status object to write: conditions keep their lastTransitionTime while their
  /// status stays the same. Nil when nothing changed (no write, no watch event).
  func patch(over current: JSONValue?, now: String) -> JSONValue? {
    let old = current?["conditions"]?.array ?? []
    var changed = current?["observedGeneration"]?.int != observedGeneration
    var out: [JSONValue] = []
    // Conditions of other types (e.g. from other controllers) stay as they are.
    for c in old where !conditions.contains(where: { $0.type == c["type"]?.string }) { out.append(c) }
    for c in conditions {
      let status = c.status ? "True" : "False"
      let previous = old.first { $0["type"]?.string == c.type }
      var since = now
      if let previous, previous["status"]?.string == status, let t = previous["lastTransitionTime"]?.string { since = t }
      if previous?["status"]?.string != status || previous?["reason"]?.string != c.reason || previous?["message"]?.string != c.message {
        changed = true
      }
      out.append(
        .object([
          "type": .string(c.type), "status": .string(status), "reason": .string(c.reason), "message": .string(c.message),
          "lastTransitionTime": .string(since),
        ]))
    }
    guard changed else { return nil }
    var status = current?.object ?? [:]
    status["conditions"] = .array(out)
    if let observedGeneration { status["observedGeneration"] = .int(observedGeneration) }
    return .object(["status": .object(status)])
  }

  /// RFC 3339 in UTC, seconds precision (metav1.Time).
  public static func timestamp() -> String {
    var t = time(nil)
    var tm = Glibc.tm()
    gmtime_r(&t, &tm)
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(tm.tm_year + 1900)-\(two(tm.tm_mon + 1))-\(two(tm.tm_mday))T\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec))Z"
  }
}

/// Rollout state of the driver's DaemonSet, as far as the API shows it.
public enum DaemonSetHealth: Equatable, Sendable {
  case missing
  /// The DaemonSet controller has not seen the latest spec yet.
  case notObserved
  case rolling(ready: Int64, updated: Int64, desired: Int64)
  case noNodes
  case ready(Int64)

  public init(_ ds: JSONValue?) {
    guard let ds else {
      self = .missing
      return
    }
    let generation = ds["metadata"]?["generation"]?.int ?? 0
    let status = ds["status"]
    guard let observed = status?["observedGeneration"]?.int, observed >= generation else {
      self = .notObserved
      return
    }
    let desired = status?["desiredNumberScheduled"]?.int ?? 0
    let ready = status?["numberReady"]?.int ?? 0
    let updated = status?["updatedNumberScheduled"]?.int ?? 0
    if desired == 0 {
      self = .noNodes
    } else if ready == desired && updated == desired {
      self = .ready(desired)
    } else {
      self = .rolling(ready: ready, updated: updated, desired: desired)
    }
  }

  var available: Condition {
    switch self {
    case .ready(let n): return Condition("Available", true, "AsExpected", "the driver is ready on all \(n) selected nodes")
    case .missing: return Condition("Available", false, "DaemonSetMissing", "the driver's DaemonSet does not exist")
    case .notObserved: return Condition("Available", false, "Deploying", "the DaemonSet controller has not reported on the latest spec yet")
    case .noNodes: return Condition("Available", false, "NoNodesSelected", "no node is selected to run the driver")
    case .rolling(let ready, let updated, let desired):
      return Condition("Available", false, "Deploying", "\(ready) of \(desired) driver pods ready, \(updated) updated")
    }
  }

  var progressing: Condition {
    switch self {
    case .ready, .noNodes: return Condition("Progressing", false, "AsExpected")
    case .missing: return Condition("Progressing", true, "Deploying", "creating the driver's DaemonSet")
    case .notObserved: return Condition("Progressing", true, "Deploying", "waiting for the DaemonSet controller")
    case .rolling(let ready, let updated, let desired):
      return Condition("Progressing", true, "Deploying", "rolling out the driver: \(updated) of \(desired) pods updated, \(ready) ready")
    }
  }
}
