/// Where a kind of object lives in the API: `/api/v1/...` for the core group,
/// `/apis/<group>/<version>/...` for the rest.
public struct KubeResource: Sendable, Hashable, CustomStringConvertible {
  public var group: String
  public var version: String
  /// The lower-case plural in URLs, e.g. `secretproviderclasses`.
  public var plural: String
  public var namespaced: Bool

  public init(group: String, version: String, plural: String, namespaced: Bool) {
    self.group = group
    self.version = version
    self.plural = plural
    self.namespaced = namespaced
  }

  public var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }
  public var description: String { group.isEmpty ? plural : "\(plural).\(group)" }

  /// The collection path (`namespace` nil: across all namespaces, or cluster-scoped).
  public func path(namespace: String?, name: String? = nil, subresource: String? = nil) -> String {
    var p = group.isEmpty ? "/api/\(version)" : "/apis/\(group)/\(version)"
    if namespaced, let namespace { p += "/namespaces/\(KubeResource.escape(namespace))" }
    p += "/\(plural)"
    if let name { p += "/\(KubeResource.escape(name))" }
    if let subresource { p += "/\(subresource)" }
    return p
  }

  /// Percent-encodes what is not safe in a path segment (names are DNS-ish, but a name
  /// taken from a pod's volume context is not trusted).
  static func escape(_ segment: String) -> String {
    var out = ""
    for byte in segment.utf8 {
      switch byte {
      case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
        UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
        out.unicodeScalars.append(Unicode.Scalar(byte))
      default:
        let hex = Array("0123456789ABCDEF".utf8)
        out += "%" + String(decoding: [hex[Int(byte >> 4)], hex[Int(byte & 15)]], as: UTF8.self)
      }
    }
    return out
  }

  public static let secretProviderClasses = KubeResource(
    group: "secrets-store.csi.x-k8s.io", version: "v1", plural: "secretproviderclasses", namespaced: true)
  public static let secretProviderClassPodStatuses = KubeResource(
    group: "secrets-store.csi.x-k8s.io", version: "v1", plural: "secretproviderclasspodstatuses", namespaced: true)
  public static let secrets = KubeResource(group: "", version: "v1", plural: "secrets", namespaced: true)
  public static let pods = KubeResource(group: "", version: "v1", plural: "pods", namespaced: true)
  public static let events = KubeResource(group: "", version: "v1", plural: "events", namespaced: true)
}
