import FoundationEssentials
import CLinux
import Glibc
import UVRuntime
import VolumeFiles

/// The state directory (`--state-dir`): one `VolumeStateRecord` per served volume, as
/// `<first 32 hex digits of SHA-256(target path)>.json`, plus `driver.lock`, which the
/// running driver holds (flock) for its lifetime.
///
/// Records are written whole to a temporary file and renamed over the old one (no
/// fsync, see `save`): a driver killed at any point leaves the old record or the new one. The default lives under /run, a tmpfs, so records vanish with the
/// node's mounts when it reboots.
public final class VolumeStateStore: Sendable {
  public let directory: String
  private let directoryFD: Int32
  private let lockFD: Int32
  private let owner = Locked(false)

  /// Creates the directory (0700) if needed and opens it. Throws when it cannot.
  public init(directory: String) throws {
    self.directory = directory
    try Self.makeDirectories(directory)
    directoryFD = try sys("open", directory) { open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
    let lockPath = directory + "/driver.lock"
    do {
      lockFD = try sys("open", lockPath) { open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600) }
    } catch {
      Glibc.close(directoryFD)
      throw error
    }
  }

  deinit {
    Glibc.close(lockFD)
    Glibc.close(directoryFD)
  }

  /// Takes the directory's lock if no other live driver holds it. The holder alone may
  /// remove what a killed driver left half-done; a driver that starts while the previous
  /// one still drains (a rolling update) adopts volumes but cleans nothing until then.
  public func tryLock() -> Bool {
    owner.withLock { owned in
      if owned { return true }
      owned = flock(lockFD, LOCK_EX | LOCK_NB) == 0
      return owned
    }
  }

  public var isOwner: Bool { owner.withLock { $0 } }

  /// (The digest is the C shim's own SHA-256: loading libcrypto for it alone cost the
  /// driver ~3 MiB of resident memory.)
  static func fileName(target: String) -> String {
    var digest = [UInt8](repeating: 0, count: 32)
    var target = target
    target.withUTF8 { input in clinux_sha256(input.baseAddress, input.count, &digest) }
    return String(unsafeUninitializedCapacity: 37) { name in
      let hex: StaticString = "0123456789abcdef"
      for i in 0..<16 {
        name[2 * i] = hex.utf8Start[Int(digest[i] >> 4)]
        name[2 * i + 1] = hex.utf8Start[Int(digest[i] & 15)]
      }
      for (i, byte) in ".json".utf8.enumerated() { name[32 + i] = byte }
      return 37
    }
  }


  /// Replaces the volume's record atomically (a temporary file renamed over the old one).
  /// No fsync: a record only has to survive the driver's own crash or restart, and the
  /// page cache does that; what would need fsync (a kernel crash, a power loss) also takes
  /// the node's tmpfs mounts the record describes. On a state directory that is not a
  /// tmpfs, the two fsyncs cost ~9 ms per publish on this project's test machine (a
  /// journaled ext4), against ~0.6 ms for the rest of the publish.
  func save(_ record: VolumeStateRecord) throws {
    let data = try record.json()
    let name = Self.fileName(target: record.targetPath)
    // Unique in this process without a getrandom per record (`UniqueSuffix`).
    let temporary = name + ".tmp-" + UniqueSuffix.next()
    let fd = try sys("openat", directory + "/" + temporary) {
      openat(directoryFD, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
    }
    do {
      try data.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
          offset += try sys("write", directory + "/" + temporary) { write(fd, buffer.baseAddress! + offset, buffer.count - offset) }
        }
      }
      Glibc.close(fd)
      _ = try sys("renameat", directory + "/" + name) { renameat(directoryFD, temporary, directoryFD, name) }
    } catch {
      Glibc.close(fd)
      _ = unlinkat(directoryFD, temporary, 0)
      throw error
    }
  }

  /// Removes the volume's record; no record is fine.
  func remove(target: String) throws {
    let name = Self.fileName(target: target)
    do {
      _ = try sys("unlinkat", directory + "/" + name) { unlinkat(directoryFD, name, 0) }
    } catch let error as VolumeFileError where error.errno == ENOENT {
      return
    }
  }

  /// Every readable record, and the names of files that are not (a temporary file of a
  /// killed write, a record of an unknown format, a file that does not parse).
  func loadAll() throws -> (records: [VolumeStateRecord], unreadable: [String]) {
    var records: [VolumeStateRecord] = []
    var unreadable: [String] = []
    let decoder = JSONDecoder()
    for name in try directoryNames(directory) where name != "driver.lock" {
      guard name.hasSuffix(".json"), let bytes = try? readFile(name),
        let record = try? decoder.decode(VolumeStateRecord.self, from: Data(bytes)),
        record.format == VolumeStateRecord.currentFormat, Self.fileName(target: record.targetPath) == name
      else {
        unreadable.append(name)
        continue
      }
      records.append(record)
    }
    return (records, unreadable)
  }

  /// Removes a file `loadAll` could not read.
  func removeFile(_ name: String) {
    _ = unlinkat(directoryFD, name, 0)
  }

  private func readFile(_ name: String) throws -> [UInt8] {
    let fd = try sys("openat", directory + "/" + name) { openat(directoryFD, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
    defer { Glibc.close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16384)
    while true {
      let n = try chunk.withUnsafeMutableBytes { buffer in
        try sys("read", directory + "/" + name) { read(fd, buffer.baseAddress, buffer.count) }
      }
      if n == 0 { return out }
      out += chunk[0..<n]
      if out.count > 16 << 20 { throw VolumeFileError(.invalidArgument(name: "state record \(name)", reason: "larger than 16 MiB")) }
    }
  }

  private static func makeDirectories(_ path: String) throws {
    var prefix = ""
    for element in path.split(separator: "/") {
      prefix += "/" + element
      do {
        _ = try sys("mkdir", prefix) { mkdir(prefix, 0o700) }
      } catch let error as VolumeFileError where error.errno == EEXIST {
        continue
      }
    }
  }
}
