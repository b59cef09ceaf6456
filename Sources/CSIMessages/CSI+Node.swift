// Swift values for the CSI Node service messages, with their protoc-c bridging.
// The bridging extensions are internal; only Swift types are public.
internal import CProtobufC

extension CSI {
  public struct NodeStageVolumeRequest: Sendable, Hashable {
    public var volumeID: String
    public var publishContext: [String: String]
    public var stagingTargetPath: String
    public var volumeCapability: CSI.VolumeCapability?
    /// SECRET: never log these values.
    public var secrets: [String: String]
    public var volumeContext: [String: String]

    public init(
      volumeID: String = "",
      publishContext: [String: String] = [:],
      stagingTargetPath: String = "",
      volumeCapability: CSI.VolumeCapability? = nil,
      secrets: [String: String] = [:],
      volumeContext: [String: String] = [:]
    ) {
      self.volumeID = volumeID
      self.publishContext = publishContext
      self.stagingTargetPath = stagingTargetPath
      self.volumeCapability = volumeCapability
      self.secrets = secrets
      self.volumeContext = volumeContext
    }
  }
}

extension CSI.NodeStageVolumeRequest: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.NodeStageVolumeRequest" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__NodeStageVolumeRequest>) { csi__v1__node_stage_volume_request__init(message) }

  init(c: UnsafePointer<Csi__V1__NodeStageVolumeRequest>) throws(ProtoFieldError) {
    self.init(
      volumeID: try swiftString(c.pointee.volume_id, "volume_id"),
      publishContext: try swiftMap(c.pointee.n_publish_context, c.pointee.publish_context, "publish_context"),
      stagingTargetPath: try swiftString(c.pointee.staging_target_path, "staging_target_path"),
      volumeCapability: try swiftOptional(c.pointee.volume_capability, "volume_capability"),
      secrets: try swiftMap(c.pointee.n_secrets, c.pointee.secrets, "secrets", secret: true),
      volumeContext: try swiftMap(c.pointee.n_volume_context, c.pointee.volume_context, "volume_context")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__NodeStageVolumeRequest> {
    arena.message(Self.cInit).with { m in
      m.pointee.volume_id = arena.string(self.volumeID)
      let publishContext: (Int, UnsafeMutablePointer<UnsafeMutablePointer<Csi__V1__NodeStageVolumeRequest__PublishContextEntry>?>?) = arena.map(self.publishContext)
      (m.pointee.n_publish_context, m.pointee.publish_context) = (publishContext.0, publishContext.1)
      m.pointee.staging_target_path = arena.string(self.stagingTargetPath)
      m.pointee.volume_capability = self.volumeCapability.map { $0.toC(arena) }
      let secrets: (Int, UnsafeMutablePointer<UnsafeMutablePointer<Csi__V1__NodeStageVolumeRequest__SecretsEntry>?>?) = arena.map(self.secrets)
      (m.pointee.n_secrets, m.pointee.secrets) = (secrets.0, secrets.1)
      let volumeContext: (Int, UnsafeMutablePointer<UnsafeMutablePointer<Csi__V1__NodeStageVolumeRequest__VolumeContextEntry>?>?) = arena.map(self.volumeContext)
      (m.pointee.n_volume_context, m.pointee.volume_context) = (volumeContext.0, volumeContext.1)
    }
  }
}

extension CSI {
  public struct NodeStageVolumeResponse: Sendable, Hashable {
    public init() {}
  }
}

extension CSI.NodeStageVolumeResponse: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.NodeStageVolumeResponse" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__NodeStageVolumeResponse>) { csi__v1__node_stage_volume_response__init(message) }

  init(c: UnsafePointer<Csi__V1__NodeStageVolumeResponse>) throws(ProtoFieldError) {
    self.init()
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__NodeStageVolumeResponse> {
    arena.message(Self.cInit)
  }
}

extension CSI {
  public struct NodeUnstageVolumeRequest: Sendable, Hashable {
    public var volumeID: String
    public var stagingTargetPath: String

    public init(
      volumeID: String = "",
      stagingTargetPath: String = ""
    ) {
      self.volumeID = volumeID
      self.stagingTargetPath = stagingTargetPath
    }
  }
}

extension CSI.NodeUnstageVolumeRequest: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.NodeUnstageVolumeRequest" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__NodeUnstageVolumeRequest>) { csi__v1__node_unstage_volume_request__init(message) }

  init(c: UnsafePointer<Csi__V1__NodeUnstageVolumeRequest>) throws(ProtoFieldError) {
    self.init(
      volumeID: try swiftString(c.pointee.volume_id, "volume_id"),
      stagingTargetPath: try swiftString(c.pointee.staging_target_path, "staging_target_path")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__NodeUnstageVolumeRequest> {
    arena.message(Self.cInit).with { m in
      m.pointee.volume_id = arena.string(self.volumeID)
      m.pointee.staging_target_path = arena.string(self.stagingTargetPath)
    }
  }
}

extension CSI {
  public struct NodeUnstageVolumeResponse: Sendable, Hashable {
    public init() {}
  }
}

extension CSI.NodeUnstageVolumeResponse: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.NodeUnstageVolumeResponse" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__NodeUnstageVolumeResponse>) { csi__v1__node_unstage_volume_response__init(message) }

  init(c: UnsafePointer<Csi__V1__NodeUnstageVolumeResponse>) throws(ProtoFieldError) {
    self.init()
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__NodeUnstageVolumeResponse> {
    arena.message(Self.cInit)
  }
}

extension CSI {
  public struct NodePublishVolumeRequest: Sendable, Hashable {
    public var volumeID: String
    public var publishContext: [String: String]
    public var stagingTargetPath: String
    public var targetPath: String
    public var volumeCapability: CSI.VolumeCapability?
    public var readonly: Bool
    /// SECRET: never log these values. The nodePublishSecretRef Secret; newer kubelets may put the service-account tokens here too.
    public var secrets: [String: String]
    /// Pod information. The `csi.storage.k8s.io/serviceAccount.tokens` value is SECRET.
    public var volumeContext: [String: String]

    public init(
      volumeID: String = "",
      publishContext: [String: String] = [:],
      stagingTargetPath: String = "",
      targetPath: String = "",
      volumeCapability: CSI.VolumeCapability? = nil,
      readonly: Bool = false,
      secrets: [String: String] = [:],
      volumeContext: [String: String] = [:]
    ) {
      self.volumeID = volumeID
      self.publishContext = publishContext
      self.stagingTargetPath = stagingTargetPath
      self.targetPath = targetPath
      self.volumeCapability = volumeCapability
      self.readonly = readonly
      self.secrets = secrets
      self.volumeContext = volumeContext
    }
  }
}

extension CSI.NodePublishVolumeRequest: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.NodePublishVolumeRequest" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__NodePublishVolumeRequest>) { csi__v1__node_publish_volume_request__init(message) }

  init(c: UnsafePointer<Csi__V1__NodePublishVolumeRequest>) throws(ProtoFieldError) {
    self.init(
      volumeID: try swiftString(c.pointee.volume_id, "volume_id"),
      publishContext: try swiftMap(c.pointee.n_publish_context, c.pointee.publish_context, "publish_context"),
      stagingTargetPath: try swiftString(c.pointee.staging_target_path, "staging_target_path"),
      targetPath: try swiftString(c.pointee.target_path, "target_path"),
      volumeCapability: try swiftOptional(c.pointee.volume_capability, "volume_capability"),
      readonly: c.pointee.readonly != 0,
      secrets: try swiftMap(c.pointee.n_secrets, c.pointee.secrets, "secrets", secret: true),
      volumeContext: try swiftMap(c.pointee.n_volume_context, c.pointee.volume_context, "volume_context")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__NodePublishVolumeRequest> {
    arena.message(Self.cInit).with { m in
      m.pointee.volume_id = arena.string(self.volumeID)
      let publishContext: (Int, UnsafeMutablePointer<UnsafeMutablePointer<Csi__V1__NodePublishVolumeRequest__PublishContextEntry>?>?) = arena.map(self.publishContext)
      (m.pointee.n_publish_context, m.pointee.publish_context) = (publishContext.0, publishContext.1)
      m.pointee.staging_target_path = arena.string(self.stagingTargetPath)
      m.pointee.target_path = arena.string(self.targetPath)
      m.pointee.volume_capability = self.volumeCapability.map { $0.toC(arena) }
      m.pointee.readonly = self.readonly ? 1 : 0
      let secrets: (Int, UnsafeMutablePointer<UnsafeMutablePointer<Csi__V1__NodePublishVolumeRequest__SecretsEntry>?>?) = arena.map(self.secrets)
      (m.pointee.n_secrets, m.pointee.secrets) = (secrets.0, secrets.1)
      let volumeContext: (Int, UnsafeMutablePointer<UnsafeMutablePointer<Csi__V1__NodePublishVolumeRequest__VolumeContextEntry>?>?) = arena.map(self.volumeContext)
      (m.pointee.n_volume_context, m.pointee.volume_context) = (volumeContext.0, volumeContext.1)
    }
  }
}

extension CSI {
  public struct NodePublishVolumeResponse: Sendable, Hashable {
    public init() {}
  }
}

extension CSI.NodePublishVolumeResponse: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.NodePublishVolumeResponse" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__NodePublishVolumeResponse>) { csi__v1__node_publish_volume_response__init(message) }

  init(c: UnsafePointer<Csi__V1__NodePublishVolumeResponse>) throws(ProtoFieldError) {
    self.init()
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__NodePublishVolumeResponse> {
    arena.message(Self.cInit)
  }
}

extension CSI {
  public struct NodeUnpublishVolumeRequest: Sendable, Hashable {
    public var volumeID: String
    public var targetPath: String

    public init(
      volumeID: String = "",
      targetPath: String = ""
    ) {
      self.volumeID = volumeID
      self.targetPath = targetPath
    }
  }
}

extension CSI.NodeUnpublishVolumeRequest: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.NodeUnpublishVolumeRequest" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__NodeUnpublishVolumeRequest>) { csi__v1__node_unpublish_volume_request__init(message) }

  init(c: UnsafePointer<Csi__V1__NodeUnpublishVolumeRequest>) throws(ProtoFieldError) {
    self.init(
      volumeID: try swiftString(c.pointee.volume_id, "volume_id"),
      targetPath: try swiftString(c.pointee.target_path, "target_path")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__NodeUnpublishVolumeRequest> {
    arena.message(Self.cInit).with { m in
      m.pointee.volume_id = arena.string(self.volumeID)
      m.pointee.target_path = arena.string(self.targetPath)
    }
  }
}

extension CSI {
  public struct NodeUnpublishVolumeResponse: Sendable, Hashable {
    public init() {}
  }
}

extension CSI.NodeUnpublishVolumeResponse: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.NodeUnpublishVolumeResponse" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__NodeUnpublishVolumeResponse>) { csi__v1__node_unpublish_volume_response__init(message) }

  init(c: UnsafePointer<Csi__V1__NodeUnpublishVolumeResponse>) throws(ProtoFieldError) {
    self.init()
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__NodeUnpublishVolumeResponse> {
    arena.message(Self.cInit)
  }
}

extension CSI {
  public struct NodeGetVolumeStatsRequest: Sendable, Hashable {
    public var volumeID: String
    public var volumePath: String
    public var stagingTargetPath: String

    public init(
      volumeID: String = "",
      volumePath: String = "",
      stagingTargetPath: String = ""
    ) {
      self.volumeID = volumeID
      self.volumePath = volumePath
      self.stagingTargetPath = stagingTargetPath
    }
  }
}

extension CSI.NodeGetVolumeStatsRequest: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.NodeGetVolumeStatsRequest" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__NodeGetVolumeStatsRequest>) { csi__v1__node_get_volume_stats_request__init(message) }

  init(c: UnsafePointer<Csi__V1__NodeGetVolumeStatsRequest>) throws(ProtoFieldError) {
    self.init(
      volumeID: try swiftString(c.pointee.volume_id, "volume_id"),
      volumePath: try swiftString(c.pointee.volume_path, "volume_path"),
      stagingTargetPath: try swiftString(c.pointee.staging_target_path, "staging_target_path")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__NodeGetVolumeStatsRequest> {
    arena.message(Self.cInit).with { m in
      m.pointee.volume_id = arena.string(self.volumeID)
      m.pointee.volume_path = arena.string(self.volumePath)
      m.pointee.staging_target_path = arena.string(self.stagingTargetPath)
    }
  }
}

extension CSI {
  public struct NodeGetVolumeStatsResponse: Sendable, Hashable {
    public var usage: [CSI.VolumeUsage]
    public var volumeCondition: CSI.VolumeCondition?

    public init(
      usage: [CSI.VolumeUsage] = [],
      volumeCondition: CSI.VolumeCondition? = nil
    ) {
      self.usage = usage
      self.volumeCondition = volumeCondition
    }
  }
}

extension CSI.NodeGetVolumeStatsResponse: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.NodeGetVolumeStatsResponse" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__NodeGetVolumeStatsResponse>) { csi__v1__node_get_volume_stats_response__init(message) }

  init(c: UnsafePointer<Csi__V1__NodeGetVolumeStatsResponse>) throws(ProtoFieldError) {
    self.init(
      usage: try swiftRepeated(c.pointee.n_usage, c.pointee.usage, "usage"),
      volumeCondition: try swiftOptional(c.pointee.volume_condition, "volume_condition")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__NodeGetVolumeStatsResponse> {
    arena.message(Self.cInit).with { m in
      (m.pointee.n_usage, m.pointee.usage) = arena.repeated(self.usage)
      m.pointee.volume_condition = self.volumeCondition.map { $0.toC(arena) }
    }
  }
}

extension CSI {
  public struct VolumeUsage: Sendable, Hashable {
    public var available: Int64
    public var total: Int64
    public var used: Int64
    public var unit: Unit
    /// What the numbers count. Proto3 enums are open: values this build does not know are kept.
    public struct Unit: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
      public var rawValue: Int32
      public init(rawValue: Int32) { self.rawValue = rawValue }
      public static let unknown = Self(rawValue: 0)
      public static let bytes = Self(rawValue: 1)
      public static let inodes = Self(rawValue: 2)

      public var description: String {
        switch self.rawValue {
        case 0: "UNKNOWN"
        case 1: "BYTES"
        case 2: "INODES"
        default: "\(self.rawValue)"
        }
      }
    }

    public init(
      available: Int64 = 0,
      total: Int64 = 0,
      used: Int64 = 0,
      unit: Unit = .init(rawValue: 0)
    ) {
      self.available = available
      self.total = total
      self.used = used
      self.unit = unit
    }
  }
}

extension CSI.VolumeUsage: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.VolumeUsage" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__VolumeUsage>) { csi__v1__volume_usage__init(message) }

  init(c: UnsafePointer<Csi__V1__VolumeUsage>) throws(ProtoFieldError) {
    self.init(
      available: c.pointee.available,
      total: c.pointee.total,
      used: c.pointee.used,
      unit: Unit(rawValue: enumValue(c.pointee.unit))
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__VolumeUsage> {
    arena.message(Self.cInit).with { m in
      m.pointee.available = self.available
      m.pointee.total = self.total
      m.pointee.used = self.used
      m.pointee.unit = cEnum(self.unit.rawValue)
    }
  }
}

extension CSI {
  public struct VolumeCondition: Sendable, Hashable {
    public var abnormal: Bool
    public var message: String

    public init(
      abnormal: Bool = false,
      message: String = ""
    ) {
      self.abnormal = abnormal
      self.message = message
    }
  }
}

extension CSI.VolumeCondition: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.VolumeCondition" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__VolumeCondition>) { csi__v1__volume_condition__init(message) }

  init(c: UnsafePointer<Csi__V1__VolumeCondition>) throws(ProtoFieldError) {
    self.init(
      abnormal: c.pointee.abnormal != 0,
      message: try swiftString(c.pointee.message, "message")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__VolumeCondition> {
    arena.message(Self.cInit).with { m in
      m.pointee.abnormal = self.abnormal ? 1 : 0
      m.pointee.message = arena.string(self.message)
    }
  }
}

extension CSI {
  public struct NodeGetCapabilitiesRequest: Sendable, Hashable {
    public init() {}
  }
}

extension CSI.NodeGetCapabilitiesRequest: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.NodeGetCapabilitiesRequest" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__NodeGetCapabilitiesRequest>) { csi__v1__node_get_capabilities_request__init(message) }

  init(c: UnsafePointer<Csi__V1__NodeGetCapabilitiesRequest>) throws(ProtoFieldError) {
    self.init()
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__NodeGetCapabilitiesRequest> {
    arena.message(Self.cInit)
  }
}

extension CSI {
  public struct NodeGetCapabilitiesResponse: Sendable, Hashable {
    public var capabilities: [CSI.NodeServiceCapability]

    public init(
      capabilities: [CSI.NodeServiceCapability] = []
    ) {
      self.capabilities = capabilities
    }
  }
}

extension CSI.NodeGetCapabilitiesResponse: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.NodeGetCapabilitiesResponse" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__NodeGetCapabilitiesResponse>) { csi__v1__node_get_capabilities_response__init(message) }

  init(c: UnsafePointer<Csi__V1__NodeGetCapabilitiesResponse>) throws(ProtoFieldError) {
    self.init(
      capabilities: try swiftRepeated(c.pointee.n_capabilities, c.pointee.capabilities, "capabilities")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__NodeGetCapabilitiesResponse> {
    arena.message(Self.cInit).with { m in
      (m.pointee.n_capabilities, m.pointee.capabilities) = arena.repeated(self.capabilities)
    }
  }
}

extension CSI {
  public struct NodeServiceCapability: Sendable, Hashable {
    /// The proto oneof `type`; nil when a newer plugin sends a kind this build does not know.
    public var type: Kind?

    /// The proto oneof `type`.
    public enum Kind: Sendable, Hashable {
      case rpc(RPC)
    }

    public init(
      type: Kind? = nil
    ) {
      self.type = type
    }
  }
}

extension CSI.NodeServiceCapability: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.NodeServiceCapability" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__NodeServiceCapability>) { csi__v1__node_service_capability__init(message) }

  init(c: UnsafePointer<Csi__V1__NodeServiceCapability>) throws(ProtoFieldError) {
    self.init(
      type: try Kind(c)
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__NodeServiceCapability> {
    arena.message(Self.cInit).with { m in
      switch self.type {
      case .rpc(let rpc):
        m.pointee.type_case = CSI__V1__NODE_SERVICE_CAPABILITY__TYPE_RPC
        m.pointee.rpc = rpc.toC(arena)
      case nil:
        break
      }
    }
  }
}

extension CSI.NodeServiceCapability {
  public struct RPC: Sendable, Hashable {
    public var type: RPCType
    /// An optional node RPC or behaviour. Proto3 enums are open: values this build does not know are kept.
    public struct RPCType: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
      public var rawValue: Int32
      public init(rawValue: Int32) { self.rawValue = rawValue }
      public static let unknown = Self(rawValue: 0)
      public static let stageUnstageVolume = Self(rawValue: 1)
      public static let getVolumeStats = Self(rawValue: 2)
      public static let expandVolume = Self(rawValue: 3)
      public static let volumeCondition = Self(rawValue: 4)
      public static let singleNodeMultiWriter = Self(rawValue: 5)
      public static let volumeMountGroup = Self(rawValue: 6)

      public var description: String {
        switch self.rawValue {
        case 0: "UNKNOWN"
        case 1: "STAGE_UNSTAGE_VOLUME"
        case 2: "GET_VOLUME_STATS"
        case 3: "EXPAND_VOLUME"
        case 4: "VOLUME_CONDITION"
        case 5: "SINGLE_NODE_MULTI_WRITER"
        case 6: "VOLUME_MOUNT_GROUP"
        default: "\(self.rawValue)"
        }
      }
    }

    public init(
      type: RPCType = .init(rawValue: 0)
    ) {
      self.type = type
    }
  }
}

extension CSI.NodeServiceCapability.RPC: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.NodeServiceCapability.RPC" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__NodeServiceCapability__RPC>) { csi__v1__node_service_capability__rpc__init(message) }

  init(c: UnsafePointer<Csi__V1__NodeServiceCapability__RPC>) throws(ProtoFieldError) {
    self.init(
      type: RPCType(rawValue: enumValue(c.pointee.type))
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__NodeServiceCapability__RPC> {
    arena.message(Self.cInit).with { m in
      m.pointee.type = cEnum(self.type.rawValue)
    }
  }
}

extension CSI {
  public struct NodeGetInfoRequest: Sendable, Hashable {
    public init() {}
  }
}

extension CSI.NodeGetInfoRequest: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.NodeGetInfoRequest" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__NodeGetInfoRequest>) { csi__v1__node_get_info_request__init(message) }

  init(c: UnsafePointer<Csi__V1__NodeGetInfoRequest>) throws(ProtoFieldError) {
    self.init()
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__NodeGetInfoRequest> {
    arena.message(Self.cInit)
  }
}

extension CSI {
  public struct NodeGetInfoResponse: Sendable, Hashable {
    public var nodeID: String
    public var maxVolumesPerNode: Int64
    public var accessibleTopology: CSI.Topology?

    public init(
      nodeID: String = "",
      maxVolumesPerNode: Int64 = 0,
      accessibleTopology: CSI.Topology? = nil
    ) {
      self.nodeID = nodeID
      self.maxVolumesPerNode = maxVolumesPerNode
      self.accessibleTopology = accessibleTopology
    }
  }
}

extension CSI.NodeGetInfoResponse: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.NodeGetInfoResponse" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__NodeGetInfoResponse>) { csi__v1__node_get_info_response__init(message) }

  init(c: UnsafePointer<Csi__V1__NodeGetInfoResponse>) throws(ProtoFieldError) {
    self.init(
      nodeID: try swiftString(c.pointee.node_id, "node_id"),
      maxVolumesPerNode: c.pointee.max_volumes_per_node,
      accessibleTopology: try swiftOptional(c.pointee.accessible_topology, "accessible_topology")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__NodeGetInfoResponse> {
    arena.message(Self.cInit).with { m in
      m.pointee.node_id = arena.string(self.nodeID)
      m.pointee.max_volumes_per_node = self.maxVolumesPerNode
      m.pointee.accessible_topology = self.accessibleTopology.map { $0.toC(arena) }
    }
  }
}

extension CSI {
  public struct NodeExpandVolumeRequest: Sendable, Hashable {
    public var volumeID: String
    public var volumePath: String
    public var capacityRange: CSI.CapacityRange?
    public var stagingTargetPath: String
    public var volumeCapability: CSI.VolumeCapability?
    /// SECRET: never log these values.
    public var secrets: [String: String]

    public init(
      volumeID: String = "",
      volumePath: String = "",
      capacityRange: CSI.CapacityRange? = nil,
      stagingTargetPath: String = "",
      volumeCapability: CSI.VolumeCapability? = nil,
      secrets: [String: String] = [:]
    ) {
      self.volumeID = volumeID
      self.volumePath = volumePath
      self.capacityRange = capacityRange
      self.stagingTargetPath = stagingTargetPath
      self.volumeCapability = volumeCapability
      self.secrets = secrets
    }
  }
}

extension CSI.NodeExpandVolumeRequest: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.NodeExpandVolumeRequest" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__NodeExpandVolumeRequest>) { csi__v1__node_expand_volume_request__init(message) }

  init(c: UnsafePointer<Csi__V1__NodeExpandVolumeRequest>) throws(ProtoFieldError) {
    self.init(
      volumeID: try swiftString(c.pointee.volume_id, "volume_id"),
      volumePath: try swiftString(c.pointee.volume_path, "volume_path"),
      capacityRange: try swiftOptional(c.pointee.capacity_range, "capacity_range"),
      stagingTargetPath: try swiftString(c.pointee.staging_target_path, "staging_target_path"),
      volumeCapability: try swiftOptional(c.pointee.volume_capability, "volume_capability"),
      secrets: try swiftMap(c.pointee.n_secrets, c.pointee.secrets, "secrets", secret: true)
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__NodeExpandVolumeRequest> {
    arena.message(Self.cInit).with { m in
      m.pointee.volume_id = arena.string(self.volumeID)
      m.pointee.volume_path = arena.string(self.volumePath)
      m.pointee.capacity_range = self.capacityRange.map { $0.toC(arena) }
      m.pointee.staging_target_path = arena.string(self.stagingTargetPath)
      m.pointee.volume_capability = self.volumeCapability.map { $0.toC(arena) }
      let secrets: (Int, UnsafeMutablePointer<UnsafeMutablePointer<Csi__V1__NodeExpandVolumeRequest__SecretsEntry>?>?) = arena.map(self.secrets)
      (m.pointee.n_secrets, m.pointee.secrets) = (secrets.0, secrets.1)
    }
  }
}

extension CSI {
  public struct NodeExpandVolumeResponse: Sendable, Hashable {
    public var capacityBytes: Int64

    public init(
      capacityBytes: Int64 = 0
    ) {
      self.capacityBytes = capacityBytes
    }
  }
}

extension CSI.NodeExpandVolumeResponse: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.NodeExpandVolumeResponse" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__NodeExpandVolumeResponse>) { csi__v1__node_expand_volume_response__init(message) }

  init(c: UnsafePointer<Csi__V1__NodeExpandVolumeResponse>) throws(ProtoFieldError) {
    self.init(
      capacityBytes: c.pointee.capacity_bytes
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__NodeExpandVolumeResponse> {
    arena.message(Self.cInit).with { m in
      m.pointee.capacity_bytes = self.capacityBytes
    }
  }
}
