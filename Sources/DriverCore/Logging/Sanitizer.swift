/// Renders CSI and provider messages for logs with secret material replaced.
///
/// It walks any value by reflection and strips by field name, so a message
/// gaining a field keeps the rules: every value of a `secrets` map (or the
/// whole `secrets` string of a provider MountRequest), the provider
/// `attributes` JSON (it embeds service-account tokens), file `contents`,
/// mount flags (the CSI spec says they may be sensitive), and the
/// `csi.storage.k8s.io/serviceAccount.tokens` entry of any map. Keys stay,
/// so a log still shows which secrets were passed.
public enum Sanitizer {
  public static let stripped = "***stripped***"
  /// The volume_context (and, on newer kubelets, secrets) key carrying
  /// service-account tokens.
  public static let tokensKey = "csi.storage.k8s.io/serviceAccount.tokens"

  /// Fields whose whole value is secret, whatever its type.
  static let secretFields: Set<String> = ["secrets", "attributes", "contents", "mountFlags"]

  /// A one-line rendering of `value` that never contains secret values.
  public static func render(_ value: Any) -> String {
    self.render(value, field: nil)
  }

  private static func render(_ value: Any, field: String?) -> String {
    if let field, self.secretFields.contains(field) {
      return self.strip(value)
    }
    switch value {
    case let string as String:
      return self.quote(string)
    case let map as [String: String]:
      let entries = map.keys.sorted().map { key in
        "\(self.quote(key)): \(key == self.tokensKey ? self.stripped : self.quote(map[key]!))"
      }
      return "[" + (entries.isEmpty ? ":" : entries.joined(separator: ", ")) + "]"
    case let bytes as [UInt8]:
      return "<\(bytes.count) bytes>"
    case let number as any BinaryInteger:
      return "\(number)"
    case let flag as Bool:
      return "\(flag)"
    default:
      break
    }

    let mirror = Mirror(reflecting: value)
    switch mirror.displayStyle {
    case .optional:
      guard let wrapped = mirror.children.first else { return "nil" }
      return self.render(wrapped.value, field: field)
    case .collection, .set:
      return "[" + mirror.children.map { self.render($0.value, field: nil) }.joined(separator: ", ") + "]"
    case .enum:
      // A oneof: `.case(payload)`.
      guard let payload = mirror.children.first else { return ".\(value)" }
      return ".\(payload.label ?? "")(\(self.render(payload.value, field: payload.label)))"
    case .struct, .class:
      if mirror.children.isEmpty || value is any RawRepresentable {
        // Empty messages, and open enums, which describe themselves.
        return mirror.children.isEmpty && !(value is any RawRepresentable)
          ? "\(mirror.subjectType)()" : String(describing: value)
      }
      let fields = mirror.children.map { child in
        "\(child.label ?? "_"): \(self.render(child.value, field: child.label))"
      }
      return "\(self.typeName(mirror.subjectType))(\(fields.joined(separator: ", ")))"
    default:
      // Tuples and anything unforeseen: never fall back to printing the value.
      return "<\(mirror.subjectType)>"
    }
  }

  /// Keeps the shape (map keys, counts), drops the values.
  private static func strip(_ value: Any) -> String {
    switch value {
    case let map as [String: String]:
      let entries = map.keys.sorted().map { "\(self.quote($0)): \(self.stripped)" }
      return "[" + (entries.isEmpty ? ":" : entries.joined(separator: ", ")) + "]"
    case let strings as [String]:
      return "[" + strings.map { _ in self.stripped }.joined(separator: ", ") + "]"
    case let bytes as [UInt8]:
      return "<\(bytes.count) bytes \(self.stripped)>"
    case let string as String:
      return string.isEmpty ? "\"\"" : self.stripped
    default:
      return self.stripped
    }
  }

  private static func quote(_ string: String) -> String {
    var out = "\""
    for character in string {
      switch character {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      default: out.append(character)
      }
    }
    return out + "\""
  }

  /// `CSI.NodePublishVolumeRequest` rather than `CSIMessages.CSI.NodePublishVolumeRequest`.
  private static func typeName(_ type: Any.Type) -> String {
    let full = String(reflecting: type)
    return full.split(separator: ".", maxSplits: 1).last.map(String.init) ?? full
  }
}
