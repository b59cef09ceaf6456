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

  @Test func advertisesNoNodeCapabilities() async throws {
    try await withDriver { client in
      let response = try await client.call(CSI.Node.nodeGetCapabilities, .init())
      #expect(response.capabilities == [])
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
    var noClass = validPublish
    noClass.volumeContext["secretProviderClass"] = nil
    var noNamespace = validPublish
    noNamespace.volumeContext["csi.storage.k8s.io/pod.namespace"] = nil
    return [
      ("volume_id", noVolumeID), ("target_path", noTarget), ("volume_capability", noCapability), ("readonly", writable),
      ("target_path", relativeTarget), ("target_path", dottedTarget), ("secretProviderClass", noClass),
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
    ("volume_id", CSI.NodeUnpublishVolumeRequest(volumeID: "", targetPath: "/t")),
    ("target_path", CSI.NodeUnpublishVolumeRequest(volumeID: "v", targetPath: "")),
    ("target_path", CSI.NodeUnpublishVolumeRequest(volumeID: "v", targetPath: "/a/../b")),
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
    let request = CSI.NodeUnpublishVolumeRequest(volumeID: "v", targetPath: "/t")
    try await withDriver(publisher: publisher) { client in
      _ = try await client.call(CSI.Node.nodeUnpublishVolume, request)
    }
    #expect(publisher.unpublished.withLock { $0 } == [request])
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
