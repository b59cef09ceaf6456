import CSIMessages
import DriverCore
import GRPCCore
import GRPCInProcessTransport
import Synchronization
import Testing

@Suite struct NodeServiceTests {
  @Test func nodeGetInfoReportsTheNodeName() async throws {
    try await withDriver { client in
      let info = try await client.call(CSI.Node.nodeGetInfo, .init())
      #expect(info == CSI.NodeGetInfoResponse(nodeID: "node-a", maxVolumesPerNode: 0, accessibleTopology: nil))
    }
  }

  @Test func advertisesVolumeMountGroupOnly() async throws {
    try await withDriver { client in
      let response = try await client.call(CSI.Node.nodeGetCapabilities, .init())
      #expect(response.capabilities == [CSI.NodeServiceCapability(type: .rpc(.init(type: .volumeMountGroup)))])
    }
  }

  static let invalidPublishes: [(String, CSI.NodePublishVolumeRequest)] = {
    var noVolumeID = validPublish
    noVolumeID.volumeID = ""
    var noTarget = validPublish
    noTarget.targetPath = ""
    var noCapability = validPublish
    noCapability.volumeCapability = nil
    var writable = validPublish
    writable.readonly = false
    var relativeTarget = validPublish
    relativeTarget.targetPath = "pods/uid/volumes/kubernetes.io~csi/secrets/mount"
    var dottedTarget = validPublish
    dottedTarget.targetPath = "/var/lib/kubelet/pods/uid/../../../../etc"
    var outsideRoot = validPublish
    outsideRoot.targetPath = "/tmp/pods/uid/volumes/kubernetes.io~csi/secrets/mount"
    var rootItself = validPublish
    rootItself.targetPath = "/var/lib/kubelet/pods"
    var besidePods = validPublish
    besidePods.targetPath = "/var/lib/kubelet/plugins/x/mount"
    var noClass = validPublish
    noClass.volumeContext["secretProviderClass"] = nil
    var noNamespace = validPublish
    noNamespace.volumeContext["csi.storage.k8s.io/pod.namespace"] = nil
    return [
      ("volume_id", noVolumeID), ("target_path", noTarget), ("volume_capability", noCapability), ("readonly", writable),
      ("target_path", relativeTarget), ("target_path", dottedTarget), ("target_path", outsideRoot), ("target_path", rootItself),
      ("target_path", besidePods), ("secretProviderClass", noClass),
      ("pod.namespace", noNamespace),
    ]
  }()

  @Test(arguments: NodeServiceTests.invalidPublishes)
  func publishRejectsAnIncompleteRequest(_ field: String, _ request: CSI.NodePublishVolumeRequest) async throws {
    let publisher = RecordingPublisher()
    try await withDriver(publisher: publisher) { client in
      let (code, message) = await status(client, CSI.Node.nodePublishVolume, request)
      #expect(code == .invalidArgument)
      #expect(message.contains(field))
    }
    #expect(publisher.published.withLock { $0.isEmpty })
  }

  @Test func publishHandsAValidRequestToThePublisher() async throws {
    let publisher = RecordingPublisher()
    try await withDriver(publisher: publisher) { client in
      _ = try await client.call(CSI.Node.nodePublishVolume, validPublish)
    }
    #expect(publisher.published.withLock { $0 } == [validPublish])
  }

  @Test(arguments: [
    ("volume_id", CSI.NodeUnpublishVolumeRequest(volumeID: "", targetPath: validPublish.targetPath)),
    ("target_path", CSI.NodeUnpublishVolumeRequest(volumeID: "v", targetPath: "")),
    ("target_path", CSI.NodeUnpublishVolumeRequest(volumeID: "v", targetPath: "/a/../b")),
    ("target_path", CSI.NodeUnpublishVolumeRequest(volumeID: "v", targetPath: "/etc/mount")),
  ])
  func unpublishRejectsAnIncompleteRequest(_ field: String, _ request: CSI.NodeUnpublishVolumeRequest) async throws {
    let publisher = RecordingPublisher()
    try await withDriver(publisher: publisher) { client in
      let (code, message) = await status(client, CSI.Node.nodeUnpublishVolume, request)
      #expect(code == .invalidArgument)
      #expect(message.contains(field))
    }
    #expect(publisher.unpublished.withLock { $0.isEmpty })
  }

