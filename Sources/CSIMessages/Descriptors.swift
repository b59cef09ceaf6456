public import GRPCCore

/// A unary RPC with its request and response types, so callers and handlers
/// cannot pair a method with the wrong messages.
public struct UnaryMethod<Request: ProtoMessage, Response: ProtoMessage>: Sendable, Hashable {
  public let descriptor: MethodDescriptor

  public init(service: ServiceDescriptor, method: String) {
    self.descriptor = MethodDescriptor(service: service, method: method, type: .unary)
  }

  public var serializer: ProtoSerializer<Response> { ProtoSerializer() }
  public var deserializer: ProtoDeserializer<Request> { ProtoDeserializer() }
}

extension CSI {
  /// `csi.v1.Identity`.
  public enum Identity {
    public static let service = ServiceDescriptor(fullyQualifiedService: "csi.v1.Identity")

    public static let getPluginInfo =
      UnaryMethod<GetPluginInfoRequest, GetPluginInfoResponse>(service: service, method: "GetPluginInfo")
    public static let getPluginCapabilities =
      UnaryMethod<GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse>(service: service, method: "GetPluginCapabilities")
    public static let probe = UnaryMethod<ProbeRequest, ProbeResponse>(service: service, method: "Probe")

    public static let methods: [MethodDescriptor] = [
      getPluginInfo.descriptor, getPluginCapabilities.descriptor, probe.descriptor,
    ]
  }

  /// `csi.v1.Node`.
  public enum Node {
    public static let service = ServiceDescriptor(fullyQualifiedService: "csi.v1.Node")

    public static let nodeStageVolume =
      UnaryMethod<NodeStageVolumeRequest, NodeStageVolumeResponse>(service: service, method: "NodeStageVolume")
    public static let nodeUnstageVolume =
      UnaryMethod<NodeUnstageVolumeRequest, NodeUnstageVolumeResponse>(service: service, method: "NodeUnstageVolume")
    public static let nodePublishVolume =
      UnaryMethod<NodePublishVolumeRequest, NodePublishVolumeResponse>(service: service, method: "NodePublishVolume")
    public static let nodeUnpublishVolume =
      UnaryMethod<NodeUnpublishVolumeRequest, NodeUnpublishVolumeResponse>(service: service, method: "NodeUnpublishVolume")
    public static let nodeGetVolumeStats =
      UnaryMethod<NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse>(service: service, method: "NodeGetVolumeStats")
    public static let nodeExpandVolume =
      UnaryMethod<NodeExpandVolumeRequest, NodeExpandVolumeResponse>(service: service, method: "NodeExpandVolume")
    public static let nodeGetCapabilities =
      UnaryMethod<NodeGetCapabilitiesRequest, NodeGetCapabilitiesResponse>(service: service, method: "NodeGetCapabilities")
    public static let nodeGetInfo =
      UnaryMethod<NodeGetInfoRequest, NodeGetInfoResponse>(service: service, method: "NodeGetInfo")

    public static let methods: [MethodDescriptor] = [
      nodeStageVolume.descriptor, nodeUnstageVolume.descriptor, nodePublishVolume.descriptor,
      nodeUnpublishVolume.descriptor, nodeGetVolumeStats.descriptor, nodeExpandVolume.descriptor,
      nodeGetCapabilities.descriptor, nodeGetInfo.descriptor,
    ]
  }
}

extension Provider {
  /// `v1alpha1.CSIDriverProvider`, served by provider plugins.
  public enum CSIDriverProvider {
    public static let service = ServiceDescriptor(fullyQualifiedService: "v1alpha1.CSIDriverProvider")

    public static let version = UnaryMethod<VersionRequest, VersionResponse>(service: service, method: "Version")
    public static let mount = UnaryMethod<MountRequest, MountResponse>(service: service, method: "Mount")

    public static let methods: [MethodDescriptor] = [version.descriptor, mount.descriptor]
  }
}

extension GRPCClient {
  /// Calls a unary method and returns its response message; a non-OK status
  /// throws the `RPCError`.
  public func call<Request, Response>(
    _ method: UnaryMethod<Request, Response>,
    _ request: Request,
    metadata: Metadata = [:],
    options: CallOptions = .defaults
  ) async throws -> Response {
    try await self.unary(
      request: ClientRequest(message: request, metadata: metadata),
      descriptor: method.descriptor,
      serializer: ProtoSerializer<Request>(),
      deserializer: ProtoDeserializer<Response>(),
      options: options
    ) { try $0.message }
  }
}
