import Glibc
import Testing
import VolumeFiles

@Suite(.enabled(if: canMount, "NOT RUN: mounts tmpfs, which needs root (run the tests as root)"))
struct TmpfsTests {
  /// The /proc/self/mountinfo line for `mountPoint`, split into its fields.
  struct MountInfo {
    var mountOptions: [String]
    var fsType: String
    var superOptions: [String]
  }

  func mountInfo(_ mountPoint: String) throws -> MountInfo? {
    let table = try #require(try contents("/proc/self/mountinfo"))
    var found: MountInfo?
    for line in String(decoding: table, as: UTF8.self).split(separator: "\n") {
      // id parent major:minor root mount-point options [optional...] - fstype source super-options
      let halves = line.split(separator: " - ", maxSplits: 1).map { $0.split(separator: " ") }
      guard halves.count == 2, halves[0].count >= 6, halves[1].count >= 3, halves[0][4] == mountPoint else { continue }
      found = MountInfo(
        mountOptions: halves[0][5].split(separator: ",").map(String.init),
        fsType: String(halves[1][0]),
        superOptions: halves[1][2].split(separator: ",").map(String.init))  // keep the last: the top mount
    }
    return found
  }

  @Test func mountsTmpfsWithFlagsSizeAndMode() throws {
    let directory = try makeTempDirectory()
    defer { rmdir(directory) }
    try Tmpfs.mount(at: directory, sizeBytes: 64 * 1024, mode: 0o700)
    defer { try? Tmpfs.unmount(directory) }

    let info = try #require(try mountInfo(directory))
    #expect(info.fsType == "tmpfs")
    for flag in ["nosuid", "nodev", "noexec"] {
      #expect(info.mountOptions.contains(flag), "\(info.mountOptions)")
    }
    #expect(info.superOptions.contains("size=64k"), "\(info.superOptions)")
    #expect(info.superOptions.contains("mode=700"), "\(info.superOptions)")
    #expect(fileStat(directory)?.permissions == 0o700)
    #expect(try Mounts.fsType(directory) == "tmpfs")
    #expect(try Mounts.isMountPoint(directory))
  }

  @Test func sizeLimitIsEnforcedAndThePreviousContentStays() throws {
    try withVolume(sizeBytes: 64 * 1024) { (root: String) throws in
      let writer = AtomicWriter(directory: root)
      let small = [SecretFile(path: "db/blob", mode: 0o600, contents: [UInt8](repeating: 0x41, count: 16 * 1024))]
      #expect(try writer.write(small, defaultMode: 0o644) == .written)
      let ts = try dataTarget(root)

      let big = [SecretFile(path: "db/blob", mode: 0o600, contents: [UInt8](repeating: 0x42, count: 128 * 1024))]
      let error = try #require(throws: VolumeFileError.self) { try writer.write(big, defaultMode: 0o644) }
      guard case .tooLarge(let path, let totalBytes, let fileCount) = error.kind else {
        Issue.record("unexpected kind \(error.kind)")
        return
      }
      #expect(path == root + "/db/blob")
      #expect(totalBytes == 128 * 1024)
      #expect(fileCount == 1)
      #expect(error.description.contains("no space left"), "\(error.description)")
      #expect(error.description.contains("db/blob"))
      #expect(!error.description.contains("BBBB"))

      #expect(try dataTarget(root) == ts)
      #expect(try listing(root) == ["..data", ts, "db"].sorted(), "the half-built version is gone")
      #expect(try writer.currentFiles() == small)
    }
  }

  @Test func unmountIsIdempotent() throws {
    let directory = try makeTempDirectory()
    defer { rmdir(directory) }
    try Tmpfs.mount(at: directory, sizeBytes: 4096)
    #expect(try Mounts.isMountPoint(directory))
    try Tmpfs.unmount(directory)
    try Tmpfs.unmount(directory)
    #expect(try !Mounts.isMountPoint(directory))
    #expect(try Mounts.fsType(directory) == nil)
    try Tmpfs.unmount(directory + "/does-not-exist")
  }

  @Test func busyMountIsDetached() throws {
    let directory = try makeTempDirectory()
    defer { rmdir(directory) }
    try Tmpfs.mount(at: directory, sizeBytes: 4096)
    let fd = open(directory + "/held-open", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
    #expect(fd >= 0)
    defer { close(fd) }
    try Tmpfs.unmount(directory)
    #expect(try !Mounts.isMountPoint(directory))
    #expect(try listing(directory) == [], "the mount point shows the empty directory underneath again")
  }

  @Test func isMountPointAnswers() throws {
    try withVolume { (root: String) throws in
      #expect(mkdir(root + "/sub", 0o755) == 0)
      #expect(try Mounts.isMountPoint(root))
      #expect(try Mounts.isMountPoint(root + "/"))
      #expect(try Mounts.isMountPoint(root + "/sub/.."))
      #expect(try !Mounts.isMountPoint(root + "/sub"))
      #expect(try !Mounts.isMountPoint(root + "/missing"))
      #expect(try Mounts.fsType(root + "/sub") == nil)
      #expect(try Mounts.fsType(root + "/missing") == nil)
      #expect(try Mounts.isMountPoint("/proc"))
      #expect(try Mounts.fsType("/proc") == "proc")
    }
  }

  @Test(arguments: [0, -1])
  func refusesANonPositiveSize(_ size: Int) throws {
    let directory = try makeTempDirectory()
    defer { rmdir(directory) }
    let error = try #require(throws: VolumeFileError.self) { try Tmpfs.mount(at: directory, sizeBytes: size) }
    guard case .invalidArgument = error.kind else {
      Issue.record("unexpected kind \(error.kind)")
      return
    }
    #expect(try !Mounts.isMountPoint(directory))
  }
}
