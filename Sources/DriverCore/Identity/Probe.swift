public import CSIMessages

extension IdentityService {
  /// Ready while the driver can serve: not once a graceful shutdown has begun,
  /// nor while its loop is stalled or just was (see `Readiness`).
  public func probe(_ request: CSI.ProbeRequest) -> CSI.ProbeResponse {
    CSI.ProbeResponse(ready: readiness.notReady == nil)
  }
}
