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

/// The publisher until mounting exists: every call answers UNIMPLEMENTED.
public struct UnimplementedVolumePublisher: VolumePublisher {
  public init() {}

  public func publish(_ request: CSI.NodePublishVolumeRequest, deadline: ContinuousClock.Instant?) async throws -> CSI.NodePublishVolumeResponse {
    throw RPCError(code: .unimplemented, message: "volume mounting is not implemented yet")
  }

  public func unpublish(_ request: CSI.NodeUnpublishVolumeRequest, deadline: ContinuousClock.Instant?) async throws -> CSI.NodeUnpublishVolumeResponse {
    throw RPCError(code: .unimplemented, message: "volume unmounting is not implemented yet")
  }
}
