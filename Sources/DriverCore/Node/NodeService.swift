public import GRPCCore
import CSIMessages
import GRPCH2

/// The CSI Node service. kubelet calls NodeGetInfo at registration, then
/// NodeGetCapabilities and NodePublishVolume per pod volume, and
/// NodeUnpublishVolume at teardown. Staging, stats and expansion are not
/// offered and answer UNIMPLEMENTED.
public struct NodeService: RegistrableRPCService {
  public let config: DriverConfig
  public let publisher: any VolumePublisher

  public init(config: DriverConfig, publisher: any VolumePublisher) {
    self.config = config
    self.publisher = publisher
  }

  public func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    router.registerUnary(CSI.Node.nodeGetInfo) { request, _ in self.nodeGetInfo(request) }
    router.registerUnary(CSI.Node.nodeGetCapabilities) { request, _ in self.nodeGetCapabilities(request) }
    // kubelet's deadline (its grpc-timeout, from the transport) budgets the provider call.
    router.registerUnary(CSI.Node.nodePublishVolume) { request, context in
      try await self.nodePublishVolume(request, deadline: context.callDeadline)
    }
    router.registerUnary(CSI.Node.nodeUnpublishVolume) { request, context in
      try await self.nodeUnpublishVolume(request, deadline: context.callDeadline)
    }
    // Not advertised by NodeGetCapabilities, so a conforming CO never calls them.
    router.registerUnimplemented(CSI.Node.nodeStageVolume)
    router.registerUnimplemented(CSI.Node.nodeUnstageVolume)
    router.registerUnimplemented(CSI.Node.nodeGetVolumeStats)
    router.registerUnimplemented(CSI.Node.nodeExpandVolume)
  }
}

extension RPCError {
  /// INVALID_ARGUMENT with a sentence naming the offending field.
  static func invalidArgument(_ message: String) -> RPCError {
    RPCError(code: .invalidArgument, message: message)
  }
}
