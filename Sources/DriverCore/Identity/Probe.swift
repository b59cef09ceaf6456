public import CSIMessages

extension IdentityService {
  /// The driver has no start-up phase of its own: once it serves, it is ready.
  public func probe(_ request: CSI.ProbeRequest) -> CSI.ProbeResponse {
    CSI.ProbeResponse(ready: true)
  }
}
