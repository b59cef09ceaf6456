import CLinux
import Glibc

/// An object a published volume must hold, and every value the store has held for it.
struct ExpectedObject: Sendable {
  var name: String
  /// A volume may show any of them: a refresh need not have happened yet.
  var versions: [[UInt8]]
}

/// Why a volume the driver answered OK for is not what kubelet asked for.
/// Counted as errors, under `code`, beside the gRPC status names.
enum VerifyFailure: String, Error, Sendable {
  /// The target path is missing or not a directory.
  case noTarget = "VERIFY_NO_TARGET"
  /// The target is an empty directory.
  case empty = "VERIFY_EMPTY"
  /// The target is not a mount point of its own.
  case notMounted = "VERIFY_NOT_MOUNTED"
  /// The target is mounted, but not a tmpfs: secrets would touch the node's disk.
  case notTmpfs = "VERIFY_NOT_TMPFS"
  /// An object is absent (no link, or its link leads nowhere).
  case missingObject = "VERIFY_MISSING_OBJECT"
  /// An object's bytes are none of the values the store has held.
  case wrongContent = "VERIFY_WRONG_CONTENT"
  /// Not the atomic-writer layout: `..data` is not a link to a `..` directory, or an object
  /// name is not a link to `..data/<name>`.
  case layout = "VERIFY_LAYOUT"
  /// A file that no object accounts for.
  case extraEntry = "VERIFY_EXTRA_ENTRY"
  /// NodeUnpublishVolume answered OK but the target path is still there.
  case targetLeft = "VERIFY_TARGET_LEFT"

  var code: String { rawValue }
}

/// Reads a published volume back and compares it with what the provider serves:
/// kubelet's atomic-writer layout (`..data -> ..<timestamp>/`, every object name a
/// link to `..data/<name>`), exactly the expected objects, each holding one of the
/// values the store has held, on a tmpfs mounted at the target itself.
///
/// About 30 system calls for three objects. The caller takes its timestamps before
/// calling this, so checking costs the harness's CPU, not the measured latency.
struct VolumeVerifier: Sendable {
  /// nil: the names are unknown (a running driver without `--expect-object`): then any
  /// non-empty set of objects in the right layout passes, whatever their bytes.
  var expected: [ExpectedObject]?

  struct Checked {
    /// The bytes of each expected object, in `expected`'s order (empty when names are unknown).
    var contents: [[UInt8]]
  }

  private static let tmpfsMagic = 0x0102_1994

  /// Checks, and checks again up to twice when it fails: the driver's own refresh may swap
  /// `..data` between two of our reads, which a second look resolves; a broken volume fails
  /// every look.
  func check(target: String) -> Result<Checked, VerifyFailure> {
    var result = checkOnce(target: target)
    for _ in 0..<2 {
      guard case .failure = result else { break }
      result = checkOnce(target: target)
    }
    return result
  }

  private func checkOnce(target: String) -> Result<Checked, VerifyFailure> {
    var st = stat()
    guard lstat(target, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return .failure(.noTarget) }
    guard let entries = Self.list(target) else { return .failure(.noTarget) }
    if entries.isEmpty { return .failure(.empty) }
    switch clinux_is_mount_root(target) {
    case 1: break
    case -2:  // before Linux 5.8: a mount root has another device than its parent
      var parent = stat()
      let parentPath = target.lastIndex(of: "/").map { String(target[..<$0]) } ?? "."
      guard stat(parentPath.isEmpty ? "/" : parentPath, &parent) == 0, parent.st_dev != st.st_dev else {
        return .failure(.notMounted)
      }
    default: return .failure(.notMounted)
    }
    guard clinux_fs_magic(target) == Self.tmpfsMagic else { return .failure(.notTmpfs) }

    guard let data = Self.readLink(target + "/..data"), data.hasPrefix(".."), !data.contains("/"), data != "..data",
      entries.contains(data), Files.isDirectory(target + "/" + data)
    else { return .failure(.layout) }
    var accounted: Set<String> = ["..data", data]
    var contents: [[UInt8]] = []
    if let expected {
      contents.reserveCapacity(expected.count)
      for object in expected {
        guard entries.contains(object.name) else { return .failure(.missingObject) }
        guard Self.readLink(target + "/" + object.name) == "..data/" + object.name else { return .failure(.layout) }
        guard let bytes = Files.read(target + "/..data/" + object.name) else { return .failure(.missingObject) }
        guard object.versions.contains(bytes) else { return .failure(.wrongContent) }
        contents.append(bytes)
        accounted.insert(object.name)
      }
      if entries.count != accounted.count { return .failure(.extraEntry) }
      guard let inData = Self.list(target + "/" + data) else { return .failure(.layout) }
      if inData.count != expected.count { return .failure(.extraEntry) }
    } else {
      let names = entries.subtracting(accounted)
      if names.isEmpty { return .failure(.missingObject) }
      for name in names {
        guard Self.readLink(target + "/" + name) == "..data/" + name else { return .failure(.layout) }
        guard Files.exists(target + "/..data/" + name) else { return .failure(.missingObject) }
      }
    }
    return .success(Checked(contents: contents))
  }

  /// The names in a directory, without `.` and `..`; nil if it cannot be read.
  static func list(_ path: String) -> Set<String>? {
    guard let dir = opendir(path) else { return nil }
    defer { closedir(dir) }
    var names = Set<String>()
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: &entry.pointee.d_name) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
      }
      if name != "." && name != ".." { names.insert(name) }
    }
    return names
  }

  /// The target of the symbolic link at `path`; nil if it is none.
  static func readLink(_ path: String) -> String? {
    var buf = [UInt8](repeating: 0, count: 256)
    let n = buf.withUnsafeMutableBytes { readlink(path, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
    guard n > 0, n < buf.count else { return nil }
    return String(decoding: buf[0..<n], as: UTF8.self)
  }
}
