// Swift values for the provider (v1alpha1) messages, with their protoc-c bridging.
// The bridging extensions are internal; only Swift types are public.
internal import CProtobufC

extension Provider {
  public struct VersionRequest: Sendable, Hashable {
    /// The API version the driver speaks ("v1alpha1").
    public var version: String

    public init(
      version: String = ""
    ) {
      self.version = version
    }
  }
}

extension Provider.VersionRequest: ProtoMessage, CBridged {
  public static var protoMessageName: String { "v1alpha1.VersionRequest" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<V1alpha1__VersionRequest>) { v1alpha1__version_request__init(message) }

  init(c: UnsafePointer<V1alpha1__VersionRequest>) throws(ProtoFieldError) {
    self.init(
      version: try swiftString(c.pointee.version, "version")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<V1alpha1__VersionRequest> {
    arena.message(Self.cInit).with { m in
      m.pointee.version = arena.string(self.version)
    }
  }
}

extension Provider {
  public struct VersionResponse: Sendable, Hashable {
    public var version: String
    public var runtimeName: String
    public var runtimeVersion: String

    public init(
      version: String = "",
      runtimeName: String = "",
      runtimeVersion: String = ""
    ) {
      self.version = version
      self.runtimeName = runtimeName
      self.runtimeVersion = runtimeVersion
    }
  }
}

extension Provider.VersionResponse: ProtoMessage, CBridged {
  public static var protoMessageName: String { "v1alpha1.VersionResponse" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<V1alpha1__VersionResponse>) { v1alpha1__version_response__init(message) }

  init(c: UnsafePointer<V1alpha1__VersionResponse>) throws(ProtoFieldError) {
    self.init(
      version: try swiftString(c.pointee.version, "version"),
      runtimeName: try swiftString(c.pointee.runtime_name, "runtime_name"),
      runtimeVersion: try swiftString(c.pointee.runtime_version, "runtime_version")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<V1alpha1__VersionResponse> {
    arena.message(Self.cInit).with { m in
      m.pointee.version = arena.string(self.version)
      m.pointee.runtime_name = arena.string(self.runtimeName)
      m.pointee.runtime_version = arena.string(self.runtimeVersion)
    }
  }
}

extension Provider {
  public struct MountRequest: Sendable, Hashable {
    /// JSON: class parameters overlaid with the volume context. Holds service-account tokens: SECRET.
    public var attributes: String
    /// JSON of the nodePublishSecretRef Secret, or `null`. SECRET.
    public var secrets: String
    public var targetPath: String
    /// Decimal file mode, e.g. "420" (0644).
    public var permission: String
    /// The object versions last mounted into this volume.
    public var currentObjectVersion: [Provider.ObjectVersion]

    public init(
      attributes: String = "",
      secrets: String = "",
      targetPath: String = "",
      permission: String = "",
      currentObjectVersion: [Provider.ObjectVersion] = []
    ) {
      self.attributes = attributes
      self.secrets = secrets
      self.targetPath = targetPath
      self.permission = permission
      self.currentObjectVersion = currentObjectVersion
    }
  }
}

extension Provider.MountRequest: ProtoMessage, CBridged {
  public static var protoMessageName: String { "v1alpha1.MountRequest" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<V1alpha1__MountRequest>) { v1alpha1__mount_request__init(message) }

  init(c: UnsafePointer<V1alpha1__MountRequest>) throws(ProtoFieldError) {
    self.init(
      attributes: try swiftString(c.pointee.attributes, "attributes"),
      secrets: try swiftString(c.pointee.secrets, "secrets"),
      targetPath: try swiftString(c.pointee.target_path, "target_path"),
      permission: try swiftString(c.pointee.permission, "permission"),
      currentObjectVersion: try swiftRepeated(c.pointee.n_current_object_version, c.pointee.current_object_version, "current_object_version")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<V1alpha1__MountRequest> {
    arena.message(Self.cInit).with { m in
      m.pointee.attributes = arena.string(self.attributes)
      m.pointee.secrets = arena.string(self.secrets)
      m.pointee.target_path = arena.string(self.targetPath)
      m.pointee.permission = arena.string(self.permission)
      (m.pointee.n_current_object_version, m.pointee.current_object_version) = arena.repeated(self.currentObjectVersion)
    }
  }
}

extension Provider {
  public struct MountResponse: Sendable, Hashable {
    public var objectVersion: [Provider.ObjectVersion]
    /// A non-empty code means the mount failed.
    public var error: Provider.MountError?
    /// Contents are secret material: never log them.
    public var files: [Provider.File]

    public init(
      objectVersion: [Provider.ObjectVersion] = [],
      error: Provider.MountError? = nil,
      files: [Provider.File] = []
    ) {
      self.objectVersion = objectVersion
      self.error = error
      self.files = files
    }
  }
}

extension Provider.MountResponse: ProtoMessage, CBridged {
  public static var protoMessageName: String { "v1alpha1.MountResponse" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<V1alpha1__MountResponse>) { v1alpha1__mount_response__init(message) }

  init(c: UnsafePointer<V1alpha1__MountResponse>) throws(ProtoFieldError) {
    self.init(
      objectVersion: try swiftRepeated(c.pointee.n_object_version, c.pointee.object_version, "object_version"),
      error: try swiftOptional(c.pointee.error, "error"),
      files: try swiftRepeated(c.pointee.n_files, c.pointee.files, "files")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<V1alpha1__MountResponse> {
    arena.message(Self.cInit).with { m in
      (m.pointee.n_object_version, m.pointee.object_version) = arena.repeated(self.objectVersion)
      m.pointee.error = self.error.map { $0.toC(arena) }
      (m.pointee.n_files, m.pointee.files) = arena.repeated(self.files)
    }
  }
}

extension Provider {
  public struct File: Sendable, Hashable {
    /// Relative path inside the volume.
    public var path: String
    /// File mode; 0 means the request's permission.
    public var mode: Int32
    public var contents: [UInt8]

    public init(
      path: String = "",
      mode: Int32 = 0,
      contents: [UInt8] = []
    ) {
      self.path = path
      self.mode = mode
      self.contents = contents
    }
  }
}

extension Provider.File: ProtoMessage, CBridged {
  public static var protoMessageName: String { "v1alpha1.File" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<V1alpha1__File>) { v1alpha1__file__init(message) }

  init(c: UnsafePointer<V1alpha1__File>) throws(ProtoFieldError) {
    self.init(
      path: try swiftString(c.pointee.path, "path"),
      mode: c.pointee.mode,
      contents: swiftBytes(c.pointee.contents)
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<V1alpha1__File> {
    arena.message(Self.cInit).with { m in
      m.pointee.path = arena.string(self.path)
      m.pointee.mode = self.mode
      m.pointee.contents = arena.bytes(self.contents)
    }
  }
}

extension Provider {
  public struct ObjectVersion: Sendable, Hashable {
    public var id: String
    public var version: String

    public init(
      id: String = "",
      version: String = ""
    ) {
      self.id = id
      self.version = version
    }
  }
}

extension Provider.ObjectVersion: ProtoMessage, CBridged {
  public static var protoMessageName: String { "v1alpha1.ObjectVersion" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<V1alpha1__ObjectVersion>) { v1alpha1__object_version__init(message) }

  init(c: UnsafePointer<V1alpha1__ObjectVersion>) throws(ProtoFieldError) {
    self.init(
      id: try swiftString(c.pointee.id, "id"),
      version: try swiftString(c.pointee.version, "version")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<V1alpha1__ObjectVersion> {
    arena.message(Self.cInit).with { m in
      m.pointee.id = arena.string(self.id)
      m.pointee.version = arena.string(self.version)
    }
  }
}

extension Provider {
  /// The proto message `v1alpha1.Error`, renamed so it does not shadow `Swift.Error`.
  public struct MountError: Sendable, Hashable {
    public var code: String

    public init(
      code: String = ""
    ) {
      self.code = code
    }
  }
}

extension Provider.MountError: ProtoMessage, CBridged {
  public static var protoMessageName: String { "v1alpha1.Error" }
  public init(serializedBytes bytes: UnsafeRawBufferPointer) throws { self = try Self.decode(bytes) }
  public func serializedBytes() -> [UInt8] { self.encode() }
  static func cInit(_ message: UnsafeMutablePointer<V1alpha1__Error>) { v1alpha1__error__init(message) }

  init(c: UnsafePointer<V1alpha1__Error>) throws(ProtoFieldError) {
    self.init(
      code: try swiftString(c.pointee.code, "code")
    )
  }

  func toC(_ arena: Arena) -> UnsafeMutablePointer<V1alpha1__Error> {
    arena.message(Self.cInit).with { m in
      m.pointee.code = arena.string(self.code)
    }
  }
}
