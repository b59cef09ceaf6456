import Glibc

/// Writes a volume's files so that readers never see a mix of old and new ones.
///
/// Layout (as kubelet's atomic writer, so tools that watch `..data` keep working):
///
///     ..2026_11_27_03_40_00.123456789_1a2b3c4d/   the files, nested dirs 0755
///     ..data -> ..2026_11_27_03_40_00.123456789_1a2b3c4d
///     password -> ..data/password
///     db -> ..data/db
///
/// An update builds a new timestamp directory, renames a temporary link `..data_tmp` over
/// `..data` (the one atomic step), fixes the top-level links and removes the old directory.
/// A reader that resolves `..data` once sees one complete version.
///
/// Confinement is the kernel's: the volume is opened with openat2 beneath its trusted
/// root (`VolumeTarget`), every file and directory under it with openat2 and
/// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS relative to an open
/// directory, and every other call (mkdirat, symlinkat, renameat, unlinkat, readlinkat)
/// takes one checked path element under such a directory. So neither a provider's file
/// name nor a symlink planted in the volume can redirect a read or a write. One writer per
/// directory at a time: the caller serialises writes to the same volume.
///
/// With a `group` (the pod's fsGroup, CSI volume_mount_group) files and directories are
/// group-owned by it and made group-readable as kubelet does for fsGroup: files get
/// mode | 0o440, directories mode | 0o550 plus set-group-ID (0o755 becomes 0o2755).
public struct AtomicWriter: Sendable {
  /// Where the volume is: its root, normally a tmpfs mount point, under a trusted directory.
  public let target: VolumeTarget
  /// The volume root's path, for messages.
  public var directory: String { target.path }

  /// A volume whose directory is trusted as given (tests and tools).
  public init(directory: String) {
    self.target = VolumeTarget(directory: directory)
  }

  /// A volume reached from its trusted root with openat2 (the driver's case).
  public init(target: VolumeTarget) {
    self.target = target
  }

  /// Validates every file first (`PathRules`, duplicates, a path that is both a file and a
  /// directory such as `a` and `a/b`, modes at most 0o7777) and writes nothing if any fails.
  /// Returns `.unchanged`, rewriting nothing, when paths, modes and bytes equal what `..data`
  /// holds; otherwise builds and swaps in a new version and returns `.written`.
  /// Leftovers of an interrupted write (`..data_tmp`, orphan timestamp directories, missing
  /// or stale top-level links) are repaired in both cases.
  ///
  /// `emptyVolume`: the caller has just mounted the volume (a fresh tmpfs) and nothing else
  /// writes to it, so the writer does not list it (two getdents64 fewer per first mount).
  /// Nothing there is seen, compared or repaired: a top-level name already there fails
  /// the write (EEXIST from symlinkat), and the caller removes such a volume.
  public func write(
    _ files: [SecretFile], defaultMode: UInt32, group: UInt32? = nil, emptyVolume: Bool = false
  ) throws -> WriteOutcome {
    let plan = try Plan(files, defaultMode: defaultMode, group: group)
    let rootDirectory = OpenDirectory(fd: try target.openDirectory())
    defer { rootDirectory.close() }
    let root = rootDirectory.fd
    let scan = emptyVolume ? RootScan() : try scanRoot(rootDirectory)

    // Refuse before touching anything: these entries would block the top-level links.
    for name in plan.topLevel where scan.others.contains(name) {
      throw VolumeFileError(.unexpectedEntry(
        path: fullPath(name), reason: "exists in the volume and is not a link the writer made"))
    }

    // Any failure to read the current version just means it gets rewritten.
    var same = false
    if let current = scan.dataTarget, var tree = try? readTree(root, current) {
      same = tree == plan.stored
      // Clear the read-back secret bytes in place: walking by index keeps the dictionary
      // and its arrays uniquely referenced, so no copy-on-write copy is made first.
      var index = tree.values.startIndex
      while index != tree.values.endIndex {
        tree.values[index].contents.zeroize()
        tree.values.formIndex(after: &index)
      }
    }
    if same {
      try removeLeftovers(root, scan)
      try updateLinks(root, scan, plan)
      return .unchanged
    }

    // Free leftovers first: on a small tmpfs the space may be needed for the new copy.
    try removeLeftovers(root, scan)
    let newName = try buildVersion(root, plan)
    do {
      _ = try withCName(newName) { target in
        try sys("symlinkat", fullPath(Self.tmpLink)) { symlinkat(target, root, Self.tmpLinkC) }
      }
      _ = try sys("renameat", fullPath(Self.dataLink)) { renameat(root, Self.tmpLinkC, root, Self.dataLinkC) }
    } catch {
      _ = unlinkat(root, Self.tmpLinkC, 0)
      try? removeEntry(at: root, newName, type: .directory, path: fullPath(newName))
      throw error
    }
    try updateLinks(root, scan, plan)
    if let old = scan.currentEntry {
      try removeEntry(at: root, old.name, type: old.type, path: fullPath(old.name))
    }
    return .written
  }

