public import CSIMessages

extension IdentityService {
  /// Advertises nothing: this is a node-only plugin (no CONTROLLER_SERVICE)
  /// whose volumes are reachable from every node (no
  /// VOLUME_ACCESSIBILITY_CONSTRAINTS). A capability listed here makes the CO
  /// call RPCs we do not serve.
  public func getPluginCapabilities(_ request: CSI.GetPluginCapabilitiesRequest) -> CSI.GetPluginCapabilitiesResponse {
    CSI.GetPluginCapabilitiesResponse(capabilities: [])
  }
}
