import YAML

/// Decodes SecretProviderClass objects from YAML (or JSON, which is YAML).
/// Strict where it matters: the kind and group must match, `spec.provider`
/// must be a valid provider name, and `spec.parameters` must map strings to
/// strings, as the CRD's schema requires.
enum SPCDecoding {
  static let group = "secrets-store.csi.x-k8s.io"
  static let versions: Set<String> = ["v1", "v1alpha1"]

  enum Outcome {
    case spc(SecretProviderClass)
    /// A SecretProviderClass with a name but an unusable field.
    case invalid(name: String, namespace: String, reason: String)
    /// Some other kind of object: ignored, so a directory can hold whole manifests.
    case otherKind
  }

  /// Every document in `text`; throws a message naming the document and field.
  /// A syntax error names its position and problem, never the text of the line: a
  /// class's parameters may hold sensitive values, and the message reaches logs and
  /// kubelet events.
  static func decodeAll(_ text: String, defaultNamespace: String = "default") throws -> [Outcome] {
    var out: [Outcome] = []
    var index = 0
    let documents = YAMLDocuments(text)
    while true {
      let next: YAMLNode?
      do {
        next = try documents.next()
      } catch {
        throw FieldError(error.description)
      }
      guard let node = next else { break }
      index += 1
      if node.isNull { continue }  // an empty document, e.g. after a trailing `---`
      do {
        out.append(try decode(node, defaultNamespace: defaultNamespace))
      } catch let e {
        if let name = e.name {
          out.append(.invalid(name: name, namespace: e.namespace ?? defaultNamespace, reason: e.message))
        } else {
          throw FieldError("document \(index): \(e.message)")
        }
      }
    }
    return out
  }

  struct FieldError: Error, CustomStringConvertible {
    var message: String
    /// Set once the object's name is known, so the error can be tied to that class.
    var name: String?
    var namespace: String?
    init(_ message: String, name: String? = nil, namespace: String? = nil) {
      self.message = message
      self.name = name
      self.namespace = namespace
    }
    var description: String { message }
  }

  static func decode(_ node: YAMLNode, defaultNamespace: String) throws(FieldError) -> Outcome {
    guard node.mapping != nil else { throw FieldError("not a mapping") }
    let kind = node["kind"]?.string
    let apiVersion = node["apiVersion"]?.string ?? ""
    guard kind == "SecretProviderClass" else { return .otherKind }
    let parts = apiVersion.split(separator: "/", maxSplits: 1).map(String.init)
    guard parts.count == 2, parts[0] == group, versions.contains(parts[1]) else {
      throw FieldError("apiVersion \"\(apiVersion)\" is not \(group)/v1 or \(group)/v1alpha1")
    }
    guard let name = node["metadata"]?["name"]?.string, !name.isEmpty else {
      throw FieldError("metadata.name is required")
    }
    // A null or empty namespace is none, as the API server reads it: the default one. (It
    // was kept as "", a class no pod could match; FuzzSecretProviderClass found it.)
    let namespace = node["metadata"]?["namespace"].flatMap { $0.isNull ? nil : $0.string }.flatMap { $0.isEmpty ? nil : $0 }
      ?? defaultNamespace
    func invalid(_ reason: String) -> FieldError { FieldError(reason, name: name, namespace: namespace) }
    guard let provider = node["spec"]?["provider"]?.string, !provider.isEmpty else {
      throw invalid("spec.provider is required")
    }
    guard SecretProviderClass.isValidProviderName(provider) else {
      throw invalid("spec.provider \"\(provider)\" must match ^[a-zA-Z0-9_-]{0,30}$")
    }
    var parameters: [String: String] = [:]
    if let params = node["spec"]?["parameters"], !params.isNull {
      guard let mapping = params.mapping else {
        throw invalid("spec.parameters must be a map of strings")
      }
      for entry in mapping {
        let (key, value) = (entry.key, entry.value)
        guard let k = key.string else { throw invalid("spec.parameters has a non-string key") }
        // Block scalars (`objects: |`) arrive as one string, as in the real CRD.
        guard let v = value.string else {
          throw invalid("spec.parameters.\(k) must be a string (quote it, or use a | block)")
        }
        parameters[k] = v
      }
    }
    // Annotations: only the driver's own matter (interval, refresh request); others are
    // skipped whatever their shape, as the API server would have checked them.
    var annotations: [String: String] = [:]
    for entry in node["metadata"]?["annotations"]?.mapping ?? [] {
      if let k = entry.key.string, let v = entry.value.string { annotations[k] = v }
    }
    let interval: Duration?
    do {
      interval = try SecretProviderClass.rotationInterval(annotations: annotations)
    } catch {
      throw invalid(error.reason)
    }
    let resourceVersion = node["metadata"]?["resourceVersion"]?.string ?? ""
    return .spc(
      SecretProviderClass(
        name: name, namespace: namespace, provider: provider, parameters: parameters, resourceVersion: resourceVersion,
        rotationInterval: interval, refreshRequest: annotations[SecretProviderClass.refreshRequestAnnotation]))
  }
}
