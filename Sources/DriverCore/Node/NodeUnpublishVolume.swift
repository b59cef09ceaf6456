public import CSIMessages
import GRPCCore

extension NodeService {
  public func nodeUnpublishVolume(
    _ request: CSI.NodeUnpublishVolumeRequest, deadline: ContinuousClock.Instant? = nil
  ) async throws -> CSI.NodeUnpublishVolumeResponse {
    try Self.validate(request)
    return try await self.publisher.unpublish(request, deadline: deadline)
  }

  static func validate(_ request: CSI.NodeUnpublishVolumeRequest) throws(RPCError) {
    guard !request.volumeID.isEmpty else {
      throw RPCError.invalidArgument("volume_id is required in NodeUnpublishVolumeRequest")
    }
    guard !request.targetPath.isEmpty else {
      throw RPCError.invalidArgument("target_path is required in NodeUnpublishVolumeRequest")
    }
    try checkTargetPath(request.targetPath)
  }
}
