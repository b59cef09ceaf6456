import CLinux
import COpenSSL
import Glibc
import VolumeFiles

/// Object contents from files under --data-dir, read afresh on every call so a
/// test or demo rotates a secret by rewriting its file.
///
/// Confinement: the name is already a clean relative path (PathRules); symlinks
/// are followed (a Kubernetes Secret or ConfigMap volume is made of `..data`
/// links) but the walk may never leave the data directory. `openat2` with
/// RESOLVE_BENEATH enforces that in the kernel, atomically, in one call; on a
/// kernel without it (before 5.6) the file is resolved with realpath and
/// checked first, which someone who can already write the directory could race.
struct DataDir: Sendable {
  /// The data directory with symlinks resolved, without a trailing slash.
  let root: String
  /// The data directory, held open for `openat2`.
  private let directory: Directory

  final class Directory: Sendable {
    let fd: Int32
    init(fd: Int32) { self.fd = fd }
    deinit { if fd >= 0 { close(fd) } }
  }

  /// Largest object read, so a stray huge file cannot exhaust memory.
  static let maxObjectBytes = 16 << 20

  init(path: String) throws(MountFailure) {
    guard let resolved = Self.realPath(path) else {
      throw MountFailure(code: "DataDirMissing", reason: "--data-dir does not exist: \(String(cString: strerror(errno)))")
    }
    var st = stat()
    guard (try? sys("stat", resolved) { stat(resolved, &st) }) != nil, (st.st_mode & S_IFMT) == S_IFDIR else {
      throw MountFailure(code: "DataDirMissing", reason: "--data-dir is not a directory")
    }
    root = resolved == "/" ? "" : resolved
    // Should it not open, every lookup resolves its path first instead (see `contents`).
    directory = Directory(fd: (try? sys("open", resolved) { open(resolved, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }) ?? -1)
  }

  static func realPath(_ path: String) -> String? {
    guard let p = realpath(path, nil) else { return nil }
    defer { free(p) }
    return String(cString: p)
  }

  /// Contents of `<root>/<name>`; `name` must satisfy PathRules.
  func contents(of name: String) throws(MountFailure) -> [UInt8] {
    // O_NONBLOCK: a FIFO planted in the directory must not hang the call.
    var fd: Int32 = -1
    if directory.fd >= 0 {
      while true {
        do {
          fd = try sys("openat2", name) { clinux_openat2_within(directory.fd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }
          break
        } catch {
          switch (error as? VolumeFileError)?.errno {
          case EAGAIN: continue  // a rename raced the walk
          case ENOSYS: fd = try openResolvingFirst(name)
          case ENOENT, ENOTDIR: throw MountFailure(code: "ObjectNotFound", reason: "no file for an object under --data-dir")
          case EXDEV: throw MountFailure(code: "InvalidParameters", reason: "an object file resolves outside --data-dir")
          default: throw MountFailure(code: "ObjectReadFailed", reason: "open: \(Self.reason(error))")
          }
          break
        }
      }
    } else {
      fd = try openResolvingFirst(name)
    }
    defer { close(fd) }
    return try read(fd)
  }

  /// The fallback without openat2: resolve, check the result lies under the root, open.
  private func openResolvingFirst(_ name: String) throws(MountFailure) -> Int32 {
    guard let resolved = Self.realPath(root + "/" + name) else {
      let e = errno
      if e == ENOENT || e == ENOTDIR {
        throw MountFailure(code: "ObjectNotFound", reason: "no file for an object under --data-dir")
      }
      throw MountFailure(code: "ObjectReadFailed", reason: "resolving an object file: \(String(cString: strerror(e)))")
    }
    // Bytes, not Characters: a combining mark after "/" must not change the answer.
    guard resolved.utf8.starts(with: (root + "/").utf8) else {
      throw MountFailure(code: "InvalidParameters", reason: "an object file resolves outside --data-dir")
    }
    do {
      return try sys("open", resolved) { open(resolved, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK) }
    } catch {
      if (error as? VolumeFileError)?.errno == ENOENT {
        throw MountFailure(code: "ObjectNotFound", reason: "object file vanished while opening")
      }
      throw MountFailure(code: "ObjectReadFailed", reason: "open: \(Self.reason(error))")
    }
  }

  /// The errno text of a failed call, without the path: a MountFailure's reason never
  /// holds a name from the request.
  private static func reason(_ error: any Error) -> String {
    guard let code = (error as? VolumeFileError)?.errno else { return "\(error)" }
    return String(cString: strerror(code))
  }

  private func read(_ fd: Int32) throws(MountFailure) -> [UInt8] {
    var st = stat()
    guard (try? sys("fstat", "") { fstat(fd, &st) }) != nil, (st.st_mode & S_IFMT) == S_IFREG else {
      throw MountFailure(code: "ObjectReadFailed", reason: "an object file is not a regular file")
    }
    guard Int(st.st_size) <= Self.maxObjectBytes else {
      throw MountFailure(code: "ObjectTooLarge", reason: "an object file is larger than \(Self.maxObjectBytes) bytes")
    }
    // Read to EOF rather than trusting st_size: the file may be rewritten meanwhile.
    var contents: [UInt8] = []
    contents.reserveCapacity(Int(st.st_size) + 1)
    var chunk = [UInt8](repeating: 0, count: max(4096, min(Int(st.st_size) + 1, 1 << 20)))
    while true {
      let n: Int
      do {
        n = try chunk.withUnsafeMutableBytes { buffer in try sys("read", "") { Glibc.read(fd, buffer.baseAddress, buffer.count) } }
      } catch {
        throw MountFailure(code: "ObjectReadFailed", reason: "read: \(Self.reason(error))")
      }
      if n == 0 { break }
      contents.append(contentsOf: chunk[..<n])
      if contents.count > Self.maxObjectBytes {
        throw MountFailure(code: "ObjectTooLarge", reason: "an object file is larger than \(Self.maxObjectBytes) bytes")
      }
    }
    return contents
  }
}

enum ContentVersion {
  /// The first 16 hex digits of the SHA-256 of `contents`: changes exactly when the contents do.
  static func of(_ contents: [UInt8]) -> String {
    var digest = [UInt8](repeating: 0, count: 32)
    var length: UInt32 = 0
    let ok = contents.withUnsafeBytes { input in
      digest.withUnsafeMutableBufferPointer { out in
        EVP_Digest(input.baseAddress, input.count, out.baseAddress, &length, EVP_sha256(), nil)
      }
    }
    precondition(ok == 1 && length == 32, "EVP_Digest(sha256) failed")
    let hex = Array("0123456789abcdef".utf8)
    var text = [UInt8]()
    text.reserveCapacity(16)
    for byte in digest.prefix(8) {
      text.append(hex[Int(byte >> 4)])
      text.append(hex[Int(byte & 0x0f)])
    }
    return String(decoding: text, as: UTF8.self)
  }
}
