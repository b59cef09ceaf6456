// Swift values for the shared CSI messages, with their protoc-c bridging.
// The bridging extensions are internal; only Swift types are public.
internal import CProtobufC

extension CSI {
  /// How a volume is to be used.
  public struct VolumeCapability: Sendable, Hashable {
    /// The proto oneof `access_type`.
    public var accessType: AccessType?
    public var accessMode: AccessMode?

    /// The proto oneof `access_type`.
    public enum AccessType: Sendable, Hashable {
      case block(BlockVolume)
      case mount(MountVolume)
    }

    public init(
      accessType: AccessType? = nil,
      accessMode: AccessMode? = nil
    ) {
      self.accessType = accessType
      self.accessMode = accessMode
    }
  }
}

extension CSI.VolumeCapability: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.VolumeCapability" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__VolumeCapability>) { csi__v1__volume_capability__init(message) }

  init(c: UnsafePointer<Csi__V1__VolumeCapability>) throws(ProtoFieldError) {
    self.init(
      accessType: try AccessType(c),
      accessMode: try swiftOptional(c.pointee.access_mode, "access_mode")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__VolumeCapability> {
    arena.message(Self.cInit).with { m in
      switch self.accessType {
      case .block(let block):
        m.pointee.access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK
        m.pointee.block = block.toC(arena)
      case .mount(let mount):
        m.pointee.access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT
        m.pointee.mount = mount.toC(arena)
      case nil:
        break
      }
      m.pointee.access_mode = self.accessMode.map { $0.toC(arena) }
    }
  }
}

extension CSI.VolumeCapability {
  /// Access through the block device API.
  public struct BlockVolume: Sendable, Hashable {
    public init() {}
  }
}

extension CSI.VolumeCapability.BlockVolume: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.VolumeCapability.BlockVolume" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__VolumeCapability__BlockVolume>) { csi__v1__volume_capability__block_volume__init(message) }

  init(c: UnsafePointer<Csi__V1__VolumeCapability__BlockVolume>) throws(ProtoFieldError) {
    self.init()
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__VolumeCapability__BlockVolume> {
    arena.message(Self.cInit)
  }
}

extension CSI.VolumeCapability {
  /// Access through a mounted filesystem.
  public struct MountVolume: Sendable, Hashable {
    public var fsType: String
    /// May hold sensitive values.
    public var mountFlags: [String]
    public var volumeMountGroup: String

    public init(
      fsType: String = "",
      mountFlags: [String] = [],
      volumeMountGroup: String = ""
    ) {
      self.fsType = fsType
      self.mountFlags = mountFlags
      self.volumeMountGroup = volumeMountGroup
    }
  }
}

extension CSI.VolumeCapability.MountVolume: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.VolumeCapability.MountVolume" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__VolumeCapability__MountVolume>) { csi__v1__volume_capability__mount_volume__init(message) }

  init(c: UnsafePointer<Csi__V1__VolumeCapability__MountVolume>) throws(ProtoFieldError) {
    self.init(
      fsType: try swiftString(c.pointee.fs_type, "fs_type"),
      mountFlags: try swiftStrings(c.pointee.n_mount_flags, c.pointee.mount_flags, "mount_flags"),
      volumeMountGroup: try swiftString(c.pointee.volume_mount_group, "volume_mount_group")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__VolumeCapability__MountVolume> {
    arena.message(Self.cInit).with { m in
      m.pointee.fs_type = arena.string(self.fsType)
      (m.pointee.n_mount_flags, m.pointee.mount_flags) = arena.strings(self.mountFlags)
      m.pointee.volume_mount_group = arena.string(self.volumeMountGroup)
    }
  }
}

extension CSI.VolumeCapability {
  public struct AccessMode: Sendable, Hashable {
    public var mode: Mode
    /// Where and how often a volume may be published. Proto3 enums are open: values this build does not know are kept.
    public struct Mode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
      public var rawValue: Int32
      public init(rawValue: Int32) { self.rawValue = rawValue }
      public static let unknown = Self(rawValue: 0)
      public static let singleNodeWriter = Self(rawValue: 1)
      public static let singleNodeReaderOnly = Self(rawValue: 2)
      public static let multiNodeReaderOnly = Self(rawValue: 3)
      public static let multiNodeSingleWriter = Self(rawValue: 4)
      public static let multiNodeMultiWriter = Self(rawValue: 5)
      public static let singleNodeSingleWriter = Self(rawValue: 6)
      public static let singleNodeMultiWriter = Self(rawValue: 7)

      public var description: String {
        switch self.rawValue {
        case 0: "UNKNOWN"
        case 1: "SINGLE_NODE_WRITER"
        case 2: "SINGLE_NODE_READER_ONLY"
        case 3: "MULTI_NODE_READER_ONLY"
        case 4: "MULTI_NODE_SINGLE_WRITER"
        case 5: "MULTI_NODE_MULTI_WRITER"
        case 6: "SINGLE_NODE_SINGLE_WRITER"
        case 7: "SINGLE_NODE_MULTI_WRITER"
        default: "\(self.rawValue)"
        }
      }
    }

    public init(
      mode: Mode = .init(rawValue: 0)
    ) {
      self.mode = mode
    }
  }
}

extension CSI.VolumeCapability.AccessMode: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.VolumeCapability.AccessMode" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__VolumeCapability__AccessMode>) { csi__v1__volume_capability__access_mode__init(message) }

  init(c: UnsafePointer<Csi__V1__VolumeCapability__AccessMode>) throws(ProtoFieldError) {
    self.init(
      mode: Mode(rawValue: enumValue(c.pointee.mode))
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__VolumeCapability__AccessMode> {
    arena.message(Self.cInit).with { m in
      m.pointee.mode = cEnum(self.mode.rawValue)
    }
  }
}

extension CSI {
  public struct CapacityRange: Sendable, Hashable {
    public var requiredBytes: Int64
    public var limitBytes: Int64

    public init(
      requiredBytes: Int64 = 0,
      limitBytes: Int64 = 0
    ) {
      self.requiredBytes = requiredBytes
      self.limitBytes = limitBytes
    }
  }
}

extension CSI.CapacityRange: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.CapacityRange" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__CapacityRange>) { csi__v1__capacity_range__init(message) }

  init(c: UnsafePointer<Csi__V1__CapacityRange>) throws(ProtoFieldError) {
    self.init(
      requiredBytes: c.pointee.required_bytes,
      limitBytes: c.pointee.limit_bytes
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__CapacityRange> {
    arena.message(Self.cInit).with { m in
      m.pointee.required_bytes = self.requiredBytes
      m.pointee.limit_bytes = self.limitBytes
    }
  }
}

extension CSI {
  public struct Topology: Sendable, Hashable {
    public var segments: [String: String]

    public init(
      segments: [String: String] = [:]
    ) {
      self.segments = segments
    }
  }
}

extension CSI.Topology: ProtoMessage, CBridged {
  public static var protoMessageName: String { "csi.v1.Topology" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<Csi__V1__Topology>) { csi__v1__topology__init(message) }

  init(c: UnsafePointer<Csi__V1__Topology>) throws(ProtoFieldError) {
    self.init(
      segments: try swiftMap(c.pointee.n_segments, c.pointee.segments, "segments")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<Csi__V1__Topology> {
    arena.message(Self.cInit).with { m in
      let segments: (Int, UnsafeMutablePointer<UnsafeMutablePointer<Csi__V1__Topology__SegmentsEntry>?>?) = arena.map(self.segments)
      (m.pointee.n_segments, m.pointee.segments) = (segments.0, segments.1)
    }
  }
}
