import CSIMessages
import Testing

private func roundTrip<M: ProtoMessage>(_ message: M, sourceLocation: SourceLocation = #_sourceLocation) throws {
  let bytes = message.serializedBytes()
  let decoded = try M(serializedBytes: bytes)
  #expect(decoded == message, "\(M.protoMessageName)", sourceLocation: sourceLocation)
  // Encoding is deterministic: the decoded value gives the same bytes.
  #expect(decoded.serializedBytes() == bytes, "\(M.protoMessageName)", sourceLocation: sourceLocation)
  // The default value decodes from no bytes and encodes to none.
  #expect(try M(serializedBytes: []).serializedBytes() == [], sourceLocation: sourceLocation)
}

private let mountCapability = CSI.VolumeCapability(
  accessType: .mount(.init(fsType: "ext4", mountFlags: ["ro", "noexec", ""], volumeMountGroup: "2000")),
  accessMode: .init(mode: .singleNodeWriter)
)

@Suite struct RoundTripTests {
  @Test func identityMessages() throws {
    try roundTrip(CSI.GetPluginInfoRequest())
    try roundTrip(CSI.GetPluginInfoResponse(name: "secrets-store.csi.k8s.io", vendorVersion: "v1.2.3", manifest: ["a": "1", "b": ""]))
    try roundTrip(CSI.GetPluginCapabilitiesRequest())
    try roundTrip(CSI.GetPluginCapabilitiesResponse(capabilities: [
      .init(type: .service(.init(type: .controllerService))),
      .init(type: .service(.init(type: .unknown))),
      .init(type: .volumeExpansion(.init(type: .offline))),
      .init(type: nil),
    ]))
    try roundTrip(CSI.PluginCapability(type: .service(.init(type: .volumeAccessibilityConstraints))))
    try roundTrip(CSI.PluginCapability.Service(type: .groupControllerService))
    try roundTrip(CSI.PluginCapability.VolumeExpansion(type: .online))
    try roundTrip(CSI.ProbeRequest())
    try roundTrip(CSI.ProbeResponse(ready: true))
    try roundTrip(CSI.ProbeResponse(ready: false))
    try roundTrip(CSI.ProbeResponse(ready: nil))
  }

  @Test func probeReadyFalseIsDistinctFromUnset() throws {
    let unset = CSI.ProbeResponse(ready: nil).serializedBytes()
    let notReady = CSI.ProbeResponse(ready: false).serializedBytes()
    #expect(unset == [])
    #expect(notReady == [0x0A, 0x00])  // an empty BoolValue: present, value false
    #expect(try CSI.ProbeResponse(serializedBytes: notReady).ready == false)
  }

  @Test func volumeMessages() throws {
    try roundTrip(mountCapability)
    try roundTrip(CSI.VolumeCapability(accessType: .block(.init()), accessMode: .init(mode: .multiNodeMultiWriter)))
    try roundTrip(CSI.VolumeCapability(accessType: nil, accessMode: nil))
    try roundTrip(CSI.VolumeCapability.BlockVolume())
    try roundTrip(CSI.VolumeCapability.MountVolume(fsType: "xfs", mountFlags: ["a"], volumeMountGroup: ""))
    try roundTrip(CSI.VolumeCapability.AccessMode(mode: .singleNodeMultiWriter))
    try roundTrip(CSI.VolumeCapability.AccessMode(mode: .init(rawValue: 99)))  // newer than this build
    try roundTrip(CSI.CapacityRange(requiredBytes: 1 << 40, limitBytes: -1))
    try roundTrip(CSI.Topology(segments: ["topology.kubernetes.io/zone": "z1", "rack": "r7"]))
  }