  /// What `..data` holds now, sorted by path; empty if nothing was written yet.
  public func currentFiles() throws -> [SecretFile] {
    let rootDirectory = OpenDirectory(fd: try self.target.openDirectory())
    defer { rootDirectory.close() }
    let root = rootDirectory.fd
    let target: Name
    do {
      target = try readLink(at: root, Self.dataLinkC, path: fullPath(Self.dataLink))
    } catch let error as VolumeFileError where error.errno == ENOENT {
      return []
    }
    guard Self.isReservedName(target) else {
      throw VolumeFileError(.unexpectedEntry(
        path: fullPath(Self.dataLink), reason: "does not point to a timestamp directory"))
    }
    return try readTree(root, target)
      .sorted { $0.key.lexicographicallyPrecedes($1.key) }
      .map { key, stored in
        guard let path = String(validating: key, as: UTF8.self) else {
          throw VolumeFileError(.unexpectedEntry(path: fullPath(target + [0x2F] + key), reason: "is not UTF-8"))
        }
        return SecretFile(path: path, mode: stored.mode, contents: stored.contents)
      }
  }

  // MARK: - Names

  static let dataLink: Name = Array("..data".utf8)
  static let tmpLink: Name = Array("..data_tmp".utf8)
  static let dataLinkC = "..data"
  static let tmpLinkC = "..data_tmp"
  static let linkPrefix: Name = Array("..data/".utf8)

  /// A name only the writer uses: one element starting with `..`, other than `..` itself.
  static func isReservedName(_ name: Name) -> Bool {
    name.count > 2 && name.starts(with: [0x2E, 0x2E]) && !name.contains(0x2F)
  }

  func fullPath(_ relative: Name) -> String { directory + "/" + string(relative) }

  // MARK: - Reading what is there

  struct RootScan {
    /// Where `..data` points, if it is a symlink to a reserved name.
    var dataTarget: Name?
    /// The entry `..data` points to, if it exists.
    var currentEntry: DirectoryEntry?
    /// `..`-names other than `..data` and its target: interrupted writes, or a `..data`
    /// that is not a usable link. All are the writer's own and safe to remove.
    var leftovers: [DirectoryEntry] = []
    /// Top-level names that are the writer's links (`name -> ..data/name`).
    var links: Set<Name> = []
    /// Top-level names that are anything else; the writer leaves them alone.
    var others: Set<Name> = []
  }

  func scanRoot(_ listing: OpenDirectory) throws -> RootScan {
    let root = listing.fd
    var scan = RootScan()
    var reserved: [DirectoryEntry] = []
    for entry in try listing.entries(path: directory) {
      if entry.name == Self.dataLink {
        let target = entry.type == .symlink
          ? try readLink(at: root, Self.dataLinkC, path: fullPath(entry.name)) : nil
        if let target, Self.isReservedName(target), target != Self.dataLink, target != Self.tmpLink {
          scan.dataTarget = target
        } else {
          reserved.append(entry)
        }
      } else if entry.name.starts(with: [0x2E, 0x2E]) {
        reserved.append(entry)
      } else if entry.type == .symlink,
        try withComponent(entry.name, path: fullPath(entry.name), { try readLink(at: root, $0, path: fullPath(entry.name)) })
          == Self.linkPrefix + entry.name
      {
        scan.links.insert(entry.name)
      } else {
        scan.others.insert(entry.name)
      }
    }
    scan.currentEntry = reserved.first { $0.name == scan.dataTarget }
    scan.leftovers = reserved.filter { $0.name != scan.dataTarget }
    return scan
  }

