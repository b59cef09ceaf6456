/// Which file paths a provider may return, and which names the reference provider
/// accepts and looks up: one rule for both sides of the provider protocol.
public enum PathRules {
  public static let maxPathBytes = 4096
  public static let maxElementBytes = 255

  /// Throws `VolumeFileError(.invalidPath)` naming the path and the first rule it breaks:
  /// paths are relative, non-empty and clean (no `.`/`..` elements, no leading, trailing or
  /// double `/`), each element at most 255 bytes, the whole at most 4096, no NUL byte, and
  /// no element may start with `..` (reserved for the writer's `..data` and timestamp
  /// directories, and refused deeper down too so no name can pass for one of them).
  public static func validate(_ path: String) throws {
    if let reason = violation(path) {
      throw VolumeFileError(.invalidPath(path: path, reason: reason))
    }
  }

  /// Whether `path` passes `validate`, for callers with errors of their own.
  public static func isValid(_ path: String) -> Bool { violation(path) == nil }

  static func violation(_ path: String) -> String? {
    let bytes = path.utf8
    let slash = UInt8(ascii: "/")
    let dot = UInt8(ascii: ".")
    if bytes.isEmpty { return "is empty" }
    if bytes.count > maxPathBytes { return "is longer than \(maxPathBytes) bytes" }
    if bytes.contains(0) { return "contains a NUL byte" }
    if bytes.first == slash { return "is absolute; paths must be relative to the volume" }
    if bytes.last == slash { return "ends with \"/\"" }
    for element in bytes.split(separator: slash, omittingEmptySubsequences: false) {
      if element.isEmpty { return "contains \"//\"" }
      if element.elementsEqual([dot]) { return "contains a \".\" element" }
      if element.elementsEqual([dot, dot]) { return "contains a \"..\" element" }
      if element.count > maxElementBytes { return "has an element longer than \(maxElementBytes) bytes" }
      if element.starts(with: [dot, dot]) {
        return "has an element starting with \"..\", which is reserved for the writer (..data, timestamp directories)"
      }
    }
    return nil
  }
}
