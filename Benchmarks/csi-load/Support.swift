import Glibc
import TextFormats

/// Monotonic nanoseconds (CLOCK_MONOTONIC): every latency and time offset.
func monotonicNs() -> UInt64 {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Wall-clock time as RFC 3339 UTC (`2025-01-02T03:04:05Z`), `offsetSeconds` from now.
func rfc3339(offsetSeconds: Int = 0) -> String {
  var t = time(nil) + offsetSeconds
  var parts = tm()
  gmtime_r(&t, &parts)
  var buf = [CChar](repeating: 0, count: 32)
  let n = strftime(&buf, buf.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
  return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// SplitMix64: small, fast and seedable, so two runs with the same `--seed`
/// make the same pods, tokens and schedule.
struct SeededRandom: RandomNumberGenerator, Sendable {
  private var state: UInt64

  init(seed: UInt64) { state = seed }

  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  mutating func hex(_ count: Int) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var bytes = [UInt8]()
    bytes.reserveCapacity(count)
    while bytes.count < count {
      var r = next()
      for _ in 0..<16 where bytes.count < count {
        bytes.append(digits[Int(r & 0xF)])
        r >>= 4
      }
    }
    return String(decoding: bytes, as: UTF8.self)
  }

  /// Base64url characters, the alphabet of a JWT.
  mutating func base64url(_ count: Int) -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    var bytes = [UInt8]()
    bytes.reserveCapacity(count)
    while bytes.count < count {
      var r = next()
      for _ in 0..<10 where bytes.count < count {
        bytes.append(alphabet[Int(r & 63)])
        r >>= 6
      }
    }
    return String(decoding: bytes, as: UTF8.self)
  }

  mutating func uuid() -> String {
    let h = hex(32)
    let c = Array(h)
    return String(c[0..<8]) + "-" + String(c[8..<12]) + "-4" + String(c[13..<16]) + "-a" + String(c[17..<20]) + "-"
      + String(c[20..<32])
  }
}

/// Durations as the flags spell them: Go durations (`250ms`, `1.5s`, `2m`, `1h30m`), or plain seconds.
enum DurationText {
  static func seconds(_ text: String) -> Double? {
    let t = text.trimmingCharacters()
    if let v = Double(t) { return v >= 0 && v.isFinite ? v : nil }
    return GoDuration.seconds(t)
  }
}

extension String {
  func trimmingCharacters() -> String {
    var s = Substring(self)
    while s.first?.isWhitespace == true { s = s.dropFirst() }
    while s.last?.isWhitespace == true { s = s.dropLast() }
    return String(s)
  }
}

/// File helpers that return nil or false instead of throwing: the harness
/// reports what it could not do and carries on measuring.
enum Files {
  static func read(_ path: String, limit: Int = 16 << 20) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 65536)
    while out.count < limit {
      let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
      if n < 0 && errno == EINTR { continue }
      if n <= 0 { return n == 0 ? out : nil }
      out += buf[0..<n]
    }
    return out
  }

  static func readText(_ path: String) -> String? {
    read(path).map { String(decoding: $0, as: UTF8.self) }
  }

  /// One line of /proc/self/mounts.
  struct Mount {
    var point: String
    var type: String
    var options: String
  }

  /// This process's mount table (empty if unreadable).
  static func mounts() -> [Mount] {
    guard let table = readText("/proc/self/mounts") else { return [] }
    return table.split(separator: "\n").compactMap { line in
      let fields = line.split(separator: " ")
      guard fields.count >= 4 else { return nil }
      return Mount(point: String(fields[1]), type: String(fields[2]), options: String(fields[3]))
    }
  }

  /// "type on point (options)" of the mount that holds `path`: what a mkdir of
  /// a pod directory costs depends on it (a journal-less ext4 charges ~200 µs here).
  static func fileSystem(holding path: String) -> String {
    var holder: Mount?
    for mount in mounts() where mount.point == "/" || path == mount.point || path.hasPrefix(mount.point + "/") {
      // The innermost; a later mount on the same point hides an earlier one.
      if mount.point.count >= (holder?.point.count ?? 0) { holder = mount }
    }
    return holder.map { "\($0.type) on \($0.point) (\($0.options))" } ?? "unknown"
  }

  /// Writes through a temporary file and a rename, as a secret store sync would.
  @discardableResult
  static func writeAtomically(_ bytes: [UInt8], to path: String) -> Bool {
    let tmp = "\(path).tmp.\(getpid())"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { return false }
    var offset = 0
    while offset < bytes.count {
      let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
      if n < 0 {
        if errno == EINTR { continue }
        close(fd)
        unlink(tmp)
        return false
      }
      offset += n
    }
    close(fd)
    guard rename(tmp, path) == 0 else {
      unlink(tmp)
      return false
    }
    return true
  }

  static func write(_ text: String, to path: String) -> Bool {
    writeAtomically(Array(text.utf8), to: path)
  }

  /// `mkdir -p`; true when the directory exists afterwards.
  @discardableResult
  static func makeDirectories(_ path: String) -> Bool {
    var current = path.hasPrefix("/") ? "" : "."
    for element in path.split(separator: "/") {
      current += "/" + element
      if mkdir(current, 0o750) != 0 && errno != EEXIST { return false }
    }
    return true
  }

  static func isSocket(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK
  }

  static func exists(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
  }

  static func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
  }
}

/// Writes to stderr without buffering (the progress line and warnings).
func printError(_ text: String) {
  var bytes = Array(text.utf8)
  bytes.append(UInt8(ascii: "\n"))
  _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
