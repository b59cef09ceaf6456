public import GRPCCore
import CSIMessages

/// The CSI Identity service: who the plugin is and whether it is ready.
/// node-driver-registrar calls GetPluginInfo; the liveness probe calls Probe.
public struct IdentityService: RegistrableRPCService {
  public let config: DriverConfig
  /// What Probe answers.
  public let readiness: Readiness

  public init(config: DriverConfig, readiness: Readiness = Readiness()) {
    self.config = config
    self.readiness = readiness
  }

  public func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    router.registerUnary(CSI.Identity.getPluginInfo) { request, _ in self.getPluginInfo(request) }
    router.registerUnary(CSI.Identity.getPluginCapabilities) { request, _ in self.getPluginCapabilities(request) }
    router.registerUnary(CSI.Identity.probe) { request, _ in self.probe(request) }
  }
}
