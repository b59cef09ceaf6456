public import KubeClient
import TextFormats

public enum Flavour: String, Sendable {
  /// OpenShift: the driver in openshift-cluster-csi-drivers, with its SecurityContextConstraints.
  case openshift
  case kubernetes
}

public enum ManagementState: String, Sendable {
  case managed = "Managed"
  case unmanaged = "Unmanaged"
  case removed = "Removed"
}

/// What the cluster resource asks for, validated. Fields come from `spec`, and for the
/// settings OpenShift's ClusterCSIDriver schema has no field for, from
/// `spec.unsupportedConfigOverrides` first (the one open field OpenShift keeps; our own
/// CRD has them in `spec` too). See docs/operator.md.
public struct DriverSettings: Sendable, Equatable {
  public var managementState: ManagementState = .managed
  /// klog verbosity of the driver: Normal 2, Debug 4, Trace 6, TraceAll 8 (as OpenShift's operators).
  public var verbosity: Int = 2
  public var rotationEnabled = false
  public var rotationPollInterval = "2m"
  public var syncSecret = false
  /// CSIDriver `spec.tokenRequests`, as given (`audience`, optional `expirationSeconds`).
  public var tokenRequests: [JSONValue] = []
  public var nodeSelector: [String: String]?
  public var tolerations: [JSONValue]?
  public var image: String?

  public struct Invalid: Error, Sendable, Equatable, CustomStringConvertible {
    public var field: String
    public var problem: String
    public var description: String { "\(field): \(problem)" }
  }

  public static let logLevels: [String: Int] = ["": 2, "Normal": 2, "Debug": 4, "Trace": 6, "TraceAll": 8]

  /// Parses and validates `spec`; the first problem found names its field.
  public static func parse(spec: JSONValue?) throws(Invalid) -> DriverSettings {
    var s = DriverSettings()
    let spec = spec ?? .object([:])
    let overrides = spec["unsupportedConfigOverrides"]
    func field(_ name: String) -> (path: String, value: JSONValue)? {
      if let v = overrides?[name], v != .null { return ("spec.unsupportedConfigOverrides.\(name)", v) }
      if let v = spec[name], v != .null { return ("spec.\(name)", v) }
      return nil
    }
    func invalid(_ field: String, _ problem: String) -> Invalid { Invalid(field: field, problem: problem) }

    switch spec["managementState"] {
    case nil, .null: break
    case .string(let text):
      if text.isEmpty { break }
      guard let state = ManagementState(rawValue: text) else {
        throw invalid("spec.managementState", "must be Managed, Unmanaged or Removed, not \"\(text.prefix(64))\"")
      }
      s.managementState = state
    default: throw invalid("spec.managementState", "must be a string")
    }
    switch spec["logLevel"] {
    case nil, .null: break
    case .string(let text):
      guard let v = logLevels[text] else { throw invalid("spec.logLevel", "must be Normal, Debug, Trace or TraceAll") }
      s.verbosity = v
    default: throw invalid("spec.logLevel", "must be a string")
    }
    if let (path, rotation) = field("rotation") {
      guard case .object(let o) = rotation else { throw invalid(path, "must be an object {enabled, pollInterval}") }
      if let e = o["enabled"], e != .null {
        guard let b = e.bool else { throw invalid(path + ".enabled", "must be true or false") }
        s.rotationEnabled = b
      }
      if let p = o["pollInterval"], p != .null {
        guard let text = p.string, let d = try? GoDuration.parse(text), d > .zero else {
          throw invalid(path + ".pollInterval", "must be a positive duration such as 2m or 1h30m")
        }
        s.rotationPollInterval = text
      }
    }
    if let (path, sync) = field("syncSecret") {
      guard let b = sync["enabled"]?.bool ?? (sync["enabled"] == nil ? false : nil) else {
        throw invalid(path + ".enabled", "must be true or false")
      }
      s.syncSecret = b
    }
    if let (path, requests) = field("tokenRequests") {
      guard let items = requests.array else { throw invalid(path, "must be a list of {audience, expirationSeconds}") }
      var seen = Set<String>()
      for (i, item) in items.enumerated() {
        guard let audience = item["audience"]?.string, !audience.isEmpty else {
          throw invalid("\(path)[\(i)].audience", "must be a non-empty string")
        }
        guard seen.insert(audience).inserted else { throw invalid("\(path)[\(i)].audience", "\"\(audience.prefix(64))\" is listed twice") }
        var request: [String: JSONValue] = ["audience": .string(audience)]
        if let e = item["expirationSeconds"], e != .null {
          guard let n = e.int, n >= 600 else { throw invalid("\(path)[\(i)].expirationSeconds", "must be an integer of at least 600") }
          request["expirationSeconds"] = .int(n)
        }
        s.tokenRequests.append(.object(request))
      }
    }
    if let (path, selector) = field("nodeSelector") {
      guard case .object(let o) = selector else { throw invalid(path, "must be a map of label keys to values") }
      var out: [String: String] = [:]
      for (k, v) in o {
        guard LabelRules.isKey(k) else { throw invalid(path, "\"\(k.prefix(64))\" is not a valid label key") }
        guard let value = v.string, LabelRules.isValue(value) else { throw invalid("\(path).\(k)", "is not a valid label value") }
        out[k] = value
      }
      s.nodeSelector = out
    }
    if let (path, tolerations) = field("tolerations") {
      guard let items = tolerations.array else { throw invalid(path, "must be a list of tolerations") }
      for (i, t) in items.enumerated() {
        guard case .object(let o) = t else { throw invalid("\(path)[\(i)]", "must be an object") }
        let op = o["operator"]?.string ?? "Equal"
        guard op == "Equal" || op == "Exists" else { throw invalid("\(path)[\(i)].operator", "must be Equal or Exists") }
        if let e = o["effect"]?.string, !["", "NoSchedule", "PreferNoSchedule", "NoExecute"].contains(e) {
          throw invalid("\(path)[\(i)].effect", "must be NoSchedule, PreferNoSchedule or NoExecute")
        }
        if op == "Exists", let v = o["value"]?.string, !v.isEmpty { throw invalid("\(path)[\(i)].value", "must be empty when operator is Exists") }
        if let key = o["key"]?.string, !key.isEmpty, !LabelRules.isKey(key) { throw invalid("\(path)[\(i)].key", "is not a valid key") }
      }
      s.tolerations = items
    }
    if let (path, image) = field("image") {
      guard let text = image.string else { throw invalid(path, "must be a string") }
      if let problem = ImageReference.problem(text) { throw invalid(path, problem) }
      s.image = text
    }
    return s
  }
}

