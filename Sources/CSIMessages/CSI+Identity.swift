// Swift values for the CSI Identity service messages, with their protoc-c bridging.
// The bridging extensions are internal; only Swift types are public.
internal import CProtobufC

extension CSI {
  public struct GetPluginInfoRequest: Sendable, Hashable {
    public init() {}
  }
}

extension CSI.GetPluginInfoRequest: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.GetPluginInfoRequest" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__GetPluginInfoRequest>) { csi__v1__get_plugin_info_request__init(message) }

  init(c: UnsafePointer<Csi__V1__GetPluginInfoRequest>) throws(ProtoFieldError) {
    self.init()
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__GetPluginInfoRequest> {
    arena.message(Self.cInit)
  }
}

extension CSI {
  public struct GetPluginInfoResponse: Sendable, Hashable {
    /// Domain-name style, at most 63 characters.
    public var name: String
    public var vendorVersion: String
    /// Optional values, opaque to the CO.
    public var manifest: [String: String]

    public init(
      name: String = "",
      vendorVersion: String = "",
      manifest: [String: String] = [:]
    ) {
      self.name = name
      self.vendorVersion = vendorVersion
      self.manifest = manifest
    }
  }
}

extension CSI.GetPluginInfoResponse: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.GetPluginInfoResponse" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__GetPluginInfoResponse>) { csi__v1__get_plugin_info_response__init(message) }

  init(c: UnsafePointer<Csi__V1__GetPluginInfoResponse>) throws(ProtoFieldError) {
    self.init(
      name: try swiftString(c.pointee.name, "name"),
      vendorVersion: try swiftString(c.pointee.vendor_version, "vendor_version"),
      manifest: try swiftMap(c.pointee.n_manifest, c.pointee.manifest, "manifest")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__GetPluginInfoResponse> {
    arena.message(Self.cInit).with { m in
      m.pointee.name = arena.string(self.name)
      m.pointee.vendor_version = arena.string(self.vendorVersion)
      let manifest: (Int, UnsafeMutablePointer<UnsafeMutablePointer<Csi__V1__GetPluginInfoResponse__ManifestEntry>?>?) = arena.map(self.manifest)
      (m.pointee.n_manifest, m.pointee.manifest) = (manifest.0, manifest.1)
    }
  }
}

extension CSI {
  public struct GetPluginCapabilitiesRequest: Sendable, Hashable {
    public init() {}
  }
}

extension CSI.GetPluginCapabilitiesRequest: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.GetPluginCapabilitiesRequest" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__GetPluginCapabilitiesRequest>) { csi__v1__get_plugin_capabilities_request__init(message) }

  init(c: UnsafePointer<Csi__V1__GetPluginCapabilitiesRequest>) throws(ProtoFieldError) {
    self.init()
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__GetPluginCapabilitiesRequest> {
    arena.message(Self.cInit)
  }
}

extension CSI {
  public struct GetPluginCapabilitiesResponse: Sendable, Hashable {
    public var capabilities: [CSI.PluginCapability]

    public init(
      capabilities: [CSI.PluginCapability] = []
    ) {
      self.capabilities = capabilities
    }
  }
}

extension CSI.GetPluginCapabilitiesResponse: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.GetPluginCapabilitiesResponse" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__GetPluginCapabilitiesResponse>) { csi__v1__get_plugin_capabilities_response__init(message) }

  init(c: UnsafePointer<Csi__V1__GetPluginCapabilitiesResponse>) throws(ProtoFieldError) {
    self.init(
      capabilities: try swiftRepeated(c.pointee.n_capabilities, c.pointee.capabilities, "capabilities")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__GetPluginCapabilitiesResponse> {
    arena.message(Self.cInit).with { m in
      (m.pointee.n_capabilities, m.pointee.capabilities) = arena.repeated(self.capabilities)
    }
  }
}

extension CSI {
  /// One capability of the plugin as a whole.
  public struct PluginCapability: Sendable, Hashable {
    /// The proto oneof `type`; nil when a newer CO sends a kind this build does not know.
    public var type: Kind?

    /// The proto oneof `type`.
    public enum Kind: Sendable, Hashable {
      case service(Service)
      case volumeExpansion(VolumeExpansion)
    }

    public init(
      type: Kind? = nil
    ) {
      self.type = type
    }
  }
}

extension CSI.PluginCapability: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.PluginCapability" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__PluginCapability>) { csi__v1__plugin_capability__init(message) }

  init(c: UnsafePointer<Csi__V1__PluginCapability>) throws(ProtoFieldError) {
    self.init(
      type: try Kind(c)
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__PluginCapability> {
    arena.message(Self.cInit).with { m in
      switch self.type {
      case .service(let service):
        m.pointee.type_case = CSI__V1__PLUGIN_CAPABILITY__TYPE_SERVICE
        m.pointee.service = service.toC(arena)
      case .volumeExpansion(let expansion):
        m.pointee.type_case = CSI__V1__PLUGIN_CAPABILITY__TYPE_VOLUME_EXPANSION
        m.pointee.volume_expansion = expansion.toC(arena)
      case nil:
        break
      }
    }
  }
}

extension CSI.PluginCapability {
  public struct Service: Sendable, Hashable {
    public var type: ServiceType
    /// The service a plugin provides. Proto3 enums are open: values this build does not know are kept.
    public struct ServiceType: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
      public var rawValue: Int32
      public init(rawValue: Int32) { self.rawValue = rawValue }
      public static let unknown = Self(rawValue: 0)
      public static let controllerService = Self(rawValue: 1)
      public static let volumeAccessibilityConstraints = Self(rawValue: 2)
      public static let groupControllerService = Self(rawValue: 3)
      public static let snapshotMetadataService = Self(rawValue: 4)

      public var description: String {
        switch self.rawValue {
        case 0: "UNKNOWN"
        case 1: "CONTROLLER_SERVICE"
        case 2: "VOLUME_ACCESSIBILITY_CONSTRAINTS"
        case 3: "GROUP_CONTROLLER_SERVICE"
        case 4: "SNAPSHOT_METADATA_SERVICE"
        default: "\(self.rawValue)"
        }
      }
    }

    public init(
      type: ServiceType = .init(rawValue: 0)
    ) {
      self.type = type
    }
  }
}

extension CSI.PluginCapability.Service: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.PluginCapability.Service" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__PluginCapability__Service>) { csi__v1__plugin_capability__service__init(message) }

  init(c: UnsafePointer<Csi__V1__PluginCapability__Service>) throws(ProtoFieldError) {
    self.init(
      type: ServiceType(rawValue: enumValue(c.pointee.type))
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__PluginCapability__Service> {
    arena.message(Self.cInit).with { m in
      m.pointee.type = cEnum(self.type.rawValue)
    }
  }
}

extension CSI.PluginCapability {
  public struct VolumeExpansion: Sendable, Hashable {
    public var type: ExpansionType
    /// How volumes can be expanded. Proto3 enums are open: values this build does not know are kept.
    public struct ExpansionType: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
      public var rawValue: Int32
      public init(rawValue: Int32) { self.rawValue = rawValue }
      public static let unknown = Self(rawValue: 0)
      public static let online = Self(rawValue: 1)
      public static let offline = Self(rawValue: 2)

      public var description: String {
        switch self.rawValue {
        case 0: "UNKNOWN"
        case 1: "ONLINE"
        case 2: "OFFLINE"
        default: "\(self.rawValue)"
        }
      }
    }

    public init(
      type: ExpansionType = .init(rawValue: 0)
    ) {
      self.type = type
    }
  }
}

extension CSI.PluginCapability.VolumeExpansion: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.PluginCapability.VolumeExpansion" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__PluginCapability__VolumeExpansion>) { csi__v1__plugin_capability__volume_expansion__init(message) }

  init(c: UnsafePointer<Csi__V1__PluginCapability__VolumeExpansion>) throws(ProtoFieldError) {
    self.init(
      type: ExpansionType(rawValue: enumValue(c.pointee.type))
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__PluginCapability__VolumeExpansion> {
    arena.message(Self.cInit).with { m in
      m.pointee.type = cEnum(self.type.rawValue)
    }
  }
}

extension CSI {
  public struct ProbeRequest: Sendable, Hashable {
    public init() {}
  }
}

extension CSI.ProbeRequest: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.ProbeRequest" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__ProbeRequest>) { csi__v1__probe_request__init(message) }

  init(c: UnsafePointer<Csi__V1__ProbeRequest>) throws(ProtoFieldError) {
    self.init()
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__ProbeRequest> {
    arena.message(Self.cInit)
  }
}

extension CSI {
  public struct ProbeResponse: Sendable, Hashable {
    /// google.protobuf.BoolValue: nil means ready, false means still initialising.
    public var ready: Bool?

    public init(
      ready: Bool? = nil
    ) {
      self.ready = ready
    }
  }
}

extension CSI.ProbeResponse: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.ProbeResponse" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__ProbeResponse>) { csi__v1__probe_response__init(message) }

  init(c: UnsafePointer<Csi__V1__ProbeResponse>) throws(ProtoFieldError) {
    self.init(
      ready: c.pointee.ready.map { $0.pointee.value != 0 }
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__ProbeResponse> {
    arena.message(Self.cInit).with { m in
      m.pointee.ready = self.ready.map { value in
        arena.message(google__protobuf__bool_value__init).with { $0.pointee.value = value ? 1 : 0 }
      }
    }
  }
}
