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
/// About 25 system calls for three objects, relative to descriptors of the target and
/// of the timestamp directory, so the long pod path is walked three times, not twenty.
/// The caller takes its timestamps before calling this, so checking costs the harness's
/// CPU (reported as verify.cpu_per_check_us), not the measured latency.
struct VolumeVerifier: Sendable {
  /// nil: the names are unknown (a running driver without `--expect-object`): then any
  /// non-empty set of objects in the right layout passes, whatever their bytes.
  var expected: [ExpectedObject]?
  /// The longest value an object may hold: reads stop one byte beyond it.
  private let longest: Int

  init(expected: [ExpectedObject]?) {
    self.expected = expected
    longest = expected?.flatMap { $0.versions.map(\.count) }.max() ?? 0
  }

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
    let root = open(target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    guard root >= 0 else { return fail(.noTarget, "no directory at the target") }
    defer { close(root) }
    guard let entries = Self.list(root) else { return fail(.noTarget, "the target cannot be listed") }
    if entries.isEmpty { return fail(.empty, "the volume is empty") }
    switch clinux_is_mount_root(target) {
    case 1: break
    case -2:  // before Linux 5.8: a mount root has another device than its parent
      var mine = stat()
      var parent = stat()
      guard fstat(root, &mine) == 0, fstatat(root, "..", &parent, 0) == 0, parent.st_dev != mine.st_dev else {
        return fail(.notMounted, "nothing is mounted at the target")
      }
    default: return fail(.notMounted, "nothing is mounted at the target")
    }
    let magic = clinux_fs_magic(root)
    guard magic == Self.tmpfsMagic else { return fail(.notTmpfs, "the target's file system is 0x\(String(magic, radix: 16)), not tmpfs") }

    guard let data = Self.readLink(at: root, "..data"), data.hasPrefix(".."), !data.contains("/"), data != "..data",
      entries.contains(data)
    else { return fail(.layout, "..data is not a link to a ..<timestamp> directory") }
    let dataDir = openat(root, data, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    guard dataDir >= 0 else { return fail(.layout, "..data is not a link to a ..<timestamp> directory") }
    defer { close(dataDir) }
    var accounted = ["..data", data]
    var contents: [[UInt8]] = []
    if let expected {
      contents.reserveCapacity(expected.count)
      for object in expected {
        guard entries.contains(object.name) else { return fail(.missingObject, "\(object.name) is missing") }
        guard Self.readLink(at: root, object.name) == "..data/" + object.name else {
          return fail(.layout, "\(object.name) is not a link to ..data/\(object.name)")
        }
        guard let bytes = Self.read(at: dataDir, object.name, limit: longest + 1) else {
          return fail(.missingObject, "..data/\(object.name) cannot be read")
        }
        guard object.versions.contains(bytes) else {
          return fail(.wrongContent, "\(object.name) holds \(bytes.count > longest ? "more" : "\(bytes.count)") bytes the store never held")
        }
        contents.append(bytes)
        accounted.append(object.name)
      }
      if entries.count != accounted.count {
        return fail(.extraEntry, "unexpected \(entries.filter { !accounted.contains($0) }.sorted().joined(separator: ", "))")
      }
      guard let inData = Self.list(dataDir) else { return fail(.layout, "\(data) cannot be listed") }
      if inData.count != expected.count {
        return fail(.extraEntry, "\(data) holds \(inData.count) entries for \(expected.count) objects")
      }
    } else {
      let names = entries.filter { !accounted.contains($0) }
      if names.isEmpty { return fail(.missingObject, "no object besides ..data") }
      for name in names {
        guard Self.readLink(at: root, name) == "..data/" + name else {
          return fail(.layout, "\(name) is not a link to ..data/\(name)")
        }
        var info = stat()
        guard fstatat(dataDir, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
          return fail(.missingObject, "..data/\(name) is missing")
        }
      }
    }
    return .success(Checked(contents: contents))
  }

  /// The names in an open directory, without `.` and `..` (getdents64, read once); nil on error.
  static func list(_ fd: Int32) -> [String]? {
    var names: [String] = []
    let capacity = 4096
    let ok = withUnsafeTemporaryAllocation(byteCount: capacity, alignment: 8) { buffer -> Bool in
      while true {
        let count = clinux_getdents64(fd, buffer.baseAddress, capacity)
        if count < 0 && errno == EINTR { continue }
        if count <= 0 { return count == 0 }
        // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, NUL-terminated name.
        var offset = 0
        while offset < count {
          let record = buffer.baseAddress! + offset
          let name = String(cString: (record + 19).assumingMemoryBound(to: CChar.self))
          offset += Int(record.loadUnaligned(fromByteOffset: 16, as: UInt16.self))
          if name != "." && name != ".." { names.append(name) }
        }
      }
    }
    return ok ? names : nil
  }

  /// The target of the symbolic link `name` under `dirfd`; nil if it is none.
  static func readLink(at dirfd: Int32, _ name: String) -> String? {
    withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { buffer -> String? in
      let n = readlinkat(dirfd, name, buffer.baseAddress!, buffer.count)
      guard n > 0, n < buffer.count else { return nil }
      return String(decoding: UnsafeRawBufferPointer(start: buffer.baseAddress!, count: n), as: UTF8.self)
    }
  }

  /// Up to `limit` bytes of the regular file `name` under `dirfd` (a symlink there fails); nil if unreadable.
  /// On a tmpfs one read returns everything up to the limit.
  static func read(at dirfd: Int32, _ name: String, limit: Int) -> [UInt8]? {
    let fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var failed = false
    let bytes = [UInt8](unsafeUninitializedCapacity: limit) { buffer, count in
      count = 0
      while count < limit {
        let n = Glibc.read(fd, buffer.baseAddress! + count, limit - count)
        if n < 0 && errno == EINTR { continue }
        if n < 0 { failed = true }
        if n <= 0 { break }
        count += n
        if count < limit { break }  // a short read of a regular file: its end
      }
    }
    return failed ? nil : bytes
  }
}
