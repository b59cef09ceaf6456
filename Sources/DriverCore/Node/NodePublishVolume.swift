public import CSIMessages
import GRPCCore

extension NodeService {
  public func nodePublishVolume(
    _ request: CSI.NodePublishVolumeRequest, deadline: ContinuousClock.Instant? = nil
  ) async throws -> CSI.NodePublishVolumeResponse {
    try Self.validate(request)
    return try await self.publisher.publish(request, deadline: deadline)
  }

  /// The CSI spec's required fields, then this driver's own rule: the
  /// volume holds secrets written by the driver, so pods mount it read-only.
  static func validate(_ request: CSI.NodePublishVolumeRequest) throws {
    guard !request.volumeID.isEmpty else {
      throw RPCError.invalidArgument("volume_id is required in NodePublishVolumeRequest")
    }
    guard !request.targetPath.isEmpty else {
      throw RPCError.invalidArgument("target_path is required in NodePublishVolumeRequest")
    }
    guard request.volumeCapability != nil else {
      throw RPCError.invalidArgument("volume_capability is required in NodePublishVolumeRequest")
    }
    guard request.readonly else {
      throw RPCError.invalidArgument("readonly must be true: secrets store volumes are mounted read-only")
    }
  }
}
