/// Names and labels of SecretProviderClassPodStatus objects.
///
/// Users look an object up as `<pod>-<namespace>-<class>` (upstream's name, shown in
/// the OpenShift docs), so that is the name whenever it can be: only when it would pass
/// the 253-character limit, or when one pod mounts the same class in two volumes, does
/// the name become `<prefix>-<hash of the target path>`. Every object also carries
/// labels that find it by node, pod and class, whatever its name.
public enum PodStatusNaming {
  public static let nodeLabel = "internal.secrets-store.csi.k8s.io/node-name"
  public static let podUIDLabel = "secrets-store.csi.k8s.io/pod-uid"
  public static let podNameLabel = "secrets-store.csi.k8s.io/pod-name"
  public static let classLabel = "secrets-store.csi.k8s.io/secret-provider-class"

  public static let maxNameLength = 253

  /// Upstream's name for this pod and class.
  public static func plainName(pod: String, namespace: String, spc: String) -> String {
    "\(pod)-\(namespace)-\(spc)"
  }

  /// The deterministic fallback for a target: the plain name cut to leave room, then
  /// a hash of the target path (which is unique per volume on a node).
  public static func hashedName(pod: String, namespace: String, spc: String, targetPath: String) -> String {
    let suffix = "-" + hex(fnv1a64(targetPath))
    let plain = plainName(pod: pod, namespace: namespace, spc: spc)
    var prefix = String(plain.utf8.prefix(maxNameLength - suffix.utf8.count))!
    while prefix.hasSuffix("-") || prefix.hasSuffix(".") { prefix.removeLast() }
    return prefix + suffix
  }

  /// The name to use when `plainTakenByOtherTarget` says whether an object of the plain
  /// name already records another volume of this pod.
  public static func name(pod: String, namespace: String, spc: String, targetPath: String, plainTakenByOtherTarget: Bool) -> String {
    let plain = plainName(pod: pod, namespace: namespace, spc: spc)
    if plain.utf8.count <= maxNameLength && !plainTakenByOtherTarget { return plain }
    return hashedName(pod: pod, namespace: namespace, spc: spc, targetPath: targetPath)
  }

  /// A label value for any string: itself when it is a valid value (≤ 63 characters of
  /// `[A-Za-z0-9._-]`, alphanumeric at both ends), else `h-` and a hash.
  public static func labelValue(_ text: String) -> String {
    let bytes = Array(text.utf8)
    func alnum(_ c: UInt8) -> Bool {
      (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
    }
    let valid =
      bytes.count <= 63
      && (bytes.isEmpty
        || (alnum(bytes.first!) && alnum(bytes.last!) && bytes.allSatisfy { alnum($0) || $0 == 0x2D || $0 == 0x2E || $0 == 0x5F }))
    return valid ? text : "h-" + hex(fnv1a64(text))
  }

  static func fnv1a64(_ text: String) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 {
      hash ^= UInt64(byte)
      hash &*= 0x0000_0100_0000_01b3
    }
    return hash
  }

  static func hex(_ value: UInt64) -> String {
    let s = String(value, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
  }
}
