public import YAML

/// Any JSON value: objects the driver does not model (the operator's manifests, the
/// DaemonSets and RBAC it keeps in place) travel as this. Integers stay integers.
public enum JSONValue: Sendable, Hashable, Codable {
  case null
  case bool(Bool)
  case int(Int64)
  case double(Double)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])

  public init(from decoder: any Decoder) throws {
    let c = try decoder.singleValueContainer()
    if c.decodeNil() {
      self = .null
    } else if let b = try? c.decode(Bool.self) {
      self = .bool(b)
    } else if let i = try? c.decode(Int64.self) {
      self = .int(i)
    } else if let d = try? c.decode(Double.self) {
      self = .double(d)
    } else if let s = try? c.decode(String.self) {
      self = .string(s)
    } else if let a = try? c.decode([JSONValue].self) {
      self = .array(a)
    } else {
      self = .object(try c.decode([String: JSONValue].self))
    }
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.singleValueContainer()
    switch self {
    case .null: try c.encodeNil()
    case .bool(let b): try c.encode(b)
    case .int(let i): try c.encode(i)
    case .double(let d): try c.encode(d)
    case .string(let s): try c.encode(s)
    case .array(let a): try c.encode(a)
    case .object(let o): try c.encode(o)
    }
  }

  public subscript(key: String) -> JSONValue? {
    get {
      if case .object(let o) = self { return o[key] }
      return nil
    }
    set {
      guard case .object(var o) = self else { return }
      o[key] = newValue
      self = .object(o)
    }
  }

  public var string: String? {
    if case .string(let s) = self { return s }
    return nil
  }

  public var array: [JSONValue]? {
    if case .array(let a) = self { return a }
    return nil
  }

  public var object: [String: JSONValue]? {
    if case .object(let o) = self { return o }
    return nil
  }

  /// A YAML tree as JSON, resolving plain scalars as Kubernetes' YAML reader does (YAML
  /// 1.2 core schema): null, booleans, integers and floats; quoted scalars stay strings.
  public init(yaml node: YAMLNode) {
    switch node {
    case .scalar(let text, let plain):
      self = plain ? JSONValue.resolvePlain(text) : .string(text)
    case .sequence(let items):
      self = .array(items.map(JSONValue.init(yaml:)))
    case .mapping(let entries):
      var o: [String: JSONValue] = [:]
      for entry in entries { o[entry.key.string ?? ""] = JSONValue(yaml: entry.value) }
      self = .object(o)
    }
  }

  static func resolvePlain(_ text: String) -> JSONValue {
    switch text {
    case "", "~", "null", "Null", "NULL": return .null
    case "true", "True", "TRUE": return .bool(true)
    case "false", "False", "FALSE": return .bool(false)
    default: break
    }
    if let i = Int64(text) { return .int(i) }
    if text.hasPrefix("0x"), let i = Int64(text.dropFirst(2), radix: 16) { return .int(i) }
    if text.hasPrefix("0o"), let i = Int64(text.dropFirst(2), radix: 8) { return .int(i) }
    if let first = text.utf8.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") || first == UInt8(ascii: ".")
      || (first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")), let d = Double(text), d.isFinite
    {
      return .double(d)
    }
    return .string(text)
  }
}
