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

/// A failed check: its code, and a sentence for the error samples.
struct VolumeProblem: Error, Sendable {
  var failure: VerifyFailure
  var detail: String
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
  func check(target: String) -> Result<Checked, VolumeProblem> {
    var result = checkOnce(target: target)
    for _ in 0..<2 {
      guard case .failure = result else { break }
      result = checkOnce(target: target)
    }
    return result
  }

  private func checkOnce(target: String) -> Result<Checked, VolumeProblem> {
    func fail(_ failure: VerifyFailure, _ what: String) -> Result<Checked, VolumeProblem> {
      .failure(VolumeProblem(failure: failure, detail: "\(failure.code): \(what) (\(target))"))
    }
    var st = stat()
    guard lstat(target, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return fail(.noTarget, "no directory at the target") }
    guard let entries = Self.list(target) else { return fail(.noTarget, "the target cannot be listed") }
    if entries.isEmpty { return fail(.empty, "the volume is empty") }
    switch clinux_is_mount_root(target) {
    case 1: break
    case -2:  // before Linux 5.8: a mount root has another device than its parent
      var parent = stat()
      let parentPath = target.lastIndex(of: "/").map { String(target[..<$0]) } ?? "."
      guard stat(parentPath.isEmpty ? "/" : parentPath, &parent) == 0, parent.st_dev != st.st_dev else {
        return fail(.notMounted, "nothing is mounted at the target")
      }
    default: return fail(.notMounted, "nothing is mounted at the target")
    }
    let magic = clinux_fs_magic(target)
    guard magic == Self.tmpfsMagic else { return fail(.notTmpfs, "the target's file system is 0x\(String(magic, radix: 16)), not tmpfs") }

    guard let data = Self.readLink(target + "/..data"), data.hasPrefix(".."), !data.contains("/"), data != "..data",
      entries.contains(data), Files.isDirectory(target + "/" + data)
    else { return fail(.layout, "..data is not a link to a ..<timestamp> directory") }
    var accounted: Set<String> = ["..data", data]
    var contents: [[UInt8]] = []
    if let expected {
      contents.reserveCapacity(expected.count)
      for object in expected {
        guard entries.contains(object.name) else { return fail(.missingObject, "\(object.name) is missing") }
        guard Self.readLink(target + "/" + object.name) == "..data/" + object.name else {
          return fail(.layout, "\(object.name) is not a link to ..data/\(object.name)")
        }
        guard let bytes = Files.read(target + "/..data/" + object.name) else {
          return fail(.missingObject, "..data/\(object.name) cannot be read")
        }
        guard object.versions.contains(bytes) else {
          return fail(.wrongContent, "\(object.name) holds \(bytes.count) bytes the store never held")
        }
        contents.append(bytes)
        accounted.insert(object.name)
      }
      if entries.count != accounted.count {
        return fail(.extraEntry, "unexpected \(entries.subtracting(accounted).sorted().joined(separator: ", "))")
      }
      guard let inData = Self.list(target + "/" + data) else { return fail(.layout, "\(data) cannot be listed") }
      if inData.count != expected.count {
        return fail(.extraEntry, "\(data) holds \(inData.count) entries for \(expected.count) objects")
      }
    } else {
      let names = entries.subtracting(accounted)
      if names.isEmpty { return fail(.missingObject, "no object besides ..data") }
      for name in names {
        guard Self.readLink(target + "/" + name) == "..data/" + name else {
          return fail(.layout, "\(name) is not a link to ..data/\(name)")
        }
        guard Files.exists(target + "/..data/" + name) else { return fail(.missingObject, "..data/\(name) is missing") }
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
