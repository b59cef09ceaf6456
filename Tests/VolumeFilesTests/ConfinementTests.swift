import Glibc
import Synchronization
import Testing
import CLinux
import VolumeFiles

@Suite struct VolumeTargetPathTests {
  @Test func aTargetMustBeLexicallyBeneathItsRoot() {
    #expect(VolumeTarget(path: "/k/pods/u/mount", under: "/k")?.relative == "pods/u/mount")
    #expect(VolumeTarget(path: "/pods/u", under: "/")?.relative == "pods/u")
    for bad in ["/k", "/kk/pods/u", "/k/../etc", "/k/pods/./u", "/k//pods", "/k/pods/", "relative", "/k/a\u{0}b"] {
      #expect(VolumeTarget(path: bad, under: "/k") == nil, "\(bad)")
    }
    #expect(VolumeTarget(path: "/k/pods/u", under: "/k/") == nil, "the root must be clean too")
  }
}

/// A scratch kubelet root with `pods/` in it and a sibling `outside/` directory that
/// nothing may ever be written to.
struct Scratch {
  let base: String
  var root: String { base + "/kubelet" }
  var outside: String { base + "/outside" }

  init() throws {
    base = try makeTempDirectory()
    mkdir(root, 0o755)
    mkdir(root + "/pods", 0o755)
    mkdir(outside, 0o755)
  }

  func target(_ uid: String) -> VolumeTarget {
    VolumeTarget(path: "\(root)/pods/\(uid)/volumes/kubernetes.io~csi/v/mount", under: root)!
  }

  /// Unmounts what a test left mounted, then removes everything.
  func remove() {
    for uid in ["u1", "u2", "u4", "u5", "race"] { try? target(uid).unmountAll() }
    _ = system("rm -rf '\(base)'")
  }
}

@Suite(.enabled(if: canMount, "NOT RUN: mounts tmpfs, which needs root (run the tests as root)"), .serialized)
struct ConfinementTests {
  func isEscape(_ error: any Error) -> Bool {
    if let error = error as? VolumeFileError, case .escapesRoot = error.kind { return true }
    return false
  }

  @Test func aSymlinkedParentCannotLeadOutOfTheRoot() throws {
    let scratch = try Scratch()
    defer { scratch.remove() }
    // kubelet's pod directory replaced by a link to a directory outside the root.
    #expect(symlink(scratch.outside, scratch.root + "/pods/evil") == 0)
    let target = scratch.target("evil")
    #expect(performing: { _ = try target.makeDirectory() }, throws: isEscape)
    #expect(performing: { try target.mountTmpfs(sizeBytes: 1 << 20) }, throws: isEscape)
    #expect(performing: { _ = try target.isMountPoint() }, throws: isEscape)
    #expect(performing: { try target.unmountAll() }, throws: isEscape)
    #expect(performing: { try target.removeDirectory() }, throws: isEscape)
    #expect(performing: { _ = try AtomicWriter(target: target).write([SecretFile(path: "a", mode: 0, contents: [1])], defaultMode: 0o644) }, throws: isEscape)
    #expect(try listing(scratch.outside) == [])
  }

  @Test func aTargetIsMountedUnmountedAndRemovedThroughDescriptors() throws {
    let scratch = try Scratch()
    defer { scratch.remove() }
    let target = scratch.target("u1")
    let created = try target.makeDirectory()
    #expect(created.first == "pods/u1", "\(created)")
    #expect(try target.isMountPoint() == false)
    try target.mountTmpfs(sizeBytes: 1 << 20, mode: 0o2755, group: 4321)
    #expect(try target.isMountPoint())
    let options = try #require(try mountOptions(target.path))
    for option in ["nosuid", "nodev", "noexec", "size=1024k", "gid=4321", "mode=2755"] {
      #expect(options.contains(option), "\(option) not in \(options)")
    }
    try target.unmountAll()
    #expect(try target.isMountPoint() == false)
    try target.removeDirectory()
    target.removeCreated(created)
    #expect(try listing(scratch.root + "/pods") == [])
  }

  /// A first mount's one pass through the parent: the target made and a tmpfs mounted on
  /// it; a symlink in the target's place is refused and left; an existing directory is used.
  @Test func makeDirectoryAndMountTmpfsThroughOneParent() throws {
    let scratch = try Scratch()
    defer { scratch.remove() }
    let target = scratch.target("u5")
    let created = try target.makeDirectoryAndMountTmpfs(sizeBytes: 1 << 20, mode: 0o2755, group: 4321)
    #expect(created.first == "pods/u5", "\(created)")
    #expect(try target.isMountPoint())
    let options = try #require(try mountOptions(target.path))
    for option in ["nosuid", "nodev", "noexec", "size=1024k", "gid=4321", "mode=2755"] {
      #expect(options.contains(option), "\(option) not in \(options)")
    }
    try target.unmountAndRemove()
    #expect(try target.makeDirectory() == [target.relative])  // the parents stayed: only the target is made
    #expect(try target.makeDirectoryAndMountTmpfs(sizeBytes: 1 << 20) == [])  // it exists: used as it is
    #expect(try target.isMountPoint())
    try target.unmountAndRemove()

    #expect(symlink(scratch.outside, target.path) == 0)
    #expect(throws: VolumeFileError.self) { _ = try target.makeDirectoryAndMountTmpfs(sizeBytes: 1 << 20) }
    #expect(linkTarget(target.path) == scratch.outside)
    #expect(try Mounts.isMountPoint(scratch.outside) == false)
    #expect(try listing(scratch.outside) == [])
    unlink(target.path)
    target.removeCreated(created)
    #expect(try listing(scratch.root + "/pods") == [])
  }

