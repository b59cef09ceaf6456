public import CSIMessages

extension NodeService {
  /// VOLUME_MOUNT_GROUP only: kubelet then sends the pod's fsGroup as
  /// `volume_mount_group` (with the CSIDriver's `fsGroupPolicy: File`) and the driver
  /// makes the files group-owned and group-readable instead of kubelet changing them.
  /// None of STAGE_UNSTAGE_VOLUME, GET_VOLUME_STATS or EXPAND_VOLUME, so kubelet goes
  /// straight to NodePublishVolume.
  public func nodeGetCapabilities(_ request: CSI.NodeGetCapabilitiesRequest) -> CSI.NodeGetCapabilitiesResponse {
    CSI.NodeGetCapabilitiesResponse(capabilities: [
      CSI.NodeServiceCapability(type: .rpc(CSI.NodeServiceCapability.RPC(type: .volumeMountGroup)))
    ])
  }
}
