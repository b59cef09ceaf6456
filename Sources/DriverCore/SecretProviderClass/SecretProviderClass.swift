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

  public init(name: String, namespace: String, provider: String, parameters: [String: String] = [:], resourceVersion: String = "") {
    self.name = name
    self.namespace = namespace
    self.provider = provider
    self.parameters = parameters
    self.resourceVersion = resourceVersion
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