  /// NodeUnpublishVolume's one pass: every stacked mount unmounted (the rmdir's EBUSY
  /// says another is there), then the directory removed; gone already is done; a
  /// directory with something in it that is not a mount is left with ENOTEMPTY.
  @Test func unmountAndRemoveTakesOffStackedMountsThenTheDirectory() throws {
    let scratch = try Scratch()
    defer { scratch.remove() }
    let target = scratch.target("u4")
    _ = try target.makeDirectory()
    for _ in 0..<3 { try target.mountTmpfs(sizeBytes: 1 << 20) }
    try target.unmountAndRemove()
    #expect(try target.isMountPoint() == false)
    #expect(fileStat(target.path) == nil)
    try target.unmountAndRemove()  // gone: nothing to do
    let parent = scratch.root + "/pods/u4/volumes/kubernetes.io~csi/v"
    #expect(try listing(parent) == [])

    _ = try target.makeDirectory()
    let fd = open(target.path + "/left", O_WRONLY | O_CREAT | O_EXCL, 0o600)
    #expect(fd >= 0)
    close(fd)
    #expect(performing: { try target.unmountAndRemove() }, throws: { ($0 as? VolumeFileError)?.errno == ENOTEMPTY })
    #expect(fileStat(target.path + "/left")?.isRegular == true)
    #expect(try target.isMountPoint() == false)
  }

  @Test func aSymlinkInTheTargetsPlaceIsRefusedAndLeftAlone() throws {
    let scratch = try Scratch()
    defer { scratch.remove() }
    let target = scratch.target("u2")
    _ = try target.makeDirectory()
    rmdir(target.path)
    #expect(symlink(scratch.outside, target.path) == 0)
    #expect(throws: VolumeFileError.self) { _ = try target.makeDirectory() }
    #expect(throws: VolumeFileError.self) { try target.unmountAll() }
    #expect(throws: VolumeFileError.self) { try target.unmountAndRemove() }
    #expect(throws: VolumeFileError.self) { try target.mountTmpfs(sizeBytes: 1 << 20) }
    #expect(try target.isMountPoint() == false)
    #expect(linkTarget(target.path) == scratch.outside)
    #expect(try listing(scratch.outside) == [])
  }

  @Test func withAGroupFilesAndDirectoriesAreTheGroupsAndGroupReadable() throws {
    try withVolume { root in
      let files = [
        SecretFile(path: "owner-only", mode: 0o400, contents: bytes("a")),
        SecretFile(path: "read-only", mode: 0o440, contents: bytes("b")),
        SecretFile(path: "db/password", mode: 0o600, contents: bytes("c")),
        SecretFile(path: "default", mode: 0, contents: bytes("d")),
      ]
      #expect(try AtomicWriter(directory: root).write(files, defaultMode: 0o644, group: 2000) == .written)
      let ts = try dataTarget(root)
      for (path, mode) in [("owner-only", 0o440), ("read-only", 0o440), ("db/password", 0o640), ("default", 0o644)] {
        var info = stat()
        #expect(lstat("\(root)/\(ts)/\(path)", &info) == 0)
        #expect(info.st_gid == 2000, "\(path)")
        #expect(info.st_mode & 0o7777 == mode_t(mode), "\(path): 0o\(String(info.st_mode & 0o7777, radix: 8))")
      }
      for dir in [ts, "\(ts)/db"] {
        var info = stat()
        #expect(lstat("\(root)/\(dir)", &info) == 0)
        #expect(info.st_gid == 2000 && info.st_mode & 0o7777 == 0o2755, "\(dir)")
      }
      // The same content again is unchanged: the stored modes include the group bits.
      #expect(try AtomicWriter(directory: root).write(files, defaultMode: 0o644, group: 2000) == .unchanged)
    }
  }

