import Glibc
import Testing
import VolumeFiles

/// Mounting needs root; path-rule tests run anywhere.
let canMount = geteuid() == 0

struct TestFailure: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}

/// Mounts a fresh tmpfs in a new directory under /tmp for one test; unmounts and removes it
/// afterwards, also when the body throws.
func withVolume(sizeBytes: Int = 1 << 20, _ body: (String) throws -> Void) throws {
  let directory = try makeTempDirectory()
  defer { rmdir(directory) }
  try Tmpfs.mount(at: directory, sizeBytes: sizeBytes)
  defer { try? Tmpfs.unmount(directory) }
  try body(directory)
}

func makeTempDirectory() throws -> String {
  var template = Array("/tmp/volumefiles-test-XXXXXX".utf8CString)
  guard let created = mkdtemp(&template) else { throw TestFailure("mkdtemp: errno \(errno)") }
  return String(cString: created)
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// The bytes of `path` (following symlinks), or nil if it does not exist.
func contents(_ path: String) throws -> [UInt8]? {
  let fd = open(path, O_RDONLY | O_CLOEXEC)
  if fd < 0 {
    if errno == ENOENT { return nil }
    throw TestFailure("open \(path): errno \(errno)")
  }
  defer { close(fd) }
  return try readAll(fd)
}

func readAll(_ fd: Int32) throws -> [UInt8] {
  var result: [UInt8] = []
  var chunk = [UInt8](repeating: 0, count: 65536)
  while true {
    let n = read(fd, &chunk, chunk.count)
    if n < 0 {
      if errno == EINTR { continue }
      throw TestFailure("read: errno \(errno)")
    }
    if n == 0 { return result }
    result += chunk[0..<n]
  }
}

/// The target of the symlink at `path`, or nil if `path` is missing or not a symlink.
func linkTarget(_ path: String) -> String? {
  var buffer = [CChar](repeating: 0, count: 4097)
  let n = readlink(path, &buffer, buffer.count - 1)
  guard n >= 0 else { return nil }
  return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

struct FileStat {
  var type: mode_t
  var permissions: mode_t
  var inode: UInt
  var changeTime: timespec
  var isDirectory: Bool { type == S_IFDIR }
  var isRegular: Bool { type == S_IFREG }
  var isSymlink: Bool { type == S_IFLNK }
}

/// lstat of `path`, or nil if it does not exist.
func fileStat(_ path: String) -> FileStat? {
  var info = stat()
  guard lstat(path, &info) == 0 else { return nil }
  return FileStat(
    type: info.st_mode & S_IFMT, permissions: info.st_mode & 0o7777, inode: UInt(info.st_ino),
    changeTime: info.st_ctim)
}

/// Names in `directory` (without `.` and `..`), sorted.
func listing(_ directory: String) throws -> [String] {
  guard let stream = opendir(directory) else { throw TestFailure("opendir \(directory): errno \(errno)") }
  defer { closedir(stream) }
  var names: [String] = []
  while let entry = readdir(stream) {
    let name = withUnsafeBytes(of: &entry.pointee.d_name) { raw in
      String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
    if name != "." && name != ".." { names.append(name) }
  }
  return names.sorted()
}

/// The timestamp directory `..data` points to.
func dataTarget(_ root: String) throws -> String {
  guard let target = linkTarget(root + "/..data") else { throw TestFailure("\(root)/..data is not a symlink") }
  return target
}

/// Whether `name` looks like `..YYYY_MM_DD_HH_MM_SS.nnnnnnnnn_xxxxxxxx`.
func isTimestampName(_ name: String) -> Bool {
  let shape = Array("..dddd_dd_dd_dd_dd_dd.ddddddddd_hhhhhhhh")
  let chars = Array(name)
  guard chars.count == shape.count else { return false }
  for (c, s) in zip(chars, shape) {
    switch s {
    case "d": if !c.isASCII || !c.isNumber { return false }
    case "h": if !c.isHexDigit || c.isUppercase { return false }
    default: if c != s { return false }
    }
  }
  return true
}

/// Runs `body` on its own POSIX thread (not the cooperative pool, which it would block).
func startThread(_ body: @escaping @Sendable () -> Void) throws -> pthread_t {
  final class Box {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
  }
  let box = Unmanaged.passRetained(Box(body)).toOpaque()
  var thread = pthread_t()
  let result = pthread_create(&thread, nil, { argument in
    Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue().body()
    return nil
  }, box)
  guard result == 0 else {
    Unmanaged<Box>.fromOpaque(box).release()
    throw TestFailure("pthread_create: \(result)")
  }
  return thread
}

/// `YYYY_MM_DD_HH_MM_SS` of a Unix time in UTC, as timestamp directory names start.
func utcStamp(_ seconds: time_t) -> String {
  var time = seconds
  var utc = tm()
  gmtime_r(&time, &utc)
  func pad(_ value: Int32, _ width: Int) -> String {
    let digits = String(value)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
  }
  return "\(pad(utc.tm_year + 1900, 4))_\(pad(utc.tm_mon + 1, 2))_\(pad(utc.tm_mday, 2))_"
    + "\(pad(utc.tm_hour, 2))_\(pad(utc.tm_min, 2))_\(pad(utc.tm_sec, 2))"
}