  struct Stored: Equatable {
    var mode: UInt32
    var contents: [UInt8]
  }

  /// Every regular file under the timestamp directory `name`, keyed by relative path.
  func readTree(_ root: Int32, _ name: Name) throws -> [Name: Stored] {
    var result: [Name: Stored] = [:]
    try withComponent(name, path: fullPath(name)) { cName in
      let top = try OpenDirectory(at: root, cName, path: fullPath(name))
      defer { top.close() }
      try readTree(top, prefix: [], base: name + [0x2F], into: &result)
    }
    return result
  }

  private func readTree(_ dir: OpenDirectory, prefix: Name, base: Name, into result: inout [Name: Stored]) throws {
    for entry in try dir.entries(path: fullPath(base + prefix)) {
      let key = prefix + entry.name
      switch entry.type {
      case .file:
        let (mode, contents) = try readRegularFile(at: dir.fd, entry.name, path: fullPath(base + key))
        result[key] = Stored(mode: mode, contents: contents)
      case .directory:
        let sub = try withComponent(entry.name, path: fullPath(base + key)) {
          try OpenDirectory(at: dir.fd, $0, path: fullPath(base + key))
        }
        defer { sub.close() }
        try readTree(sub, prefix: key + [0x2F], base: base, into: &result)
      case .symlink, .other:
        throw VolumeFileError(.unexpectedEntry(
          path: fullPath(base + key), reason: "is neither a regular file nor a directory"))
      }
    }
  }

  // MARK: - Changing it

  private func removeLeftovers(_ root: Int32, _ scan: RootScan) throws {
    for entry in scan.leftovers {
      try removeEntry(at: root, entry.name, type: entry.type, path: fullPath(entry.name))
    }
  }

  /// Creates the missing top-level links and removes the writer's links to names that are gone.
  private func updateLinks(_ root: Int32, _ scan: RootScan, _ plan: Plan) throws {
    for name in plan.topLevel where !scan.links.contains(name) {
      _ = try withCName(Self.linkPrefix + name) { target in
        try withComponent(name, path: fullPath(name)) { cName in
          try sys("symlinkat", fullPath(name)) { symlinkat(target, root, cName) }
        }
      }
    }
    for name in scan.links where !plan.topLevelSet.contains(name) {
      _ = try withComponent(name, path: fullPath(name)) { cName in
        try sys("unlinkat", fullPath(name)) { unlinkat(root, cName, 0) }
      }
    }
  }