/// Label keys and values as the API server checks them.
enum LabelRules {
  static func isName(_ s: Substring, max: Int) -> Bool {
    guard !s.isEmpty, s.utf8.count <= max else { return false }
    let u = Array(s.utf8)
    func alnum(_ c: UInt8) -> Bool { (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) }
    guard alnum(u.first!), alnum(u.last!) else { return false }
    return u.allSatisfy { alnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }
  }

  static func isKey(_ key: String) -> Bool {
    let parts = key.split(separator: "/", omittingEmptySubsequences: false)
    switch parts.count {
    case 1: return isName(parts[0], max: 63)
    case 2:
      let prefix = parts[0]
      return !prefix.isEmpty && prefix.utf8.count <= 253
        && prefix.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 || $0 == 46 }
        && isName(parts[1], max: 63)
    default: return false
    }
  }

  static func isValue(_ value: String) -> Bool { value.isEmpty || isName(Substring(value), max: 63) }
}

/// Container image references as the container runtimes parse them:
/// `[host[:port]/]path[:tag][@sha256:<64 hex>]`, path components lower case.
enum ImageReference {
  static func problem(_ ref: String) -> String? {
    guard !ref.isEmpty else { return "must not be empty" }
    guard ref.utf8.count <= 4096 else { return "is longer than 4096 characters" }
    var rest = Substring(ref)
    if let at = rest.firstIndex(of: "@") {
      let digest = rest[rest.index(after: at)...]
      rest = rest[..<at]
      guard digest.hasPrefix("sha256:"), digest.dropFirst(7).count == 64,
        digest.dropFirst(7).utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) })
      else { return "\"\(ref.prefix(128))\" is not a valid image reference: the digest must be sha256: and 64 lower-case hex digits" }
    }
    var components = rest.split(separator: "/", omittingEmptySubsequences: false)
    guard let last = components.last else { return "is not a valid image reference" }
    // A tag is after the last component's colon (a colon in the first component of
    // several is a registry port).
    if let colon = last.firstIndex(of: ":") {
      let tag = last[last.index(after: colon)...]
      let u = Array(tag.utf8)
      func word(_ c: UInt8) -> Bool { (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95 }
      guard !u.isEmpty, u.count <= 128, word(u[0]), u.allSatisfy({ word($0) || $0 == 46 || $0 == 45 }) else {
        return "\"\(ref.prefix(128))\" is not a valid image reference: invalid tag"
      }
      components[components.count - 1] = last[..<colon]
    }
    var first = 0
    if components.count > 1, components[0].contains(".") || components[0].contains(":") || components[0] == "localhost" {
      let host = components[0]
      let hostname = host.split(separator: ":", maxSplits: 1)
      guard LabelRules.isName(hostname[0], max: 253), hostname.count == 1 || (Int(hostname[1]).map { $0 > 0 && $0 < 65536 } ?? false) else {
        return "\"\(ref.prefix(128))\" is not a valid image reference: invalid registry host"
      }
      first = 1
    }
    guard components.count > first else { return "\"\(ref.prefix(128))\" is not a valid image reference" }
    for c in components[first...] {
      let u = Array(c.utf8)
      func lower(_ c: UInt8) -> Bool { (c >= 48 && c <= 57) || (c >= 97 && c <= 122) }
      guard let f = u.first, let l = u.last, lower(f), lower(l),
        u.allSatisfy({ lower($0) || $0 == 46 || $0 == 95 || $0 == 45 })
      else {
        return "\"\(ref.prefix(128))\" is not a valid image reference: path components are lower-case letters, digits and . _ -"
      }
    }
    return nil
  }
}

extension DriverSettings {
  /// Why `ref` is not a container image reference, or nil.
  public static func imageProblem(_ ref: String) -> String? { ImageReference.problem(ref) }
}
