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
