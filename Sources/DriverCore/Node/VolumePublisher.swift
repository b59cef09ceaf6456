public import CSIMessages

/// Does the work behind NodePublishVolume and NodeUnpublishVolume.
///
/// ``NodeService`` validates each request first (``ValidPublishRequest``; for unpublish,
/// `volumeID` present and `targetPath` absolute and clean), so an implementation takes
/// the volume's lock and acts. Throw `RPCError` to choose the status the CO sees; any
/// other error reaches it as UNKNOWN.
public protocol VolumePublisher: Sendable {
  /// `deadline` is the caller's (kubelet's `grpc-timeout`), when it sent one.
  func publish(_ request: ValidPublishRequest, deadline: ContinuousClock.Instant?) async throws -> CSI.NodePublishVolumeResponse
  func unpublish(_ request: CSI.NodeUnpublishVolumeRequest, deadline: ContinuousClock.Instant?) async throws -> CSI.NodeUnpublishVolumeResponse
}
