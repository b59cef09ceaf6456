/// The driver's version, reported by `--version` and GetPluginInfo.
public enum DriverVersion {
  public static let current = "0.1.0"
}
