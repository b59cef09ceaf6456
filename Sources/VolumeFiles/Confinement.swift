import CLinux
import Glibc

// Kernel-enforced confinement: every path below a volume's trusted root is opened with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) relative to a
// descriptor of that root, and every other *at call (mkdirat, symlinkat, renameat,
// unlinkat, readlinkat, fstatat) names one path element under a descriptor opened that
// way. None of them follows a symlink in the last element, so no name can lead out.
//
// openat2 needs Linux 5.6. Where it is missing (an older kernel, or valgrind, which does
// not know the call) the C shim keeps the same rule by walking one element at a time
// with openat(O_NOFOLLOW) and refusing "..", so the confinement never silently goes.

/// O_PATH: a descriptor only for *at calls and openat2, which needs no read permission.
let oPath = clinux_o_path()

/// openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, through
/// `sys`: `relative` may not leave `dirfd` (EXDEV) nor pass any symlink (ELOOP).
func openBeneath(
  _ dirfd: Int32, _ relative: UnsafePointer<CChar>, _ flags: Int32, mode: mode_t = 0,
  path: @autoclosure () -> String
) throws -> Int32 {
  try sys("openat2", path()) { clinux_openat2_beneath(dirfd, relative, flags, mode) }
}

/// Whether `name` is exactly one path element: what *at calls may take as a name.
func isSingleComponent(_ name: Name) -> Bool {
  !name.isEmpty && name.count <= PathRules.maxElementBytes && !name.contains(0) && !name.contains(0x2F)
    && name != [0x2E] && name != [0x2E, 0x2E]
}

/// Calls `body` with `name` as a C string after checking it is one path element, so an
/// *at call relative to a confined descriptor cannot be sent elsewhere by a name.
func withComponent<R>(
  _ name: Name, path: @autoclosure () -> String, _ body: (UnsafePointer<CChar>) throws -> R
) throws -> R {
  guard isSingleComponent(name) else {
    throw VolumeFileError(.invalidPath(path: path(), reason: "is not a single path element"))
  }
  return try withCName(name, body)
}

/// A volume's target directory, found beneath a trusted root.
///
/// `root` is opened as given (it is the operator's `--kubelet-root-dir`, which may itself
/// be a symlink on some distributions); `relative`, the clean path from it to the target,
/// is walked by the kernel with openat2 and may contain no symlink and no `..`. So a
/// target path from an API object, or a directory on the way replaced by a symlink, can
/// never make the driver mount, write, unmount or remove anything outside `root`.
public struct VolumeTarget: Sendable, Hashable, CustomStringConvertible {
  /// The trusted directory, absolute and clean.
  public let root: String
  /// The path from `root` to the target, clean and relative; "" when the target is `root`.
  public let relative: String

  /// The target `path` strictly beneath `root`, or nil when it is not lexically beneath
  /// it. Both must be absolute, clean paths (no `.`, `..`, `//`, trailing `/`, NUL).
  public init?(path: String, under root: String) {
    guard Self.isClean(path), Self.isClean(root) else { return nil }
    let prefix = root == "/" ? "/" : root + "/"
    guard path.utf8.count > prefix.utf8.count, Self.hasBytePrefix(path, prefix) else { return nil }
    self.root = root
    self.relative = String(decoding: path.utf8.dropFirst(prefix.utf8.count), as: UTF8.self)
  }

  /// `relative` (clean, from a VolumeTarget) beneath `root`.
  init(root: String, relative: String) {
    self.root = root
    self.relative = relative
  }

  /// A directory that is itself trusted (opened as given): tests and tools.
  public init(directory: String) {
    root = directory
    relative = ""
  }

  /// The full path, for messages and the mount table.
  public var path: String {
    if relative.isEmpty { return root }
    return root == "/" ? "/" + relative : root + "/" + relative
  }

  public var description: String { path }

  /// Absolute, clean, no NUL: the shape kubelet's paths have.
  public static func isClean(_ path: String) -> Bool {
    // One pass over the contiguous UTF-8 bytes as the kernel reads them, no substrings
    // and no String index arithmetic (callgrind: splitting into elements cost ~50 000
    // instructions per call; iterating `utf8.dropFirst()` still ~5 000).
    var path = path
    return path.withUTF8 { bytes in
      let slash = UInt8(ascii: "/"), dot = UInt8(ascii: ".")
      guard bytes.first == slash else { return false }
      if bytes.count == 1 { return true }
      var length = 0  // of the current element
      var onlyDots = true
      for index in 1..<bytes.count {
        let byte = bytes[index]
        switch byte {
        case 0: return false
        case slash:
          if length == 0 || (onlyDots && length <= 2) { return false }
          length = 0
          onlyDots = true
        default:
          length += 1
          if byte != dot { onlyDots = false }
        }
      }
      return length > 0 && !(onlyDots && length <= 2)
    }
  }

