/// A YAML document as a tree: what Kubernetes manifests and kubeconfig files need.
/// Scalars keep their text (a plain `true` is the string "true"); whether a scalar was
/// written plain matters only for nulls, which `isNull` reports.
public enum YAMLNode: Sendable, Equatable {
  case scalar(String, plain: Bool)
  case sequence([YAMLNode])
  case mapping([Entry])

  public struct Entry: Sendable, Equatable {
    public var key: YAMLNode
    public var value: YAMLNode
  }

  /// The text of a scalar; nil for sequences and mappings.
  public var string: String? {
    if case .scalar(let text, _) = self { return text }
    return nil
  }

  /// A plain `~`, `null`, `Null`, `NULL` or nothing at all (YAML 1.2 core schema).
  public var isNull: Bool {
    guard case .scalar(let text, plain: true) = self else { return false }
    return text.isEmpty || text == "~" || text == "null" || text == "Null" || text == "NULL"
  }

  public var mapping: [Entry]? {
    if case .mapping(let entries) = self { return entries }
    return nil
  }

  public var sequence: [YAMLNode]? {
    if case .sequence(let items) = self { return items }
    return nil
  }

  /// The value under a string key of a mapping (the last one, if a key repeats).
  public subscript(key: String) -> YAMLNode? {
    guard case .mapping(let entries) = self else { return nil }
    return entries.last { $0.key.string == key }?.value
  }

  /// Number of nodes in this tree (itself included): the cost of copying it for an alias.
  var size: Int {
    switch self {
    case .scalar: return 1
    case .sequence(let items): return items.reduce(1) { $0 + $1.size }
    case .mapping(let entries): return entries.reduce(1) { $0 + $1.key.size + $1.value.size }
    }
  }
}

/// A syntax error: where and what, never the text of the line (a manifest's values
/// can be secrets, and these messages reach logs and kubelet events).
public struct YAMLError: Error, Sendable, Equatable, CustomStringConvertible {
  /// 1-based; 0 when libyaml gave no position.
  public var line: Int
  public var column: Int
  public var problem: String

  public var description: String {
    line > 0 ? "YAML syntax error at line \(line), column \(column): \(problem)" : "YAML error: \(problem)"
  }
}
