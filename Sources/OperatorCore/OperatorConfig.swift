public import KubeClient

/// The operator's configuration, from its flags.
public struct OperatorConfig: Sendable {
  /// The cluster resource kind it watches, and its singleton name.
  public var clusterResource: ClusterResource
  /// Where the driver's namespaced objects go.
  public var namespace: String
  public var flavour: Flavour
  /// The driver image when the cluster resource names none (the CSV sets it).
  public var defaultDriverImage: String?
  /// Every this long everything is checked again, even without a watch event.
  public var resyncInterval: Duration = .seconds(600)

  public init(clusterResource: ClusterResource, namespace: String? = nil, flavour: Flavour? = nil, defaultDriverImage: String? = nil) {
    self.clusterResource = clusterResource
    let flavour = flavour ?? clusterResource.flavour
    self.flavour = flavour
    self.namespace = namespace ?? (flavour == .openshift ? "openshift-cluster-csi-drivers" : "kube-system")
    self.defaultDriverImage = defaultDriverImage
  }
}

/// The kinds of cluster resource the operator can watch; one code path serves both.
public struct ClusterResource: Sendable, Equatable {
  public var resource: KubeResource
  public var kind: String
  public var name: String
  public var flavour: Flavour

  /// OpenShift's `operator.openshift.io/v1` ClusterCSIDriver, installed with OpenShift.
  public static let clusterCSIDriver = ClusterResource(
    resource: KubeResource(group: "operator.openshift.io", version: "v1", plural: "clustercsidrivers", namespaced: false),
    kind: "ClusterCSIDriver", name: "secrets-store.csi.k8s.io", flavour: .openshift)

  /// Ours, for any cluster: deploy/olm/manifests' CRD.
  public static let secretsStoreCSIDriver = ClusterResource(
    resource: KubeResource(group: "operator.secrets-store.csi.x-k8s.io", version: "v1alpha1", plural: "secretsstorecsidrivers", namespaced: false),
    kind: "SecretsStoreCSIDriver", name: "secrets-store.csi.k8s.io", flavour: .kubernetes)

  public static func named(_ kind: String) -> ClusterResource? {
    switch kind.lowercased() {
    case "clustercsidriver", "clustercsidrivers", "clustercsidrivers.operator.openshift.io": return .clusterCSIDriver
    case "secretsstorecsidriver", "secretsstorecsidrivers", "secretsstorecsidrivers.operator.secrets-store.csi.x-k8s.io":
      return .secretsStoreCSIDriver
    default: return nil
    }
  }
}

extension ClusterResource {
  /// `--resource-kind=auto`: OpenShift's ClusterCSIDriver where the API serves it, else
  /// ours. Asked by listing it (the permission the operator has anyway); an error other
  /// than "no such resource" is retried, since guessing wrong would manage the wrong object.
  public static func detect(client: KubeClient, sleep: @Sendable (UInt64) async throws -> Void) async throws -> ClusterResource {
    var backoff: UInt64 = 500
    while true {
      do {
        _ = try await client.list(
          JSONValue.self, clusterCSIDriver.resource, fieldSelector: "metadata.name=\(clusterCSIDriver.name)")
        return .clusterCSIDriver
      } catch let error as KubeError where error.isNotFound {
        return .secretsStoreCSIDriver
      } catch {
        try await sleep(backoff)
        backoff = min(backoff * 2, 30_000)
      }
    }
  }
}