  @Test func nodeMessages() throws {
    try roundTrip(CSI.NodeStageVolumeRequest(
      volumeID: "v", publishContext: ["p": "1"], stagingTargetPath: "/stage",
      volumeCapability: mountCapability, secrets: ["password": "hunter2"], volumeContext: ["c": "d"]))
    try roundTrip(CSI.NodeStageVolumeResponse())
    try roundTrip(CSI.NodeUnstageVolumeRequest(volumeID: "v", stagingTargetPath: "/stage"))
    try roundTrip(CSI.NodeUnstageVolumeResponse())
    try roundTrip(CSI.NodePublishVolumeRequest(
      volumeID: "csi-0123abcd", publishContext: ["x": "y"], stagingTargetPath: "",
      targetPath: "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/secrets/mount",
      volumeCapability: mountCapability, readonly: true,
      secrets: ["clientid": "id", "clientsecret": "s3cr3t"],
      volumeContext: [
        "secretProviderClass": "spc", "csi.storage.k8s.io/pod.name": "p",
        "csi.storage.k8s.io/serviceAccount.tokens": #"{"aud":{"token":"t"}}"#,
        "unicode": "ünïcødé ✓",
      ]))
    try roundTrip(CSI.NodePublishVolumeResponse())
    try roundTrip(CSI.NodeUnpublishVolumeRequest(volumeID: "v", targetPath: "/t"))
    try roundTrip(CSI.NodeUnpublishVolumeResponse())
    try roundTrip(CSI.NodeGetVolumeStatsRequest(volumeID: "v", volumePath: "/p", stagingTargetPath: "/s"))
    try roundTrip(CSI.NodeGetVolumeStatsResponse(
      usage: [.init(available: 1, total: 3, used: 2, unit: .bytes), .init(available: 0, total: 9, used: 9, unit: .inodes)],
      volumeCondition: .init(abnormal: true, message: "disk on fire")))
    try roundTrip(CSI.VolumeUsage(available: -5, total: Int64.max, used: Int64.min, unit: .unknown))
    try roundTrip(CSI.VolumeCondition(abnormal: false, message: "ok"))
    try roundTrip(CSI.NodeGetCapabilitiesRequest())
    try roundTrip(CSI.NodeGetCapabilitiesResponse(capabilities: [
      .init(type: .rpc(.init(type: .stageUnstageVolume))), .init(type: .rpc(.init(type: .volumeMountGroup))),
    ]))
    try roundTrip(CSI.NodeServiceCapability(type: .rpc(.init(type: .getVolumeStats))))
    try roundTrip(CSI.NodeServiceCapability.RPC(type: .expandVolume))
    try roundTrip(CSI.NodeGetInfoRequest())
    try roundTrip(CSI.NodeGetInfoResponse(nodeID: "node-1", maxVolumesPerNode: 110, accessibleTopology: .init(segments: ["zone": "a"])))
    try roundTrip(CSI.NodeExpandVolumeRequest(
      volumeID: "v", volumePath: "/p", capacityRange: .init(requiredBytes: 10, limitBytes: 20),
      stagingTargetPath: "/s", volumeCapability: mountCapability, secrets: ["k": "v"]))
    try roundTrip(CSI.NodeExpandVolumeResponse(capacityBytes: 1 << 33))
  }

  @Test func providerMessages() throws {
    try roundTrip(Provider.VersionRequest(version: "v1alpha1"))
    try roundTrip(Provider.VersionResponse(version: "v1alpha1", runtimeName: "vault", runtimeVersion: "1.4.0"))
    try roundTrip(Provider.MountRequest(
      attributes: #"{"roleName":"r"}"#, secrets: "null", targetPath: "/t", permission: "420",
      currentObjectVersion: [.init(id: "a", version: "1"), .init(id: "b", version: "2")]))
    try roundTrip(Provider.MountResponse(
      objectVersion: [.init(id: "a", version: "1")], error: .init(code: "GRPCProviderError"),
      files: [
        .init(path: "a.txt", mode: 0o644, contents: Array("hello".utf8)),
        .init(path: "bin", mode: 0, contents: [0, 1, 2, 0xFF, 0]),
        .init(path: "empty", mode: -1, contents: []),
      ]))
    try roundTrip(Provider.MountResponse(objectVersion: [], error: nil, files: []))
    try roundTrip(Provider.File(path: "x", mode: 0o400, contents: [0]))
    try roundTrip(Provider.ObjectVersion(id: "secret/a", version: "7"))
    try roundTrip(Provider.MountError(code: "NotFound"))
  }

  @Test func mapEncodingDoesNotDependOnInsertionOrder() {
    var first: [String: String] = [:]
    var second: [String: String] = [:]
    let keys = (0..<50).map { "key-\($0)" }
    for key in keys { first[key] = key }
    for key in keys.reversed() { second[key] = key }
    #expect(CSI.Topology(segments: first).serializedBytes() == CSI.Topology(segments: second).serializedBytes())
  }

  @Test func encodesTheExactWireBytes() {
    let message = Provider.File(path: "a", mode: 420, contents: [0xFF])
    #expect(message.serializedBytes() == Wire.stringField(1, "a") + Wire.varintField(2, 420) + Wire.bytesField(3, [0xFF]))
    let negative = Provider.File(path: "", mode: -1, contents: [])
    // int32 -1 is sign-extended to ten bytes on the wire.
    #expect(negative.serializedBytes() == Wire.varintField(2, UInt64.max))
  }
}
