import Glibc
import Synchronization

/// Name suffixes unique within this process: a random start drawn once (one getrandom per
/// process, not one per name) plus a counter. For names in directories only the driver
/// writes (timestamp directories, the state directory's temporary files), where being
/// unique among this process's names is what matters; the random start keeps a restarted
/// driver (often pid 1 again in its container) from meeting its predecessor's leftovers
/// with the same names, and callers still retry on EEXIST.
public enum UniqueSuffix {
  private static let start = UInt32.random(in: .min ... .max)
  private static let counter = Atomic<UInt32>(0)

  /// The next suffix: 8 lowercase hex digits.
  public static func next() -> String {
    let value = start &+ counter.wrappingAdd(1, ordering: .relaxed).oldValue
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 8 - digits.count) + digits
  }
}

/// The process's file mode creation mask, read once from /proc/self/status (`Umask:`,
/// Linux 4.7+). Reading it with umask(2) would mean setting it, which races with every
/// other thread creating a file. The driver never changes its umask, so the value read
/// once stays true. Unknown (no /proc): 0o777, i.e. "any bit may be cut".
public enum ProcessUmask {
  public static let value: UInt32 = read() ?? 0o777

  /// Whether a file or directory created with `mode` may not end up with exactly `mode`:
  /// the umask cuts some of its bits, or it has set-user-ID, set-group-ID or sticky bits
  /// (mkdir ignores set-group-ID, and a write or chown by a process without CAP_FSETID
  /// clears the set-id bits of a file), so the caller sets the mode again with fchmod.
  static func mayCut(_ mode: UInt32) -> Bool {
    mode & (value | 0o7000) != 0
  }

  private static func read() -> UInt32? {
    let fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var text: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
      let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
      if n < 0, errno == EINTR { continue }
      if n <= 0 { break }
      text += buffer[0..<n]
    }
    // "Umask:\t0022\n"
    let key = Array("Umask:".utf8)
    for line in text.split(separator: 0x0A) where line.starts(with: key) {
      let digits = line.dropFirst(key.count).filter { $0 != 0x09 && $0 != 0x20 }
      guard !digits.isEmpty, let mask = UInt32(String(decoding: digits, as: UTF8.self), radix: 8), mask <= 0o777 else {
        return nil
      }
      return mask
    }
    return nil
  }
}
