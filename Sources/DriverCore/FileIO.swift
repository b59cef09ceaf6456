import Glibc

/// Small blocking file reads for configuration (not on any per-call hot path).
enum FileIO {
  struct Error: Swift.Error, CustomStringConvertible {
    var call: String
    var path: String
    var errno: Int32
    var description: String { "\(call) \(path): \(String(cString: strerror(errno)))" }
  }

  struct TooLarge: Swift.Error, CustomStringConvertible {
    var path: String
    var limit: Int
    var description: String { "\(path) is larger than \(limit) bytes" }
  }

  static func readAll(_ path: String, limit: Int) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw Error(call: "open", path: path, errno: errno) }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16 << 10)
    while true {
      let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if n < 0 {
        if errno == EINTR { continue }
        throw Error(call: "read", path: path, errno: errno)
      }
      if n == 0 { return out }
      out += chunk[0..<n]
      if out.count > limit { throw TooLarge(path: path, limit: limit) }
    }
  }
}

extension FileIO {
  /// Names in a directory (not . or ..); empty when it cannot be read.
  static func directoryEntries(_ path: String) -> [String] {
    guard let dir = opendir(path) else { return [] }
    defer { closedir(dir) }
    var out: [String] = []
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
        String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
      }
      if name != "." && name != ".." { out.append(name) }
    }
    return out
  }
}
