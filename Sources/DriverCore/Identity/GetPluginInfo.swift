public import CSIMessages

extension IdentityService {
  public func getPluginInfo(_ request: CSI.GetPluginInfoRequest) -> CSI.GetPluginInfoResponse {
    CSI.GetPluginInfoResponse(name: self.config.driverName, vendorVersion: self.config.version)
  }
}