  /// Whether `path` starts with `prefix`, byte for byte (String's `hasPrefix` compares
  /// characters, which costs far more and is not what the kernel compares).
  static func hasBytePrefix(_ path: String, _ prefix: String) -> Bool {
    var path = path
    var prefix = prefix
    return path.withUTF8 { p in
      prefix.withUTF8 { q in p.count >= q.count && (q.isEmpty || memcmp(p.baseAddress!, q.baseAddress!, q.count) == 0) }
    }
  }

  // MARK: - Descriptors

  func openRoot(_ flags: Int32 = oPath) throws -> Int32 {
    try sys("open", root) { open(root, flags | O_DIRECTORY | O_CLOEXEC) }
  }

  /// The target directory. ENOENT when it (or a parent) is missing; `.escapesRoot` when
  /// the walk meets a symlink or would leave `root`.
  func openDirectory(_ flags: Int32 = O_RDONLY) throws -> Int32 {
    if relative.isEmpty { return try openRoot(flags) }
    let rootFD = try openRoot()
    defer { close(rootFD) }
    return try confined {
      try relative.withCString { try openBeneath(rootFD, $0, flags | O_DIRECTORY | O_CLOEXEC, path: path) }
    }
  }

  /// The target's parent directory (an oPath descriptor for *at calls) and the target's
  /// own name in it.
  func openParent() throws -> (fd: Int32, name: Name) {
    precondition(!relative.isEmpty, "a trusted directory has no confined parent")
    let bytes = Array(relative.utf8)
    guard let slash = bytes.lastIndex(of: 0x2F) else { return (try openRoot(), bytes) }
    let rootFD = try openRoot()
    defer { close(rootFD) }
    let parent = Array(bytes[..<slash])
    let fd = try confined {
      try withCName(parent) { try openBeneath(rootFD, $0, oPath | O_DIRECTORY | O_CLOEXEC, path: root + "/" + string(parent)) }
    }
    return (fd, Array(bytes[(slash + 1)...]))
  }

  /// Turns ELOOP and EXDEV from a confined walk into `.escapesRoot`.
  private func confined<R>(_ body: () throws -> R) throws -> R {
    do {
      return try body()
    } catch let error as VolumeFileError where error.errno == ELOOP || error.errno == EXDEV {
      throw VolumeFileError(.escapesRoot(path: path, root: root))
    }
  }

  // MARK: - Operations kubelet's target needs

  /// Whether something is mounted on the target. A missing target or parent is not a
  /// mount point; neither is a symlink in the target's place.
  public func isMountPoint() throws -> Bool {
    let parent: (fd: Int32, name: Name)
    do {
      parent = try openParent()
    } catch let error as VolumeFileError where error.errno == ENOENT || error.errno == ENOTDIR {
      return false
    }
    defer { close(parent.fd) }
    let answer = withCName(parent.name) { clinux_is_mount_root_at(parent.fd, $0) }
    switch answer {
    case 1: return true
    case 0: return false
    case -2: return try Mounts.isMountPoint(path)  // before Linux 5.8: the mount table
    default:
      let code = errno
      if code == ENOENT { return false }
      throw VolumeFileError(.system(call: "statx", path: path, errno: code))
    }
  }

  /// Whether the target directory holds an entry `name` (of any type, never followed).
  public func hasEntry(_ name: String) throws -> Bool {
    let fd: Int32
    do {
      fd = try openDirectory(oPath)
    } catch let error as VolumeFileError where error.errno == ENOENT || error.errno == ENOTDIR {
      return false
    }
    defer { close(fd) }
    var info = stat()
    do {
      _ = try withComponent(Array(name.utf8), path: path + "/" + name) { cName in
        try sys("fstatat", path + "/" + name) { fstatat(fd, cName, &info, AT_SYMLINK_NOFOLLOW) }
      }
      return true
    } catch let error as VolumeFileError where error.errno == ENOENT {
      return false
    }
  }

  /// Creates the target and any missing directories between it and `root` (mode `mode`,
  /// cut by the umask), never through a symlink. Returns what it created, as relative
  /// paths, shallowest first, for `removeCreated`. An existing target must be a directory.
  public func makeDirectory(mode: UInt32 = 0o750) throws -> [String] {
    try makeDirectory(mode: mode, then: nil)
  }

