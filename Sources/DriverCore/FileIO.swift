import Glibc
import VolumeFiles

/// Small blocking file reads for configuration (not on any per-call hot path).
enum FileIO {
  struct TooLarge: Swift.Error, CustomStringConvertible {
    var path: String
    var limit: Int
    var description: String { "\(path) is larger than \(limit) bytes" }
  }

  static func readAll(_ path: String, limit: Int) throws -> [UInt8] {
    let fd = try sys("open", path) { open(path, O_RDONLY | O_CLOEXEC) }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16 << 10)
    while true {
      let n = try chunk.withUnsafeMutableBytes { buffer in try sys("read", path) { read(fd, buffer.baseAddress, buffer.count) } }
      if n == 0 { return out }
      out += chunk[0..<n]
      if out.count > limit { throw TooLarge(path: path, limit: limit) }
    }
  }

  /// Names in a directory (not . or ..); empty when it cannot be read.
  static func directoryEntries(_ path: String) -> [String] {
    (try? directoryNames(path)) ?? []
  }
}