  /// Writes every file into a fresh timestamp directory and returns its name. On failure the
  /// directory is removed again, so the volume holds exactly what it held before.
  private func buildVersion(_ root: Int32, _ plan: Plan) throws -> Name {
    var name: Name
    var attempts = 0
    while true {
      name = Self.timestampName()
      do {
        _ = try withComponent(name, path: fullPath(name)) { cName in
          try sys("mkdirat", fullPath(name)) { mkdirat(root, cName, plan.directoryMode) }
        }
        break
      } catch let error as VolumeFileError where error.errno == EEXIST && attempts < 8 {
        attempts += 1  // same nanosecond and same suffix (another process's leftover): vanishingly rare
      }
    }
    let base = name + [0x2F]
    // The open directories from the timestamp dir down to the current file's parent.
    // Files are sorted by path bytes, so everything under one directory comes in one run:
    // a directory left once is never needed again, and open descriptors stay bounded by
    // the nesting depth, not by the number of directories.
    var chain: [(name: Name, fd: Int32)] = []
    defer { for link in chain { close(link.fd) } }
    var current = plan.files.first?.path ?? ""
    do {
      chain.append(([], try openDirectoryForWriting(root, name, plan, path: fullPath(name))))
      for file in plan.files {
        current = file.path
        // Keep the open directories this file shares with the previous one.
        var depth = 0
        while depth < file.directories.count, depth + 1 < chain.count,
          chain[depth + 1].name == file.directories[depth]
        {
          depth += 1
        }
        while chain.count > depth + 1 { close(chain.removeLast().fd) }
        for index in depth..<file.directories.count {
          let component = file.directories[index]
          let parent = chain[chain.count - 1].fd
          let path = { self.fullPath(base + Array(file.directories[...index].joined(separator: [0x2F]))) }
          _ = try withComponent(component, path: path()) { cName in
            try sys("mkdirat", path()) { mkdirat(parent, cName, plan.directoryMode) }
          }
          chain.append((component, try openDirectoryForWriting(parent, component, plan, path: path())))
        }
        let parent = chain[chain.count - 1].fd
        // Created with its mode: the version directory is not reachable through `..data`
        // until the swap, so no reader depends on the file being complete before then
        // (kubelet's writer creates files with their mode too).
        let fd = try withComponent(file.name, path: fullPath(base + file.key)) { cName in
          try openBeneath(
            parent, cName, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode: mode_t(file.mode),
            path: fullPath(base + file.key))
        }
        defer { close(fd) }
        try writeAll(fd, file.contents, path: fullPath(base + file.key))
        if let group = plan.group {
          _ = try sys("fchown", fullPath(base + file.key)) { fchown(fd, uid_t.max, group) }
        }
        // Only when open's mode may have been cut: by the umask, or set-id bits (which a
        // write or the chown above may clear). After writing and chown, so nothing clears it.
        if ProcessUmask.mayCut(file.mode) {
          _ = try sys("fchmod", fullPath(base + file.key)) { fchmod(fd, mode_t(file.mode)) }
        }
      }
    } catch {
      for link in chain { close(link.fd) }
      chain = []
      try? removeEntry(at: root, name, type: .directory, path: fullPath(name))
      if let code = (error as? VolumeFileError)?.errno, code == ENOSPC || code == EDQUOT || code == EFBIG {
        throw VolumeFileError(.tooLarge(
          path: directory + "/" + current, totalBytes: plan.totalBytes, fileCount: plan.files.count))
      }
      throw error
    }
    return name
  }

  /// Opens a directory the writer just made (mkdirat gave it 0755 less the umask) and makes
  /// its mode 0755 whatever the umask (with a group: owned by it, 0o2755, which mkdir
  /// cannot give: it ignores set-group-ID).
  private func openDirectoryForWriting(_ parent: Int32, _ name: Name, _ plan: Plan, path: @autoclosure () -> String) throws -> Int32 {
    let fd = try withComponent(name, path: path()) { cName in
      try openBeneath(parent, cName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, path: path())
    }
    do {
      if let group = plan.group {
        _ = try sys("fchown", path()) { fchown(fd, uid_t.max, group) }
      }
      if ProcessUmask.mayCut(UInt32(plan.directoryMode)) {
        _ = try sys("fchmod", path()) { fchmod(fd, plan.directoryMode) }
      }
    } catch {
      close(fd)
      throw error
    }
    return fd
  }

