public import CSIMessages
import GRPCCore

extension NodeService {
  public func nodeUnpublishVolume(
    _ request: CSI.NodeUnpublishVolumeRequest, deadline: ContinuousClock.Instant? = nil
  ) async throws -> CSI.NodeUnpublishVolumeResponse {
    try Self.validate(request, kubeletRootDir: config.kubeletRootDir)
    return try await self.publisher.unpublish(request, deadline: deadline)
  }

  static func validate(
    _ request: CSI.NodeUnpublishVolumeRequest, kubeletRootDir: String = DriverConfig.defaultKubeletRootDir
  ) throws(RPCError) {
    try validateVolume(id: request.volumeID, targetPath: request.targetPath, in: "NodeUnpublishVolumeRequest", kubeletRootDir: kubeletRootDir)
  }
}
