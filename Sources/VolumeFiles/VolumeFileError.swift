import Glibc

/// Why volume files could not be validated, written, read or mounted.
///
/// `description` names paths and system calls, never file contents: it ends up in logs
/// and gRPC statuses.
public struct VolumeFileError: Error, Sendable, CustomStringConvertible {
  public enum Kind: Sendable, Hashable {
    /// A path the provider returned breaks `PathRules` or clashes with another path.
    case invalidPath(path: String, reason: String)
    /// A file's mode (or the default mode it fell back to) is not a permission (> 0o7777).
    case invalidMode(path: String, mode: UInt32)
    /// A caller-supplied parameter that is not a path, e.g. a tmpfs size of 0.
    case invalidArgument(name: String, reason: String)
    /// A system call failed; `path` is the full path it was about.
    case system(call: String, path: String, errno: Int32)
    /// The volume ran out of space (ENOSPC/EDQUOT/EFBIG) while writing `path`, part of a
    /// version of `fileCount` files and `totalBytes` bytes.
    case tooLarge(path: String, totalBytes: Int, fileCount: Int)
    /// Something in the volume the writer did not make is in its way.
    case unexpectedEntry(path: String, reason: String)
    /// The path to a target passes through a symlink or would leave the trusted root.
    case escapesRoot(path: String, root: String)
  }

  public var kind: Kind

  public init(_ kind: Kind) {
    self.kind = kind
  }

  /// The errno of a `.system` error, else nil.
  public var errno: Int32? {
    if case .system(_, _, let code) = kind { return code }
    return nil
  }

  public var description: String {
    switch kind {
    case .invalidPath(let path, let reason):
      return "invalid file path \(quoted(path)): \(reason)"
    case .invalidMode(let path, let mode):
      return "file \(quoted(path)): mode 0o\(String(mode, radix: 8)) is not a permission (at most 0o7777)"
    case .invalidArgument(let name, let reason):
      return "invalid \(name): \(reason)"
    case .system(let call, let path, let code):
      return "\(call) \(quoted(path)): \(errnoText(code))"
    case .tooLarge(let path, let totalBytes, let fileCount):
      return "no space left in the volume writing \(quoted(path)): \(fileCount) files of \(totalBytes) bytes"
        + " in total do not fit (tmpfs takes at least one page per non-empty file, and an update needs"
        + " room for the old and the new copy); raise the volume size"
    case .unexpectedEntry(let path, let reason):
      return "\(quoted(path)): \(reason)"
    case .escapesRoot(let path, let root):
      return "\(quoted(path)) passes through a symbolic link or leaves \(quoted(root)): refused"
    }
  }
}

/// Quotes and escapes a path for messages; very long ones are cut so a log line stays readable.
func quoted(_ path: String) -> String {
  let limit = 300
  if path.utf8.count <= limit { return path.debugDescription }
  return String(decoding: path.utf8.prefix(limit), as: UTF8.self).debugDescription + "…"
}

func errnoText(_ code: Int32) -> String {
  guard let text = strerror(code) else { return "errno \(code)" }
  return "\(String(cString: text)) (errno \(code))"
}
