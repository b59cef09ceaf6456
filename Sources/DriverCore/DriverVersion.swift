import CBuildInfo

/// The driver's version, reported by `--version` and GetPluginInfo: what the build was
/// stamped with (`git describe`, or the `VERSION` file of a release tree).
public enum DriverVersion {
  public static let current = String(cString: sscd_build_version())
}
