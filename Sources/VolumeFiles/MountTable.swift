import Glibc

/// One line of /proc/self/mountinfo.
public struct MountEntry: Sendable, Hashable {
  /// The kernel's unique id of this mount; a remount gets a new one.
  public var id: Int
  public var parentID: Int
  /// Where it is mounted, octal escapes (`\040` for a space) decoded.
  public var mountPoint: String
  public var fsType: String
  /// The mount's source: for a tmpfs, whatever name the mounter passed.
  public var source: String

  public init(id: Int, parentID: Int, mountPoint: String, fsType: String, source: String) {
    self.id = id
    self.parentID = parentID
    self.mountPoint = mountPoint
    self.fsType = fsType
    self.source = source
  }
}

/// The mount table of this process's mount namespace, as /proc/self/mountinfo lists it.
public enum MountTable {
  /// Every mount, in the kernel's order (a later mount at the same point is on top).
  public static func read(_ path: String = "/proc/self/mountinfo") throws -> [MountEntry] {
    let fd = try sys("open", path) { open(path, O_RDONLY | O_CLOEXEC) }
    defer { close(fd) }
    var text: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
      let n = try chunk.withUnsafeMutableBytes { buffer in
        try sys("read", path) { Glibc.read(fd, buffer.baseAddress, buffer.count) }
      }
      if n == 0 { break }
      text += chunk[0..<n]
    }
    return parse(text)
  }

  /// Parses mountinfo lines: `id parent major:minor root point options [optional...] - type source super-options`.
  /// Lines that do not have this shape are skipped.
  public static func parse(_ text: [UInt8]) -> [MountEntry] {
    var entries: [MountEntry] = []
    for line in text.split(separator: 0x0A) {
      let fields = line.split(separator: 0x20)
      guard let dash = fields.firstIndex(where: { $0.elementsEqual([0x2D]) }), dash >= 6, fields.count >= dash + 3,
        let id = Int(String(decoding: fields[0], as: UTF8.self)),
        let parent = Int(String(decoding: fields[1], as: UTF8.self))
      else { continue }
      entries.append(
        MountEntry(
          id: id, parentID: parent, mountPoint: unescape(fields[4]), fsType: unescape(fields[dash + 1]),
          source: unescape(fields[dash + 2])))
    }
    return entries
  }

  /// The kernel writes space, tab, newline and backslash in these fields as `\ooo`.
  static func unescape(_ field: ArraySlice<UInt8>) -> String {
    guard field.contains(0x5C) else { return String(decoding: field, as: UTF8.self) }
    var out: [UInt8] = []
    var i = field.startIndex
    while i < field.endIndex {
      if field[i] == 0x5C {
        let digits = field[(i + 1)...].prefix(3)
        if digits.count == 3, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x37 }) {
          let value = digits.reduce(0) { $0 * 8 + Int($1 - 0x30) }
          if value <= 0xFF {
            out.append(UInt8(value))
            i += 4
            continue
          }
        }
      }
      out.append(field[i])
      i += 1
    }
    return String(decoding: out, as: UTF8.self)
  }
}
