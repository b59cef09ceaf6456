// CSI and provider messages from the wire: the first byte picks the message type, the rest
// is its protobuf encoding. A message that decodes must encode, decode again to an equal
// value and encode to the same bytes (encoding is deterministic), and render for the log.
import CSIMessages
import DriverCore

/// Every message the driver, the reference provider or the load harness reads off the wire.
let messages: [any ProtoMessage.Type] = [
  CSI.NodePublishVolumeRequest.self, CSI.NodeUnpublishVolumeRequest.self, CSI.NodeGetInfoRequest.self,
  CSI.NodeGetCapabilitiesRequest.self, CSI.ProbeRequest.self, CSI.GetPluginInfoRequest.self,
  CSI.GetPluginCapabilitiesRequest.self, CSI.NodeStageVolumeRequest.self, CSI.NodeUnstageVolumeRequest.self,
  CSI.NodeGetVolumeStatsRequest.self, CSI.NodeExpandVolumeRequest.self,
  Provider.MountRequest.self, Provider.MountResponse.self, Provider.VersionRequest.self, Provider.VersionResponse.self,
  CSI.NodePublishVolumeResponse.self, CSI.ProbeResponse.self, CSI.GetPluginInfoResponse.self,
  CSI.GetPluginCapabilitiesResponse.self, CSI.NodeGetInfoResponse.self, CSI.NodeGetCapabilitiesResponse.self,
]

func roundTrip<M: ProtoMessage>(_ type: M.Type, _ bytes: UnsafeRawBufferPointer) {
  guard let message = try? M(serializedBytes: bytes) else { return }
  let encoded = message.serializedBytes()
  let again: M
  do {
    again = try encoded.withUnsafeBytes { try M(serializedBytes: $0) }
  } catch {
    fatalError("\(M.protoMessageName): our own encoding does not decode: \(error)")
  }
  guard again == message else { fatalError("\(M.protoMessageName): decode(encode(m)) != m") }
  guard again.serializedBytes() == encoded else { fatalError("\(M.protoMessageName): encoding is not deterministic") }
  _ = Sanitizer.render(message)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  guard let data, size > 0 else { return 0 }
  let type = messages[Int(data[0]) % messages.count]
  roundTrip(type, UnsafeRawBufferPointer(start: data + 1, count: size - 1))
  return 0
}
