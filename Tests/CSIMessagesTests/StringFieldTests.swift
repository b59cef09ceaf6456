import CSIMessages
import GRPCCore
import Testing

/// String fields reach Swift with their length: a NUL byte or invalid UTF-8 in any of
/// them refuses the whole message, naming the field and never quoting the value.
@Suite struct StringFieldTests {
  static let nul: [UInt8] = Array("ok".utf8) + [0] + Array("/../../escape".utf8)
  /// Invalid UTF-8 of several kinds: a lone continuation byte, an overlong NUL
  /// (Java's "modified UTF-8"), an encoded surrogate, a truncated sequence, and 0xFF.
  static let invalidUTF8: [[UInt8]] = [[0x61, 0x80], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0x61, 0xE2, 0x82], [0xFF]]

  static func refusal<M: ProtoMessage>(_ type: M.Type, _ bytes: [UInt8]) -> ProtoFieldError? {
    do {
      _ = try M(serializedBytes: bytes)
      Issue.record("\(M.protoMessageName) decoded although it should not")
      return nil
    } catch let error as ProtoFieldError {
      return error
    } catch {
      Issue.record("unexpected error \(error)")
      return nil
    }
  }

  static func publish(_ extra: [UInt8]) -> [UInt8] {
    Wire.stringField(1, "csi-abc") + Wire.stringField(4, "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/v/mount") + extra
  }

  @Test func aNulByteInAPlainStringField() {
    for (field, number) in [("volume_id", 1), ("staging_target_path", 3), ("target_path", 4)] {
      let error = Self.refusal(CSI.NodePublishVolumeRequest.self, Self.publish(Wire.bytesField(number, Self.nul)))
      #expect(error == ProtoFieldError(messageName: "csi.v1.NodePublishVolumeRequest", field: field, problem: .nulByte))
      #expect(error?.description == "invalid csi.v1.NodePublishVolumeRequest: field \(field) contains a NUL byte")
    }
    // Unpublish: kubelet's other request with a path.
    let error = Self.refusal(CSI.NodeUnpublishVolumeRequest.self, Wire.stringField(1, "csi-abc") + Wire.bytesField(2, Self.nul))
    #expect(error?.field == "target_path" && error?.problem == .nulByte)
  }

  @Test func invalidUTF8InAPlainStringField() {
    for bad in Self.invalidUTF8 {
      let error = Self.refusal(CSI.NodePublishVolumeRequest.self, Self.publish(Wire.bytesField(4, bad)))
      #expect(error == ProtoFieldError(messageName: "csi.v1.NodePublishVolumeRequest", field: "target_path", problem: .invalidUTF8))
    }
  }

  @Test func mapValuesAndKeys() {
    let token = "eyJhbGciOiJSUzI1NiJ9.SECRET-TOKEN"
    // A volume_context value: the key is named, the value is not.
    let context = Wire.bytesField(8, Wire.stringField(1, "csi.storage.k8s.io/serviceAccount.tokens")
      + Wire.bytesField(2, Array(token.utf8) + [0] + Array("x".utf8)))
    var error = Self.refusal(CSI.NodePublishVolumeRequest.self, Self.publish(Wire.mapEntry(8, "secretProviderClass", "spc") + context))
    #expect(error?.field == "volume_context")
    #expect(error?.entry == .value(key: "csi.storage.k8s.io/serviceAccount.tokens"))
    #expect(error?.description == "invalid csi.v1.NodePublishVolumeRequest: the value of volume_context[\"csi.storage.k8s.io/serviceAccount.tokens\"] contains a NUL byte")
    #expect(error.map { !"\($0)".contains("SECRET") } == true)

    // A secrets value: neither the key nor the value is named.
    let secret = Wire.bytesField(7, Wire.stringField(1, "password") + Wire.bytesField(2, Array("hunter2-SECRET".utf8) + [0xFF]))
    error = Self.refusal(CSI.NodePublishVolumeRequest.self, Self.publish(secret))
    #expect(error == ProtoFieldError(messageName: "csi.v1.NodePublishVolumeRequest", field: "secrets", entry: .value(key: nil), problem: .invalidUTF8))
    #expect(error.map { !"\($0)".contains("SECRET") && !"\($0)".contains("password") } == true)

    // A bad key, in every map of the request.
    for (field, number) in [("publish_context", 2), ("secrets", 7), ("volume_context", 8)] {
      let entry = Wire.bytesField(number, Wire.bytesField(1, Self.nul) + Wire.stringField(2, "v"))
      error = Self.refusal(CSI.NodePublishVolumeRequest.self, Self.publish(entry))
      #expect(error == ProtoFieldError(messageName: "csi.v1.NodePublishVolumeRequest", field: field, entry: .key, problem: .nulByte))
    }
    // A key that is not printable is not quoted.
    let odd = Wire.bytesField(8, Wire.stringField(1, "tab\there") + Wire.bytesField(2, Self.nul))
    #expect(Self.refusal(CSI.NodePublishVolumeRequest.self, Self.publish(odd))?.entry == .value(key: nil))
  }

  @Test func repeatedStringsAndNestedMessages() {
    let mount = Wire.stringField(1, "tmpfs") + Wire.stringField(2, "ro") + Wire.bytesField(2, [0x6E, 0x6F, 0x00])
    let capability = Wire.bytesField(2, mount)
    let error = Self.refusal(CSI.NodePublishVolumeRequest.self, Self.publish(Wire.bytesField(5, capability)))
    #expect(error == ProtoFieldError(
      messageName: "csi.v1.NodePublishVolumeRequest", field: "volume_capability.mount.mount_flags[1]", problem: .nulByte))
    let group = Wire.bytesField(2, Wire.bytesField(3, [0xC3]))
    #expect(Self.refusal(CSI.NodePublishVolumeRequest.self, Self.publish(Wire.bytesField(5, group)))?.field
      == "volume_capability.mount.volume_mount_group")
  }

  @Test func providerResponses() throws {
    let good = Wire.bytesField(1, Wire.stringField(1, "a") + Wire.stringField(2, "v1"))
      + Wire.bytesField(3, Wire.stringField(1, "a") + Wire.bytesField(3, [0, 1, 2]))
    // File contents are bytes: a NUL byte there is content.
    #expect(try Provider.MountResponse(serializedBytes: good).files[0].contents == [0, 1, 2])

    var error = Self.refusal(Provider.MountResponse.self, good + Wire.bytesField(3, Wire.bytesField(1, Self.nul)))
    #expect(error == ProtoFieldError(messageName: "v1alpha1.MountResponse", field: "files[1].path", problem: .nulByte))
    error = Self.refusal(Provider.MountResponse.self, Wire.bytesField(1, Wire.stringField(1, "a") + Wire.bytesField(2, [0xFF])) + good)
    #expect(error == ProtoFieldError(messageName: "v1alpha1.MountResponse", field: "object_version[0].version", problem: .invalidUTF8))
    error = Self.refusal(Provider.MountResponse.self, good + Wire.bytesField(1, Wire.bytesField(1, [0x69, 0x64, 0x00])))
    #expect(error?.field == "object_version[1].id")
    error = Self.refusal(Provider.MountResponse.self, good + Wire.bytesField(2, Wire.bytesField(1, Array("Throttled".utf8) + [0])))
    #expect(error?.field == "error.code")
    error = Self.refusal(Provider.VersionResponse.self, Wire.stringField(1, "v1alpha1") + Wire.bytesField(2, [0x80]))
    #expect(error?.field == "runtime_name")
    // What the driver sends: the provider refuses a bad target path the same way.
    error = Self.refusal(Provider.MountRequest.self, Wire.stringField(1, "{}") + Wire.bytesField(3, Self.nul))
    #expect(error == ProtoFieldError(messageName: "v1alpha1.MountRequest", field: "target_path", problem: .nulByte))
  }

  @Test func validUTF8PassesExactly() throws {
    let text = "секрет/ü-€-😀-\u{FFFD}"  // U+FFFD itself is valid, not a sign of repair
    let request = try CSI.NodePublishVolumeRequest(serializedBytes: Self.publish(Wire.mapEntry(8, "naïve", text)))
    #expect(request.volumeContext == ["naïve": text])
    let file = try Provider.File(serializedBytes: Wire.stringField(1, text))
    #expect(file.path == text)
  }

  /// Swift to C: what the C packer writes is the whole string, NUL byte and all, so a
  /// message built here with one is refused when read back rather than cut short.
  @Test func encodingKeepsEveryByte() {
    let path = "evil\u{0}/../../escape"
    let file = Provider.File(path: path, mode: 0o644)
    #expect(file.serializedBytes() == Wire.stringField(1, path) + Wire.varintField(2, 0o644))
    let response = Provider.MountResponse(objectVersion: [.init(id: "a", version: "1")], files: [.init(path: "a"), file])
    #expect(Self.refusal(Provider.MountResponse.self, response.serializedBytes())?.field == "files[1].path")

    let request = CSI.NodePublishVolumeRequest(targetPath: "/t", volumeContext: ["k": "a\u{0}b"])
    #expect(request.serializedBytes() == Wire.stringField(4, "/t") + Wire.mapEntry(8, "k", "a\u{0}b"))
    #expect(Self.refusal(CSI.NodePublishVolumeRequest.self, request.serializedBytes())?.entry == .value(key: "k"))
  }

  @Test func theDeserializerAnswersInvalidArgumentNamingTheField() throws {
    let bytes = Self.publish(Wire.bytesField(7, Wire.stringField(1, "password") + Wire.bytesField(2, Array("SECRET".utf8) + [0])))
    do {
      let _: CSI.NodePublishVolumeRequest = try ProtoDeserializer<CSI.NodePublishVolumeRequest>().deserialize(bytes)
      Issue.record("expected a throw")
    } catch let error as RPCError {
      #expect(error.code == .invalidArgument)
      #expect(error.message == "invalid csi.v1.NodePublishVolumeRequest: a value of field secrets contains a NUL byte")
      #expect(error.cause is ProtoFieldError)
      #expect(!"\(error)".contains("SECRET"))
    }
  }
}
