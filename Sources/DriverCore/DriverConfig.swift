/// What the CSI services need to know about this driver instance.
/// `main` turns flags into one of these; nothing here reads the environment.
public struct DriverConfig: Sendable, Hashable {
  /// The default `--drivername`, matching the CSIDriver object users deploy.
  public static let defaultDriverName = "secrets-store.csi.k8s.io"

  /// Reported by GetPluginInfo; kubelet registers the plugin under it.
  public var driverName: String
  /// Reported as GetPluginInfo's vendor_version.
  public var version: String
  /// Reported by NodeGetInfo; must be the Kubernetes node name.
  public var nodeID: String

  public init(driverName: String = DriverConfig.defaultDriverName, version: String, nodeID: String) {
    self.driverName = driverName
    self.version = version
    self.nodeID = nodeID
  }
}
