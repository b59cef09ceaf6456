import CYAML

/// The documents of a YAML stream (`---` separated), parsed one at a time with libyaml.
/// JSON is YAML, so JSON text parses too. Anchors and aliases are resolved into copies,
/// with a bound on the total size of what aliases expand to (a "billion laughs" file
/// fails instead of exhausting memory).
///
/// Not Sendable: one parser, one thread.
public final class YAMLDocuments {
  /// Nodes that aliases may add to one document, beyond the nodes written in it.
  public static let aliasExpansionLimit = 100_000

  private var parser = yaml_parser_t()
  private let input: UnsafeMutableBufferPointer<UInt8>
  private var finished = false

  public init(_ text: String) {
    let bytes = Array(text.utf8)
    input = .allocate(capacity: max(bytes.count, 1))
    _ = input.initialize(from: bytes)
    yaml_parser_initialize(&parser)
    yaml_parser_set_input_string(&parser, input.baseAddress, bytes.count)
  }

  deinit {
    yaml_parser_delete(&parser)
    input.deallocate()
  }

  /// Every document of `text`.
  public static func parseAll(_ text: String) throws(YAMLError) -> [YAMLNode] {
    let documents = YAMLDocuments(text)
    var out: [YAMLNode] = []
    while let node = try documents.next() { out.append(node) }
    return out
  }

  /// The next document, or nil at the end of the stream. An empty document is a null scalar.
  /// After an error, the stream ends.
  public func next() throws(YAMLError) -> YAMLNode? {
    guard !finished else { return nil }
    var composer = Composer()
    while true {
      var event = yaml_event_t()
      guard yaml_parser_parse(&parser, &event) != 0 else {
        finished = true
        throw parserError()
      }
      defer { yaml_event_delete(&event) }
      switch event.type {
      case YAML_STREAM_END_EVENT:
        finished = true
        return nil
      case YAML_DOCUMENT_END_EVENT:
        return composer.root ?? .scalar("", plain: true)
      default:
        do {
          try composer.add(event)
        } catch {
          finished = true
          throw YAMLError(
            line: Int(event.start_mark.line) + 1, column: Int(event.start_mark.column) + 1, problem: error.problem)
        }
      }
    }
  }

  private func parserError() -> YAMLError {
    let problem = parser.problem.map { String(cString: $0) } ?? "unknown error"
    let context = parser.context.map { String(cString: $0) }
    let mark = parser.problem_mark
    let text = context.map { "\(problem) \($0)" } ?? problem
    return YAMLError(line: Int(mark.line) + 1, column: Int(mark.column) + 1, problem: text)
  }
}

/// Builds one document's tree from parser events.
private struct Composer {
  struct Problem: Error { var problem: String }

  private enum Open {
    case sequence(anchor: String?, items: [YAMLNode])
    case mapping(anchor: String?, entries: [YAMLNode.Entry], pendingKey: YAMLNode?)
  }

  private var stack: [Open] = []
  private var anchors: [String: YAMLNode] = [:]
  private var expanded = 0
  private(set) var root: YAMLNode?

  mutating func add(_ event: yaml_event_t) throws(Problem) {
    switch event.type {
    case YAML_SCALAR_EVENT:
      let data = event.data.scalar
      let text = String(decoding: UnsafeBufferPointer(start: data.value, count: data.length), as: UTF8.self)
      let node = YAMLNode.scalar(text, plain: data.style == YAML_PLAIN_SCALAR_STYLE && data.tag == nil)
      try place(node, anchor: data.anchor.map { String(cString: $0) })
    case YAML_SEQUENCE_START_EVENT:
      stack.append(.sequence(anchor: event.data.sequence_start.anchor.map { String(cString: $0) }, items: []))
    case YAML_MAPPING_START_EVENT:
      stack.append(.mapping(anchor: event.data.mapping_start.anchor.map { String(cString: $0) }, entries: [], pendingKey: nil))
    case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
      switch stack.popLast() {
      case .sequence(let anchor, let items)?: try place(.sequence(items), anchor: anchor)
      case .mapping(let anchor, let entries, _)?: try place(.mapping(entries), anchor: anchor)
      case nil: throw Problem(problem: "unbalanced collection end")
      }
    case YAML_ALIAS_EVENT:
      let name = String(cString: event.data.alias.anchor)
      guard let node = anchors[name] else { throw Problem(problem: "unknown alias *\(name)") }
      expanded += node.size
      guard expanded <= YAMLDocuments.aliasExpansionLimit else {
        throw Problem(problem: "aliases expand to more than \(YAMLDocuments.aliasExpansionLimit) nodes")
      }
      try place(node, anchor: nil)
    default:
      break  // stream and document starts carry nothing the tree needs
    }
  }

  private mutating func place(_ node: YAMLNode, anchor: String?) throws(Problem) {
    if let anchor { anchors[anchor] = node }
    switch stack.popLast() {
    case nil:
      root = node
    case .sequence(let a, var items)?:
      items.append(node)
      stack.append(.sequence(anchor: a, items: items))
    case .mapping(let a, var entries, let key)?:
      if let key {
        entries.append(.init(key: key, value: node))
        stack.append(.mapping(anchor: a, entries: entries, pendingKey: nil))
      } else {
        stack.append(.mapping(anchor: a, entries: entries, pendingKey: node))
      }
    }
  }
}