  /// A container (or anyone with write access to the volume) keeps swapping symlinks to
  /// an outside directory in for `..data`, `..data_tmp`, the top-level links and any
  /// directory inside a timestamp directory while the writer writes: nothing may ever
  /// land outside, and every write either succeeds or fails without writing elsewhere.
  @Test func symlinksSwappedInDuringWritesNeverLeadOutside() throws {
    let scratch = try Scratch()
    defer { scratch.remove() }
    let target = scratch.target("race")
    _ = try target.makeDirectory()
    try target.mountTmpfs(sizeBytes: 4 << 20)
    let volume = target.path
    let outside = scratch.outside
    let stop = Atomic<Bool>(false)
    let rounds = Atomic<Int>(0)
    let thread = try startThread {
      var round = 0
      while !stop.load(ordering: .relaxed) {
        round += 1
        rounds.add(1, ordering: .relaxed)
        let link = "\(volume)/.swap-\(round % 4)"
        unlink(link)
        symlink(outside, link)
        // Over the writer's own names: rename is atomic, so the writer sees a link there.
        for name in ["..data", "..data_tmp", "db", "a"] {
          rename(link, "\(volume)/\(name)")
          symlink(outside, link)
        }
        // Into the newest timestamp directory: its `db` subdirectory becomes a link.
        if let entries = try? listing(volume) {
          for entry in entries where entry.hasPrefix("..2") {
            let db = "\(volume)/\(entry)/db"
            rename(db, "\(volume)/\(entry)/.old-db")
            symlink(outside, db)
          }
        }
        unlink(link)
      }
    }
    var written = 0
    var refused = 0
    for i in 0..<300 {
      let files = [
        SecretFile(path: "a", mode: 0o644, contents: bytes("alpha \(i)")),
        SecretFile(path: "db/password", mode: 0o600, contents: bytes("secret \(i)")),
        SecretFile(path: "db/user", mode: 0o600, contents: bytes("user \(i)")),
      ]
      do {
        _ = try AtomicWriter(target: target).write(files, defaultMode: 0o644)
        written += 1
      } catch is VolumeFileError {
        refused += 1
      }
    }
    stop.store(true, ordering: .relaxed)
    pthread_join(thread, nil)
    #expect(try listing(outside) == [], "nothing may be written outside the volume")
    #expect(rounds.load(ordering: .relaxed) > 0, "the swapping thread must have run during the writes")
    #expect(refused > 0, "links in the writer's way are refused, not followed (\(written) writes succeeded)")
    try target.unmountAll()
  }
}

/// The options of the mount at `path` in /proc/self/mountinfo (mount and super options).
func mountOptions(_ path: String) throws -> String? {
  guard let file = fopen("/proc/self/mountinfo", "r") else { throw TestFailure("cannot read mountinfo") }
  defer { fclose(file) }
  var found: String?
  var line: UnsafeMutablePointer<CChar>? = nil
  var capacity = 0
  defer { free(line) }
  while getline(&line, &capacity, file) > 0 {
    let text = String(cString: line!)
    let fields = text.split(separator: " ")
    if fields.count > 5, fields[4] == path { found = text }
  }
  return found
}

/// The walk the C shim falls back to where openat2 is missing (old kernels, valgrind):
/// the same rule as openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS.
@Suite struct OpenatBeneathWalkTests {
  private func walk(_ dir: Int32, _ path: String, _ flags: Int32 = O_RDONLY | O_DIRECTORY | O_CLOEXEC) -> (fd: Int32, errno: Int32) {
    let fd = clinux_openat_beneath_walk(dir, path, flags, 0)
    let code = errno
    if fd >= 0 { close(fd) }
    return (fd, fd >= 0 ? 0 : code)
  }

  @Test func opensBeneathAndRefusesLinksDotDotAndAbsolutePaths() throws {
    let scratch = try Scratch()
    defer { scratch.remove() }
    #expect(mkdir(scratch.root + "/pods/a", 0o755) == 0 && mkdir(scratch.root + "/pods/a/b", 0o755) == 0)
    #expect(symlink(scratch.outside, scratch.root + "/pods/out") == 0)
    #expect(symlink("b", scratch.root + "/pods/a/link") == 0)
    let root = open(scratch.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    #expect(root >= 0)
    defer { close(root) }

    #expect(walk(root, "pods/a/b").fd >= 0)
    #expect(walk(root, "pods/a/b", clinux_o_path() | O_DIRECTORY | O_CLOEXEC).fd >= 0)
    #expect(walk(root, "pods/out").errno == ELOOP, "a symlink as the last element")
    #expect(walk(root, "pods/out/x").errno == ELOOP, "a symlink on the way")
    #expect(walk(root, "pods/a/link", clinux_o_path() | O_CLOEXEC).errno == ELOOP, "O_PATH must not open the link itself")
    #expect(walk(root, "pods/../pods/a").errno == EXDEV)
    #expect(walk(root, "pods/./a").errno == EXDEV)
    #expect(walk(root, "pods//a").errno == EXDEV)
    #expect(walk(root, scratch.root + "/pods/a").errno == EXDEV, "absolute")
    #expect(walk(root, "pods/missing").errno == ENOENT)

    // Creating a file: only beneath, and never through a link.
    let created = clinux_openat_beneath_walk(root, "pods/a/b/new", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
    #expect(created >= 0)
    if created >= 0 { close(created) }
    #expect(access(scratch.root + "/pods/a/b/new", F_OK) == 0)
    #expect(walk(root, "pods/out/new", O_WRONLY | O_CREAT | O_CLOEXEC).errno == ELOOP)
    #expect(access(scratch.outside + "/new", F_OK) != 0, "nothing may appear outside")
  }
}