  private func writeAll(_ fd: Int32, _ bytes: [UInt8], path: @autoclosure () -> String) throws {
    try bytes.withUnsafeBytes { buffer in
      var offset = 0
      while offset < buffer.count {
        offset += try sys("write", path()) { Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset) }
      }
    }
  }

  /// `..YYYY_MM_DD_HH_MM_SS.nanoseconds_suffix` in UTC: sorts by time like kubelet's names;
  /// the suffix (`UniqueSuffix`: unique in this process, no system call) keeps two writes
  /// within one clock tick apart.
  static func timestampName() -> Name {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    let seconds = max(0, Int(now.tv_sec))
    let (days, secondOfDay) = seconds.quotientAndRemainder(dividingBy: 86400)
    let (year, month, day) = civilDate(daysSinceEpoch: days)
    // Built as bytes: string interpolation of padded numbers cost ~10 000 instructions.
    var name: Name = [0x2E, 0x2E]  // ".."
    name.reserveCapacity(40)
    func append(_ value: Int, _ width: Int, then separator: UInt8?) {
      // At least `width` decimal digits, zero-padded; no allocation.
      var count = 1
      var power = 1
      while value / power >= 10 {
        power *= 10
        count += 1
      }
      for _ in count..<max(width, count) { name.append(0x30) }
      var rest = value
      while power > 0 {
        name.append(0x30 + UInt8(rest / power))
        rest %= power
        power /= 10
      }
      if let separator { name.append(separator) }
    }
    append(year, 4, then: 0x5F)
    append(month, 2, then: 0x5F)
    append(day, 2, then: 0x5F)
    append(secondOfDay / 3600, 2, then: 0x5F)
    append(secondOfDay / 60 % 60, 2, then: 0x5F)
    append(secondOfDay % 60, 2, then: 0x2E)
    append(Int(now.tv_nsec), 9, then: 0x5F)
    name.append(contentsOf: UniqueSuffix.next().utf8)
    return name
  }

  /// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
  /// days-to-civil). Done here because gmtime_r takes glibc's timezone lock and may read
  /// /etc/localtime.
  static func civilDate(daysSinceEpoch days: Int) -> (year: Int, month: Int, day: Int) {
    let shifted = days + 719_468  // days since 0000-03-01
    let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
    let dayOfEra = shifted - era * 146_097
    let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
    let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
    let monthFromMarch = (5 * dayOfYear + 2) / 153
    let day = dayOfYear - (153 * monthFromMarch + 2) / 5 + 1
    let month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9
    return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
  }
}

// MARK: - The validated request

/// The files to write, validated and normalised (mode 0 resolved), sorted by path bytes.
struct Plan {
  struct File {
    var path: String
    var key: Name
    /// Path elements before the file name.
    var directories: [Name]
    var name: Name
    var mode: UInt32
    var contents: [UInt8]
  }

  var files: [File] = []
  /// First path elements, each once, in path order.
  var topLevel: [Name] = []
  var topLevelSet: Set<Name> = []
  var stored: [Name: AtomicWriter.Stored] = [:]
  var totalBytes = 0
  /// The pod's fsGroup: files and directories are owned by it and group-readable.
  var group: UInt32?
  var directoryMode: mode_t { group == nil ? 0o755 : 0o2755 }

  init(_ input: [SecretFile], defaultMode: UInt32, group: UInt32? = nil) throws {
    self.group = group
    var directoryUsers: [Name: String] = [:]  // directory path -> one file inside it
    for secret in input {
      try PathRules.validate(secret.path)
      var mode = secret.mode == 0 ? defaultMode : secret.mode
      guard mode <= 0o7777 else { throw VolumeFileError(.invalidMode(path: secret.path, mode: mode)) }
      // kubelet's fsGroup rule for read-only volumes: owner and group may read.
      if group != nil { mode |= 0o440 }
      let key = Array(secret.path.utf8)
      guard stored[key] == nil else {
        throw VolumeFileError(.invalidPath(path: secret.path, reason: "is listed more than once"))
      }
      stored[key] = AtomicWriter.Stored(mode: mode, contents: secret.contents)
      var elements = key.split(separator: 0x2F).map { Name($0) }
      let name = elements.removeLast()
      var prefix: Name = []
      for element in elements {
        prefix += element
        directoryUsers[prefix] = directoryUsers[prefix] ?? secret.path
        prefix.append(0x2F)
      }
      files.append(
        File(path: secret.path, key: key, directories: elements, name: name, mode: mode, contents: secret.contents))
      totalBytes += secret.contents.count
    }
    for (directory, user) in directoryUsers where stored[directory] != nil {
      throw VolumeFileError(.invalidPath(
        path: string(directory), reason: "is both a file and a directory (\(quoted(user)) is inside it)"))
    }
    files.sort { $0.key.lexicographicallyPrecedes($1.key) }
    for file in files {
      let first = file.directories.first ?? file.name
      if topLevelSet.insert(first).inserted { topLevel.append(first) }
    }
  }
}