  /// What a first mount does: `makeDirectory`, then `mountTmpfs`, through one descriptor
  /// of the parent (three system calls fewer than the two calls apart). On failure what
  /// was created is removed again.
  public func makeDirectoryAndMountTmpfs(
    sizeBytes: Int, mode: UInt32 = 0o755, group: UInt32? = nil, source: String = "tmpfs"
  ) throws -> [String] {
    let options = try Tmpfs.options(sizeBytes: sizeBytes, mode: mode, group: group)
    return try makeDirectory(mode: 0o750) { parent, cName in
      // Not O_NOFOLLOW: with RESOLVE_NO_SYMLINKS a link in the target's place is ELOOP.
      let fd = try confined { try openBeneath(parent, cName, oPath | O_DIRECTORY | O_CLOEXEC, path: path) }
      defer { close(fd) }
      try mount(through: fd, options: options, source: source)
    }
  }

  /// `then`, when given, runs with the parent's descriptor and the target's name once the
  /// target exists; a directory this call just made is not checked with fstatat first
  /// (`then` opens it with openat2, which refuses a link swapped in, and O_DIRECTORY).
  private func makeDirectory(
    mode: UInt32, then: ((Int32, UnsafePointer<CChar>) throws -> Void)?
  ) throws -> [String] {
    precondition(!relative.isEmpty, "a trusted directory is not created here")
    var created: [String] = []
    let parent: (fd: Int32, name: Name)
    do {
      parent = try openParent()  // kubelet made the parent: the usual case, one openat2
    } catch let error as VolumeFileError where error.errno == ENOENT {
      parent = try makeParents(&created)
    }
    defer { close(parent.fd) }
    do {
      try withComponent(parent.name, path: path) { cName in
        do {
          _ = try sys("mkdirat", path) { mkdirat(parent.fd, cName, mode_t(mode)) }
          created.append(relative)
        } catch let error as VolumeFileError where error.errno == EEXIST {}
        if then == nil || created.last != relative {
          var info = stat()
          _ = try sys("fstatat", path) { fstatat(parent.fd, cName, &info, AT_SYMLINK_NOFOLLOW) }
          switch info.st_mode & S_IFMT {
          case S_IFDIR: break
          case S_IFLNK: throw VolumeFileError(.unexpectedEntry(path: path, reason: "is a symbolic link, not a volume; left in place"))
          default: throw VolumeFileError(.unexpectedEntry(path: path, reason: "exists and is not a directory"))
          }
        }
        try then?(parent.fd, cName)
      }
    } catch {
      removeCreated(created)
      throw error
    }
    return created
  }

  /// Walks from `root` to the target's parent one element at a time, making what is
  /// missing; returns the parent's descriptor and the target's name.
  private func makeParents(_ created: inout [String]) throws -> (fd: Int32, name: Name) {
    var elements = relative.utf8.split(separator: 0x2F).map { Name($0) }
    let name = elements.removeLast()
    var current = try openRoot()
    var walked: Name = []
    do {
      for element in elements {
        walked += walked.isEmpty ? element : [0x2F] + element
        let shown = root + "/" + string(walked)
        let next = try withComponent(element, path: shown) { cName -> Int32 in
          do {
            _ = try sys("mkdirat", shown) { mkdirat(current, cName, 0o750) }
            created.append(string(walked))
          } catch let error as VolumeFileError where error.errno == EEXIST {}
          do {
            return try openBeneath(current, cName, oPath | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, path: shown)
          } catch let error as VolumeFileError where error.errno == ELOOP || error.errno == EXDEV {
            throw VolumeFileError(.escapesRoot(path: path, root: root))
          }
        }
        close(current)
        current = next
      }
    } catch {
      close(current)
      removeCreated(created)
      created = []
      throw error
    }
    return (current, name)
  }

  /// Removes directories `makeDirectory` reported (deepest first), each only if empty.
  public func removeCreated(_ created: [String]) {
    for relativePath in created.reversed() {
      guard !relativePath.isEmpty else { continue }
      try? VolumeTarget(root: root, relative: relativePath).removeDirectory()
    }
  }

  /// Removes the (empty) target directory. Gone already counts as done; anything left in
  /// it throws ENOTEMPTY.
  public func removeDirectory() throws {
    let parent: (fd: Int32, name: Name)
    do {
      parent = try openParent()
    } catch let error as VolumeFileError where error.errno == ENOENT {
      return
    }
    defer { close(parent.fd) }
    do {
      _ = try withComponent(parent.name, path: path) { cName in
        try sys("unlinkat", path) { unlinkat(parent.fd, cName, AT_REMOVEDIR) }
      }
    } catch let error as VolumeFileError where error.errno == ENOENT {
      return
    }
  }

  /// Mounts a tmpfs on the target directory, found through a confined descriptor: the
  /// mount call is given `/proc/self/fd/N` of that descriptor, so no path is resolved
  /// again after the check. Needs /proc mounted.
  public func mountTmpfs(sizeBytes: Int, mode: UInt32 = 0o755, group: UInt32? = nil, source: String = "tmpfs") throws {
    let options = try Tmpfs.options(sizeBytes: sizeBytes, mode: mode, group: group)
    let fd = try openDirectory(oPath)
    defer { close(fd) }
    try mount(through: fd, options: options, source: source)
  }

