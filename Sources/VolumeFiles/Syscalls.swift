import CLinux
import Glibc

#if DEBUG
  import Synchronization
#endif

/// Runs one system call: retries EINTR and turns -1 into `VolumeFileError.system` naming
/// the call and path. The path is an autoclosure so the success path builds no strings.
/// Every system call of the driver goes through here, except close(2): on Linux the
/// descriptor is gone even when it fails, so it must not be retried and is not checked.
@inline(__always)
public func sys<R: BinaryInteger>(
  _ call: StaticString, _ path: @autoclosure () -> String, _ body: () -> R
) throws -> R {
  #if DEBUG
    SyscallFaultPoint.tick()
  #endif
  while true {
    let result = body()
    if result != -1 { return result }
    let code = errno
    if code == EINTR { continue }
    throw VolumeFileError(.system(call: "\(call)", path: path(), errno: code))
  }
}

#if DEBUG
  /// Debug builds only (release builds have no such hook and pay nothing): kills the
  /// process with SIGKILL just before the Nth system call through `sys` from now, so a
  /// test can stop a writer at every step and check what it left (the kill-at-every-step
  /// test of the atomic writer).
  public enum SyscallFaultPoint {
    private static let countdown = Atomic<Int>(0)

    /// Kill before the `n`th call from now (n >= 1); 0 turns the hook off.
    public static func killBefore(call n: Int) {
      countdown.store(n, ordering: .relaxed)
    }

    @inline(__always)
    static func tick() {
      guard countdown.load(ordering: .relaxed) > 0 else { return }
      if countdown.wrappingSubtract(1, ordering: .relaxed).newValue == 0 {
        kill(getpid(), SIGKILL)
      }
    }
  }
#endif

/// A name as it is on disk: bytes, because directory entries need not be UTF-8 and Swift's
/// `String ==` compares canonically equivalent but byte-different names as equal.
typealias Name = [UInt8]

/// Calls `body` with `name` as a NUL-terminated C string (stack-allocated).
func withCName<R>(_ name: Name, _ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
  try withUnsafeTemporaryAllocation(of: CChar.self, capacity: name.count + 1) { buffer in
    for (index, byte) in name.enumerated() { buffer[index] = CChar(bitPattern: byte) }
    buffer[name.count] = 0
    return try body(UnsafePointer(buffer.baseAddress!))
  }
}

func string(_ name: Name) -> String { String(decoding: name, as: UTF8.self) }

enum EntryType: Sendable {
  case file, directory, symlink, other
}

struct DirectoryEntry {
  var name: Name
  var type: EntryType
}

/// The names in the directory `path` (not `.` and `..`), in the order the kernel lists them.
public func directoryNames(_ path: String) throws -> [String] {
  let directory = try OpenDirectory(root: path)
  defer { directory.close() }
  return try directory.entries(path: path).map { string($0.name) }
}

/// An open directory descriptor for *at calls and for listing; `close()` exactly once.
struct OpenDirectory {
  let fd: Int32

  /// Opens the single path element `name` under `parent`, confined by the kernel
  /// (`openBeneath`): never a symlink, never outside `parent`.
  init(at parent: Int32, _ name: UnsafePointer<CChar>, path: @autoclosure () -> String) throws {
    fd = try openBeneath(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, path: path())
  }

  init(fd: Int32) { self.fd = fd }

