import TextFormats

/// The parts of a SecretProviderClass (`secrets-store.csi.x-k8s.io`, v1 or
/// v1alpha1) that mounting needs. Sources turn their input into this shape and
/// validate it, so the mount path never sees a half-valid class.
public struct SecretProviderClass: Sendable, Hashable {
  public var name: String
  public var namespace: String
  /// `spec.provider`: the plugin's socket name, `<dir>/<provider>.sock`.
  public var provider: String
  /// `spec.parameters`, handed to the provider as JSON (values can be secrets).
  public var parameters: [String: String]
  /// `metadata.resourceVersion` for cluster sources; a content stamp for local ones.
  public var resourceVersion: String
  /// `spec.secretObjects`: Kubernetes Secrets to keep in step with the mounted objects.
  public var secretObjects: [SecretObject]
  /// The annotation `secrets-store.csi.x-k8s.io/rotation-poll-interval` (a Go duration):
  /// this class's refresh interval instead of `--rotation-poll-interval` (never below
  /// the floor `--rotation-min-interval` sets).
  public var rotationInterval: Duration?
  /// The annotation `secrets-store.csi.x-k8s.io/refresh-requested-at` (any text, by
  /// convention a timestamp): when its value changes, every mounted volume of the class
  /// is refreshed at once (docs/rotation-and-sync.md). nil when absent.
  public var refreshRequest: String?

  public static let rotationIntervalAnnotation = "secrets-store.csi.x-k8s.io/rotation-poll-interval"
  public static let refreshRequestAnnotation = "secrets-store.csi.x-k8s.io/refresh-requested-at"

  /// The interval annotation's value, or nil without one; throws a sentence for a bad value.
  static func rotationInterval(annotations: [String: String]) throws(ReasonError) -> Duration? {
    guard let text = annotations[rotationIntervalAnnotation] else { return nil }
    guard let parsed = try? GoDuration.parse(text), parsed > .zero else {
      throw ReasonError(reason: "annotation \(rotationIntervalAnnotation) must be a positive Go duration such as 10m")
    }
    return parsed
  }

  struct ReasonError: Error {
    var reason: String
  }

  public struct SecretObject: Sendable, Hashable {
    public var secretName: String
    /// Empty means Opaque.
    public var type: String
    public var labels: [String: String]
    public var annotations: [String: String]
    public var data: [(objectName: String, key: String)] {
      get { dataItems.map { ($0.objectName, $0.key) } }
      set { dataItems = newValue.map { DataItem(objectName: $0.objectName, key: $0.key) } }
    }
    struct DataItem: Sendable, Hashable {
      var objectName: String
      var key: String
    }
    var dataItems: [DataItem]

    public init(
      secretName: String, type: String = "", labels: [String: String] = [:], annotations: [String: String] = [:],
      data: [(objectName: String, key: String)]
    ) {
      self.secretName = secretName
      self.type = type
      self.labels = labels
      self.annotations = annotations
      self.dataItems = data.map { DataItem(objectName: $0.objectName, key: $0.key) }
    }
  }

  public init(
    name: String, namespace: String, provider: String, parameters: [String: String] = [:], resourceVersion: String = "",
    secretObjects: [SecretObject] = [], rotationInterval: Duration? = nil, refreshRequest: String? = nil
  ) {
    self.rotationInterval = rotationInterval
    self.refreshRequest = refreshRequest
    self.name = name
    self.namespace = namespace
    self.provider = provider
    self.parameters = parameters
    self.resourceVersion = resourceVersion
    self.secretObjects = secretObjects
  }

  /// Upstream's rule for provider names; it also keeps the name safe as a file name.
  public static func isValidProviderName(_ name: String) -> Bool {
    name.utf8.count <= 30 && name.utf8.allSatisfy { c in
      (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D || c == 0x5F
    }
  }
}

/// Where SecretProviderClasses come from: a local directory (standalone mode)
/// or the Kubernetes API. Lookups are per pod namespace, like the CRD.
public protocol SecretProviderClassSource: Sendable {
  /// The class, or nil when there is none with that name in that namespace.
  /// Throws ``SecretProviderClassError`` when the class exists but is unusable.
  func secretProviderClass(name: String, namespace: String) async throws -> SecretProviderClass?
}

/// A class that exists but cannot be used, with a sentence naming the field.
public struct SecretProviderClassError: Error, Sendable, CustomStringConvertible {
  public var name: String
  public var namespace: String
  public var reason: String

  public init(name: String, namespace: String, reason: String) {
    self.name = name
    self.namespace = namespace
    self.reason = reason
  }

  public var description: String { "SecretProviderClass \(namespace)/\(name) is invalid: \(reason)" }
}

/// No classes at all: every lookup misses. For drivers run without a source.
public struct EmptySecretProviderClassSource: SecretProviderClassSource {
  public init() {}
  public func secretProviderClass(name: String, namespace: String) async throws -> SecretProviderClass? { nil }
}
