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

  /// The default `--kubelet-root-dir`, as upstream chart's `linux.kubeletRootDir`.
  public static let defaultKubeletRootDir = "/var/lib/kubelet"

  /// `<kubelet root>/pods`, where kubelet keeps pod volumes: every target lies beneath it.
  static func podsDirectory(kubeletRootDir: String) -> String {
    (kubeletRootDir == "/" ? "" : kubeletRootDir) + "/pods"
  }

  /// `--kubelet-root-dir`: target paths must lie under `<this>/pods`; absolute and clean.
  public var kubeletRootDir: String

  public init(
    driverName: String = DriverConfig.defaultDriverName, version: String, nodeID: String,
    kubeletRootDir: String = DriverConfig.defaultKubeletRootDir
  ) {
    self.driverName = driverName
    self.version = version
    self.nodeID = nodeID
    self.kubeletRootDir = kubeletRootDir
  }

  /// `path` made absolute and clean by lexical rules (`.`, `..`, `//`, a trailing `/`),
  /// with no symlink resolved; nil for a relative path or one with a NUL byte.
  public static func lexicallyClean(_ path: String) -> String? {
    guard path.hasPrefix("/"), !path.utf8.contains(0) else { return nil }
    var kept: [Substring] = []
    for element in path.split(separator: "/") {
      switch element {
      case ".": continue
      case "..": if !kept.isEmpty { kept.removeLast() }
      default: kept.append(element)
      }
    }
    return "/" + kept.joined(separator: "/")
  }
}