  /// Opens the caller-given root of a volume; symlinks in that path are the caller's choice.
  init(root path: String) throws {
    fd = try sys("open", path) { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
  }

  /// All entries except `.` and `..`; call once per open. Entries of unknown type are asked
  /// with fstatat.
  func entries(path: @autoclosure () -> String) throws -> [DirectoryEntry] {
    var result: [DirectoryEntry] = []
    let capacity = 8192
    try withUnsafeTemporaryAllocation(byteCount: capacity, alignment: 8) { buffer in
      while true {
        let count = try sys("getdents64", path()) { clinux_getdents64(fd, buffer.baseAddress, capacity) }
        if count == 0 { return }
        // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, NUL-terminated name.
        var offset = 0
        while offset < count {
          let record = buffer.baseAddress! + offset
          let length = Int(record.loadUnaligned(fromByteOffset: 16, as: UInt16.self))
          let rawType = record.load(fromByteOffset: 18, as: UInt8.self)
          let nameLength = strlen((record + 19).assumingMemoryBound(to: CChar.self))
          let name = Name(UnsafeRawBufferPointer(start: record + 19, count: nameLength))
          offset += length
          if name == [0x2E] || name == [0x2E, 0x2E] { continue }
          let type: EntryType
          switch Int(rawType) {
          case DT_REG: type = .file
          case DT_DIR: type = .directory
          case DT_LNK: type = .symlink
          case DT_UNKNOWN: type = try entryType(at: fd, name, path: path() + "/" + string(name))
          default: type = .other
          }
          result.append(DirectoryEntry(name: name, type: type))
        }
      }
    }
    return result
  }

  func close() { Glibc.close(fd) }
}

func entryType(at dirfd: Int32, _ name: Name, path: @autoclosure () -> String) throws -> EntryType {
  var info = stat()
  _ = try withComponent(name, path: path()) { cName in
    try sys("fstatat", path()) { fstatat(dirfd, cName, &info, AT_SYMLINK_NOFOLLOW) }
  }
  switch info.st_mode & S_IFMT {
  case S_IFREG: return .file
  case S_IFDIR: return .directory
  case S_IFLNK: return .symlink
  default: return .other
  }
}

/// The target of the symlink `name` under `dirfd`.
func readLink(at dirfd: Int32, _ name: UnsafePointer<CChar>, path: @autoclosure () -> String) throws -> Name {
  let capacity = Int(PATH_MAX) + 1
  return try withUnsafeTemporaryAllocation(of: CChar.self, capacity: capacity) { buffer in
    let count = try sys("readlinkat", path()) { readlinkat(dirfd, name, buffer.baseAddress!, capacity) }
    return buffer.prefix(count).map { UInt8(bitPattern: $0) }
  }
}

/// Removes `name` under `parent`, recursively if it is a directory, never following symlinks.
func removeEntry(at parent: Int32, _ name: Name, type: EntryType, path: String) throws {
  try withComponent(name, path: path) { cName in
    guard type == .directory else {
      _ = try sys("unlinkat", path) { unlinkat(parent, cName, 0) }
      return
    }
    let directory = try OpenDirectory(at: parent, cName, path: path)
    do {
      // List first: removing entries while readdir walks the same stream may skip some.
      for entry in try directory.entries(path: path) {
        try removeEntry(at: directory.fd, entry.name, type: entry.type, path: path + "/" + string(entry.name))
      }
    } catch {
      directory.close()
      throw error
    }
    directory.close()
    _ = try sys("unlinkat", path) { unlinkat(parent, cName, AT_REMOVEDIR) }
  }
}

/// Reads the regular file `name` under `dirfd`: its permission bits and bytes.
func readRegularFile(at dirfd: Int32, _ name: Name, path: @autoclosure () -> String) throws -> (
  mode: UInt32, contents: [UInt8]
) {
  // O_NONBLOCK: should a FIFO have been swapped in, fail instead of hanging.
  let fd = try withComponent(name, path: path()) { cName in
    try openBeneath(dirfd, cName, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, path: path())
  }
  defer { close(fd) }
  var info = stat()
  _ = try sys("fstat", path()) { fstat(fd, &info) }
  guard info.st_mode & S_IFMT == S_IFREG else {
    throw VolumeFileError(.unexpectedEntry(path: path(), reason: "is not a regular file"))
  }
  let size = Int(info.st_size)
  // The writer never modifies a file after creating it, so st_size is the whole file and
  // one read normally suffices.
  let contents = try [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
    count = 0
    while count < size {
      let n = try sys("read", path()) { read(fd, buffer.baseAddress! + count, size - count) }
      if n == 0 { break }
      count += n
    }
  }
  return (info.st_mode & 0o7777, contents)
}

extension Array where Element == UInt8 {
  /// Overwrites the bytes with zeros (a store the compiler may not drop) and empties the
  /// array. Only the array's own buffer is cleared: when the buffer is shared with another
  /// array (copy-on-write), that one keeps its bytes and this call clears a fresh copy;
  /// so call it only on arrays nothing else holds.
  public mutating func zeroize() {
    withUnsafeMutableBytes { clinux_explicit_bzero($0.baseAddress, $0.count) }
    removeAll()
  }
}
