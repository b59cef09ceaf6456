public import KubeClient

/// One object the operator wants in the cluster.
public struct DesiredObject: Sendable {
  public var resource: KubeResource
  public var namespace: String?
  public var name: String
  public var object: JSONValue
  public var kind: String { object["kind"]?.string ?? "" }
}

/// The owner every created object points at (the cluster resource).
public struct Owner: Sendable {
  public var apiVersion: String
  public var kind: String
  public var name: String
  public var uid: String
}

/// Labels that mark what the operator created: removal and pruning list by them.
public enum OperatorLabels {
  public static let managedBy = "app.kubernetes.io/managed-by"
  public static let managedByValue = "secrets-store-csi-driver-operator"
  public static var selector: String { "\(managedBy)=\(managedByValue)" }
}

/// deploy/'s objects as the settings want them: the operator's namespace, its labels and
/// owner reference, and the spec's settings written into the DaemonSet and CSIDriver.
public enum Render {
  public static let driverContainer = "secrets-store"

  public static func desired(
    settings: DriverSettings, namespace: String, flavour: Flavour, defaultImage: String?, owner: Owner
  ) throws -> [DesiredObject] {
    let templates: [Template]
    switch Templates.parsed {
    case .success(let t): templates = t
    case .failure(let problem): throw problem
    }
    var out: [DesiredObject] = []
    for t in templates {
      switch t.group {
      case .base: break
      case .syncSecret: if !settings.syncSecret { continue }
      case .openshift: if flavour != .openshift { continue }
      }
      var object = t.object
      var meta = object["metadata"]?.object ?? [:]
      if t.resource.namespaced { meta["namespace"] = .string(namespace) } else { meta["namespace"] = nil }
      var labels = meta["labels"]?.object ?? [:]
      labels[OperatorLabels.managedBy] = .string(OperatorLabels.managedByValue)
      meta["labels"] = .object(labels)
      // CRDs carry no owner reference: deleting the cluster resource must not make the
      // garbage collector delete every user's SecretProviderClass with them.
      if t.resource != ManagedKinds.customResourceDefinitions {
        meta["ownerReferences"] = .array([
          .object([
            "apiVersion": .string(owner.apiVersion), "kind": .string(owner.kind), "name": .string(owner.name),
            "uid": .string(owner.uid), "controller": .bool(true),
          ])
        ])
      }
      object["metadata"] = .object(meta)
      switch t.resource {
      case ManagedKinds.clusterRoleBindings:
        object["subjects"] = .array(
          (object["subjects"]?.array ?? []).map { s in
            var s = s
            if s["kind"]?.string == "ServiceAccount" { s["namespace"] = .string(namespace) }
            return s
          })
      case ManagedKinds.daemonSets:
        object = daemonSet(object, settings: settings, defaultImage: defaultImage)
      case ManagedKinds.csiDrivers:
        if !settings.tokenRequests.isEmpty { object["spec"]?["tokenRequests"] = .array(settings.tokenRequests) }
      default: break
      }
      out.append(DesiredObject(resource: t.resource, namespace: t.resource.namespaced ? namespace : nil, name: t.name, object: object))
    }
    return out
  }

  static func daemonSet(_ ds: JSONValue, settings: DriverSettings, defaultImage: String?) -> JSONValue {
    var ds = ds
    guard var podSpec = ds["spec"]?["template"]?["spec"] else { return ds }
    if let selector = settings.nodeSelector {
      var merged = podSpec["nodeSelector"]?.object ?? [:]
      for (k, v) in selector { merged[k] = .string(v) }
      podSpec["nodeSelector"] = .object(merged)
    }
    if let tolerations = settings.tolerations { podSpec["tolerations"] = .array(tolerations) }
    podSpec["containers"] = .array(
      (podSpec["containers"]?.array ?? []).map { c in
        guard c["name"]?.string == driverContainer else { return c }
        var c = c
        if let image = settings.image ?? defaultImage { c["image"] = .string(image) }
        var args = (c["args"]?.array ?? []).compactMap(\.string).filter { a in
          !a.hasPrefix("-v=") && !a.hasPrefix("--v=") && !a.hasPrefix("--enable-secret-rotation")
            && !a.hasPrefix("--rotation-poll-interval")
        }
        args.append("--enable-secret-rotation=\(settings.rotationEnabled)")
        args.append("--rotation-poll-interval=\(settings.rotationPollInterval)")
        args.append("-v=\(settings.verbosity)")
        c["args"] = .array(args.map(JSONValue.string))
        return c
      })
    ds["spec"]?["template"]?["spec"] = podSpec
    return ds
  }
}