  private func mount(through fd: Int32, options: String, source: String) throws {
    let procPath = "/proc/self/fd/\(fd)"
    do {
      _ = try sys("mount", path) { Glibc.mount(source, procPath, "tmpfs", Tmpfs.flags, options) }
    } catch let error as VolumeFileError where error.errno == ENOENT {
      throw VolumeFileError(.system(call: "mount (through /proc/self/fd; is /proc mounted?)", path: path, errno: ENOENT))
    }
  }

  /// What NodeUnpublishVolume does: unmounts every mount stacked on the target, then
  /// removes the (then empty) directory; gone already counts as done. As `unmountAll`
  /// then `removeDirectory`, with one confined descriptor of the parent for both and one
  /// statx per round answering "a symlink?" and "mounted?" together; after an unmount the
  /// rmdir itself answers "still mounted?" (EBUSY: another mount was stacked there, the
  /// next round unmounts it). A symlink in the target's place is refused and left alone;
  /// a directory that is not a mount point and not empty fails with ENOTEMPTY (unlinkat).
  public func unmountAndRemove(maxRounds: Int = 16) throws {
    try withParentOfTarget { parent, cName, throughFD in
      var rounds = 0
      while true {
        guard let mounted = try mountState(parent, cName) else { return }
        if mounted {
          try unmountOnce(throughFD, rounds: &rounds, maxRounds: maxRounds)
        }
        do {
          _ = try sys("unlinkat", path) { unlinkat(parent, cName, AT_REMOVEDIR) }
          return
        } catch let error as VolumeFileError where error.errno == ENOENT {
          return
        } catch let error as VolumeFileError where error.errno == EBUSY && mounted {
          continue  // another mount under the one just removed
        }
      }
    }
  }

  /// Unmounts every mount stacked on the target. The parent is found through a confined
  /// descriptor and the target's own name is never followed (UMOUNT_NOFOLLOW), so a
  /// symlink anywhere on the way cannot redirect the unmount. A symlink in the target's
  /// place is refused; a missing target or parent is nothing to do.
  public func unmountAll(maxRounds: Int = 16) throws {
    try withParentOfTarget { parent, cName, throughFD in
      var rounds = 0
      while try mountState(parent, cName) == true {
        try unmountOnce(throughFD, rounds: &rounds, maxRounds: maxRounds)
      }
    }
  }

  /// Runs `body` with the target's parent opened confined, the target's name as a C string
  /// and `/proc/self/fd/<parent>/<name>` (what umount2 is given). A missing parent (or a
  /// file where a directory should be) means there is no target: `body` is not run.
  private func withParentOfTarget(
    _ body: (_ parent: Int32, _ cName: UnsafePointer<CChar>, _ throughFD: String) throws -> Void
  ) throws {
    let parent: (fd: Int32, name: Name)
    do {
      parent = try openParent()
    } catch let error as VolumeFileError where error.errno == ENOENT || error.errno == ENOTDIR {
      return
    }
    defer { close(parent.fd) }
    let throughFD = "/proc/self/fd/\(parent.fd)/" + string(parent.name)
    try withComponent(parent.name, path: path) { cName in try body(parent.fd, cName, throughFD) }
  }

  /// One statx of the target, never followed: nil when it is gone, whether something is
  /// mounted on it otherwise (before Linux 5.8, from the mount table). A symlink in its
  /// place is refused and left alone.
  private func mountState(_ parent: Int32, _ cName: UnsafePointer<CChar>) throws -> Bool? {
    let state = clinux_entry_state_at(parent, cName)
    if state == 0 { return nil }
    if state < 0 {
      throw VolumeFileError(.system(call: "statx", path: path, errno: errno))
    }
    if state & CLINUX_ENTRY_TYPE_MASK == CLINUX_ENTRY_SYMLINK {
      throw VolumeFileError(.unexpectedEntry(path: path, reason: "is a symbolic link, not a volume; left in place"))
    }
    return state & CLINUX_ENTRY_MOUNT_UNKNOWN != 0
      ? try Mounts.isMountPoint(path)  // before Linux 5.8: the mount table
      : state & CLINUX_ENTRY_MOUNT_ROOT != 0
  }

  /// Takes off the top mount, refusing once `maxRounds` unmounts have not cleared the target.
  private func unmountOnce(_ throughFD: String, rounds: inout Int, maxRounds: Int) throws {
    if rounds >= maxRounds {
      throw VolumeFileError(.unexpectedEntry(path: path, reason: "stays mounted after \(rounds) unmounts"))
    }
    try Tmpfs.unmount(throughFD)
    rounds += 1
  }
}
