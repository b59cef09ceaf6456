public import CSIMessages

extension NodeService {
  /// Advertises only what is implemented: none of STAGE_UNSTAGE_VOLUME,
  /// GET_VOLUME_STATS or EXPAND_VOLUME, so the list is empty and kubelet goes
  /// straight to NodePublishVolume.
  public func nodeGetCapabilities(_ request: CSI.NodeGetCapabilitiesRequest) -> CSI.NodeGetCapabilitiesResponse {
    CSI.NodeGetCapabilitiesResponse(capabilities: [])
  }
}