  @Test func unpublishHandsAValidRequestToThePublisher() async throws {
    let publisher = RecordingPublisher()
    let request = CSI.NodeUnpublishVolumeRequest(volumeID: "v", targetPath: validPublish.targetPath)
    try await withDriver(publisher: publisher) { client in
      _ = try await client.call(CSI.Node.nodeUnpublishVolume, request)
    }
    #expect(publisher.unpublished.withLock { $0 } == [request])
  }

  @Test func theKubeletRootComesFromTheConfig() async throws {
    var config = testConfig
    config.kubeletRootDir = "/srv/kubelet"
    var moved = validPublish
    moved.targetPath = "/srv/kubelet/pods/uid/volumes/kubernetes.io~csi/secrets/mount"
    let publisher = RecordingPublisher()
    try await withDriver(config: config, publisher: publisher) { client in
      _ = try await client.call(CSI.Node.nodePublishVolume, moved)
      let (code, message) = await status(client, CSI.Node.nodePublishVolume, validPublish)
      #expect(code == .invalidArgument)
      #expect(message.contains("/srv/kubelet/pods"))
    }
    #expect(publisher.published.withLock { $0 } == [moved])
  }

  static func withGroup(_ group: String) -> CSI.NodePublishVolumeRequest {
    var request = validPublish
    request.volumeCapability = CSI.VolumeCapability(
      accessType: .mount(.init(volumeMountGroup: group)), accessMode: validPublish.volumeCapability?.accessMode)
    return request
  }

  @Test(arguments: ["abc", "-1", "+5", "1e3", " 5", "2147483648", "4294967295", "99999999999999999999"])
  func anInvalidVolumeMountGroupIsInvalidArgument(_ group: String) async throws {
    let publisher = RecordingPublisher()
    try await withDriver(publisher: publisher) { client in
      let (code, message) = await status(client, CSI.Node.nodePublishVolume, Self.withGroup(group))
      #expect(code == .invalidArgument)
      #expect(message.contains("volume_mount_group"))
    }
    #expect(publisher.published.withLock { $0.isEmpty })
  }

  @Test(arguments: ["0", "2000", "2147483647"])
  func aNumericVolumeMountGroupIsAccepted(_ group: String) async throws {
    let publisher = RecordingPublisher()
    try await withDriver(publisher: publisher) { client in
      _ = try await client.call(CSI.Node.nodePublishVolume, Self.withGroup(group))
    }
    #expect(publisher.published.withLock { $0.count } == 1)
  }

  @Test func unofferedNodeRPCsAreUnimplemented() async throws {
    try await withDriver { client in
      #expect(await status(client, CSI.Node.nodeStageVolume, .init(volumeID: "v")).code == .unimplemented)
      #expect(await status(client, CSI.Node.nodeUnstageVolume, .init(volumeID: "v")).code == .unimplemented)
      #expect(await status(client, CSI.Node.nodeGetVolumeStats, .init(volumeID: "v")).code == .unimplemented)
      #expect(await status(client, CSI.Node.nodeExpandVolume, .init(volumeID: "v")).code == .unimplemented)
    }
  }

  @Test func unknownMethodIsUnimplemented() async throws {
    let createVolume = UnaryMethod<CSI.ProbeRequest, CSI.ProbeResponse>(
      service: ServiceDescriptor(fullyQualifiedService: "csi.v1.Controller"), method: "CreateVolume")
    let unknownNodeMethod = UnaryMethod<CSI.ProbeRequest, CSI.ProbeResponse>(
      service: CSI.Node.service, method: "NodeDoesNotExist")
    try await withDriver { client in
      #expect(await status(client, createVolume, .init()).code == .unimplemented)
      #expect(await status(client, unknownNodeMethod, .init()).code == .unimplemented)
    }
  }

  @Test func malformedRequestBytesAreInvalidArgument() async throws {
    try await withDriver { client in
      do {
        _ = try await client.unary(
          request: ClientRequest(message: [0x0A, 0x09, 0x61]),  // length 9, one byte present
          descriptor: CSI.Node.nodeGetInfo.descriptor,
          serializer: RawBytesSerializer(),
          deserializer: ProtoDeserializer<CSI.NodeGetInfoResponse>(),
          options: .defaults
        ) { try $0.message }
        Issue.record("expected INVALID_ARGUMENT")
      } catch let error as RPCError {
        #expect(error.code == .invalidArgument)
        #expect(error.message.contains("csi.v1.NodeGetInfoRequest"))
      }
    }
  }
}

/// Sends bytes exactly as given, to play a broken client.
struct RawBytesSerializer: MessageSerializer {
  func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
}
