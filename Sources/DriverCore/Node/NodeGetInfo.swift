public import CSIMessages

extension NodeService {
  /// The node id is the Kubernetes node name. No topology and no volume
  /// limit: secrets volumes do not consume an attach slot.
  public func nodeGetInfo(_ request: CSI.NodeGetInfoRequest) -> CSI.NodeGetInfoResponse {
    CSI.NodeGetInfoResponse(nodeID: self.config.nodeID)
  }
}
