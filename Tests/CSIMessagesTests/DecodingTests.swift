import CSIMessages
import GRPCCore
import Testing

@Suite struct DecodingTests {
  @Test func handBuiltPublishRequest() throws {
    let mount = Wire.stringField(1, "ext4") + Wire.stringField(2, "ro") + Wire.stringField(2, "nosuid")
    let capability = Wire.bytesField(2, mount) + Wire.bytesField(3, Wire.varintField(1, 1))
    let bytes =
      Wire.stringField(1, "csi-abc")
      + Wire.stringField(4, "/target")
      + Wire.bytesField(5, capability)
      + Wire.varintField(6, 1)
      + Wire.mapEntry(7, "password", "first")
      + Wire.mapEntry(8, "secretProviderClass", "spc")
      + Wire.mapEntry(7, "password", "second")  // repeated key: last wins
      + Wire.mapEntry(7, "", "")  // an entry with nothing set is the empty key
    let request = try CSI.NodePublishVolumeRequest(serializedBytes: bytes)
    #expect(request.volumeID == "csi-abc")
    #expect(request.targetPath == "/target")
    #expect(request.stagingTargetPath == "")
    #expect(request.readonly)
    #expect(request.secrets == ["password": "second", "": ""])
    #expect(request.volumeContext == ["secretProviderClass": "spc"])
    #expect(request.volumeCapability == CSI.VolumeCapability(
      accessType: .mount(.init(fsType: "ext4", mountFlags: ["ro", "nosuid"])),
      accessMode: .init(mode: .singleNodeWriter)))
  }

  @Test func mapEntryWithValueOnly() throws {
    // A peer may omit the key (empty) or value (empty) inside an entry.
    let bytes = Wire.bytesField(1, Wire.stringField(2, "v")) + Wire.bytesField(1, Wire.stringField(1, "k"))
    #expect(try CSI.Topology(serializedBytes: bytes).segments == ["": "v", "k": ""])
  }

  @Test func unknownFieldsOfEveryWireTypeAreSkipped() throws {
    // Unknown fields at the top level, inside a nested message and inside a map entry.
    let accessMode = Wire.varintField(1, 5) + Wire.unknownFields(startingAt: 20)
    let capability = Wire.bytesField(1, Wire.unknownFields(startingAt: 30)) + Wire.bytesField(3, accessMode)
    let entry = Wire.stringField(1, "k") + Wire.unknownFields(startingAt: 40) + Wire.stringField(2, "v")
    let bytes =
      Wire.unknownFields(startingAt: 100)
      + Wire.stringField(1, "vol")
      + Wire.bytesField(5, capability)
      + Wire.bytesField(8, entry)
      + Wire.unknownFields(startingAt: 536_870_900)  // near the largest field number
    let request = try CSI.NodePublishVolumeRequest(serializedBytes: bytes)
    #expect(request.volumeID == "vol")
    #expect(request.volumeContext == ["k": "v"])
    #expect(request.volumeCapability == CSI.VolumeCapability(
      accessType: .block(.init()), accessMode: .init(mode: .multiNodeMultiWriter)))
  }

  @Test func unknownEnumValuesAndOneofCasesSurvive() throws {
    let mode = try CSI.VolumeCapability.AccessMode(serializedBytes: Wire.varintField(1, 1234))
    #expect(mode.mode.rawValue == 1234)
    #expect(mode.mode.description == "1234")
    // A plugin capability kind from a newer spec (oneof field 9) decodes as nil.
    let capability = try CSI.PluginCapability(serializedBytes: Wire.bytesField(9, Wire.varintField(1, 1)))
    #expect(capability.type == nil)
  }

  @Test func fieldsSplitAcrossOccurrences() throws {
    // A singular message field sent several times is merged, also one level
    // down (access_mode); a scalar sent twice: last wins. (protoc-c replaces,
    // rather than merges, a oneof member sent twice; no CO splits one, so the
    // last occurrence here carries the whole mount.)
    let bytes =
      Wire.stringField(1, "old")
      + Wire.bytesField(5, Wire.bytesField(2, Wire.stringField(1, "ext4") + Wire.stringField(2, "a")))
      + Wire.stringField(4, "/t")
      + Wire.bytesField(5, Wire.bytesField(3, Wire.varintField(1, 2)))
      + Wire.bytesField(5, Wire.bytesField(2, Wire.stringField(1, "ext4") + Wire.stringField(2, "a") + Wire.stringField(2, "b")))
      + Wire.stringField(1, "new")
    let request = try CSI.NodePublishVolumeRequest(serializedBytes: bytes)
    #expect(request.volumeID == "new")
    #expect(request.targetPath == "/t")
    #expect(request.volumeCapability == CSI.VolumeCapability(
      accessType: .mount(.init(fsType: "ext4", mountFlags: ["a", "b"])),
      accessMode: .init(mode: .singleNodeReaderOnly)))
  }

  @Test func nonMinimalVarintDecodes() throws {
    let usage = Wire.tag(1, 0) + [0x85, 0x80, 0x80, 0x00]  // 5 in four bytes
    let decoded = try CSI.VolumeUsage(serializedBytes: usage)
    #expect(decoded.available == 5)
  }

  static let malformed: [(String, [UInt8])] = [
    ("truncated varint", Wire.tag(6, 0) + [0x80]),
    ("truncated tag", [0x80]),
    ("varint longer than ten bytes", Wire.tag(6, 0) + [UInt8](repeating: 0xFF, count: 11) + [0x01]),
    ("length past the end", Wire.tag(1, 2) + [0x05] + Array("abc".utf8)),
    ("huge length", Wire.tag(1, 2) + Wire.varint(UInt64(Int64.max)) + [0x61]),
    ("wrong wire type for a string", Wire.varintField(1, 7)),
    ("wrong wire type for a message", Wire.fixed32Field(5, 1)),
    ("wrong wire type for a map", Wire.varintField(7, 1)),
    ("malformed nested message", Wire.bytesField(5, Wire.tag(3, 2) + [0x09])),
    ("malformed map entry", Wire.bytesField(7, Wire.tag(1, 2) + [0x09, 0x61])),
    ("field number zero", Wire.tag(0, 0) + [0x01]),
    ("reserved wire type 6", Wire.tag(1, 6) + [0x01]),
    ("deprecated group start", Wire.tag(50, 3) + Wire.tag(50, 4)),
    ("truncated fixed64", Wire.tag(50, 1) + [1, 2, 3]),
    ("truncated fixed32", Wire.tag(50, 5) + [1]),
  ]

  @Test(arguments: DecodingTests.malformed)
  func malformedInputThrows(_ name: String, _ bytes: [UInt8]) {
    #expect(throws: ProtoDecodingError.self, "\(name)") {
      try CSI.NodePublishVolumeRequest(serializedBytes: bytes)
    }
  }

  @Test func everyPrefixOfAValidMessageDecodesOrThrows() throws {
    // Cutting a message anywhere must never crash.
    let full = CSI.NodePublishVolumeRequest(
      volumeID: "v", targetPath: "/t",
      volumeCapability: .init(accessType: .mount(.init(fsType: "ext4")), accessMode: .init(mode: .singleNodeWriter)),
      readonly: true, secrets: ["a": "b"], volumeContext: ["c": "d"]
    ).serializedBytes()
    var failures = 0
    for length in 0..<full.count {
      do { _ = try CSI.NodePublishVolumeRequest(serializedBytes: Array(full[..<length])) } catch { failures += 1 }
    }
    #expect(failures > 0)
  }

  @Test func decodingErrorNamesTheMessage() {
    do {
      _ = try Provider.MountResponse(serializedBytes: [0x0A, 0x05])
      Issue.record("expected a throw")
    } catch let error as ProtoDecodingError {
      #expect(error.messageName == "v1alpha1.MountResponse")
      #expect(error.description.contains("v1alpha1.MountResponse"))
    } catch {
      Issue.record("unexpected \(error)")
    }
  }

  @Test func deserializerThrowsInvalidArgument() throws {
    let deserializer = ProtoDeserializer<CSI.NodeGetInfoRequest>()
    do {
      let _: CSI.NodeGetInfoRequest = try deserializer.deserialize([UInt8]([0x0A, 0x09]))
      Issue.record("expected a throw")
    } catch let error as RPCError {
      #expect(error.code == .invalidArgument)
      #expect(error.message.contains("csi.v1.NodeGetInfoRequest"))
    }
    let serializer = ProtoSerializer<CSI.NodeGetInfoResponse>()
    let bytes: [UInt8] = try serializer.serialize(CSI.NodeGetInfoResponse(nodeID: "n"))
    #expect(try ProtoDeserializer<CSI.NodeGetInfoResponse>().deserialize(bytes) == CSI.NodeGetInfoResponse(nodeID: "n"))
  }

  @Test func descriptorsNameTheWireMethods() {
    #expect(CSI.Identity.getPluginInfo.descriptor.fullyQualifiedMethod == "csi.v1.Identity/GetPluginInfo")
    #expect(CSI.Node.nodePublishVolume.descriptor.fullyQualifiedMethod == "csi.v1.Node/NodePublishVolume")
    #expect(Provider.CSIDriverProvider.mount.descriptor.fullyQualifiedMethod == "v1alpha1.CSIDriverProvider/Mount")
    #expect(Provider.CSIDriverProvider.version.descriptor.fullyQualifiedMethod == "v1alpha1.CSIDriverProvider/Version")
    #expect(CSI.Identity.methods.count == 3)
    #expect(CSI.Node.methods.count == 8)
    #expect(Set(CSI.Node.methods.map(\.method)).count == 8)
  }
}
