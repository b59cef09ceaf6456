public import CSIMessages
import GRPCCore

/// Does the work behind NodePublishVolume and NodeUnpublishVolume.
///
/// ``NodeService`` validates each request first, so an implementation may
/// rely on `volumeID`, `targetPath` and (for publish) `volumeCapability`
/// being present and `readonly` being true. Throw `RPCError` to choose the
/// status the CO sees; any other error reaches it as UNKNOWN.
public protocol VolumePublisher: Sendable {
  /// `deadline` is the caller's (kubelet's `grpc-timeout`), when it sent one.
  func publish(_ request: CSI.NodePublishVolumeRequest, deadline: ContinuousClock.Instant?) async throws -> CSI.NodePublishVolumeResponse
  func unpublish(_ request: CSI.NodeUnpublishVolumeRequest, deadline: ContinuousClock.Instant?) async throws -> CSI.NodeUnpublishVolumeResponse
}
