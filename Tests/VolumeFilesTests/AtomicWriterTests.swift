import Glibc
import Synchronization
import Testing
import VolumeFiles

@Suite(.enabled(if: canMount, "NOT RUN: mounts tmpfs, which needs root (run the tests as root)"))
struct AtomicWriterTests {
  func file(_ path: String, _ text: String, mode: UInt32 = 0o644) -> SecretFile {
    SecretFile(path: path, mode: mode, contents: bytes(text))
  }

  @Test func firstWriteLayout() throws {
    try withVolume { (root: String) throws in
      let files = [
        file("a", "alpha", mode: 0o644),
        file("b", "bravo", mode: 0o666),  // a umask of 022 would cut this to 0644
        file("c", "charlie", mode: 0),
        file("db/password", "hunter2", mode: 0o400),
        file("db/user", "admin", mode: 0o777),
        file("e", "", mode: 0o2755),
      ]
      let before = time(nil)
      #expect(try AtomicWriter(directory: root).write(files, defaultMode: 0o640) == .written)
      let after = time(nil)

      let ts = try dataTarget(root)
      #expect(isTimestampName(ts), "\(ts)")
      let stamp = String(ts.dropFirst(2).prefix(19))
      #expect((before...after).contains { utcStamp($0) == stamp }, "\(ts) is not the UTC time of the write")
      #expect(try listing(root) == ["..data", ts, "a", "b", "c", "db", "e"].sorted())
      #expect(fileStat(root + "/..data")?.isSymlink == true)
      let tsStat = try #require(fileStat(root + "/" + ts))
      #expect(tsStat.isDirectory && tsStat.permissions == 0o755)
      for name in ["a", "b", "c", "db", "e"] {
        #expect(linkTarget(root + "/" + name) == "..data/" + name)
      }
      let dbStat = try #require(fileStat("\(root)/\(ts)/db"))
      #expect(dbStat.isDirectory && dbStat.permissions == 0o755)
      #expect(try listing("\(root)/\(ts)/db") == ["password", "user"])

      let expectedModes: [String: mode_t] = [
        "a": 0o644, "b": 0o666, "c": 0o640, "db/password": 0o400, "db/user": 0o777, "e": 0o2755,
      ]
      for secret in files {
        let onDisk = try #require(fileStat("\(root)/\(ts)/\(secret.path)"))
        #expect(onDisk.isRegular, "\(secret.path)")
        #expect(
          onDisk.permissions == expectedModes[secret.path],
          "\(secret.path): 0o\(String(onDisk.permissions, radix: 8))")
        #expect(try contents("\(root)/\(ts)/\(secret.path)") == secret.contents)
        #expect(try contents("\(root)/\(secret.path)") == secret.contents, "through the top-level link")
      }

      let expectedCurrent = files.map {
        SecretFile(path: $0.path, mode: UInt32(expectedModes[$0.path]!), contents: $0.contents)
      }
      #expect(try AtomicWriter(directory: root).currentFiles() == expectedCurrent.sorted { $0.path < $1.path })
    }
  }

  /// A first mount's write does not list the volume: a name already there is not
  /// covered, the write fails and leaves the volume as it was.
  @Test func aWriteIntoAnEmptyVolumeRefusesToCoverAName() throws {
    try withVolume { (root: String) throws in
      let fd = open(root + "/a", O_WRONLY | O_CREAT | O_EXCL, 0o644)
      #expect(fd >= 0)
      close(fd)
      #expect(throws: VolumeFileError.self) {
        try AtomicWriter(directory: root).write([file("a", "alpha")], defaultMode: 0o644, emptyVolume: true)
      }
      #expect(try contents(root + "/a") == [])
      #expect(fileStat(root + "/a")?.isRegular == true)
    }
  }

  @Test func currentFilesIsEmptyBeforeTheFirstWrite() throws {
    try withVolume { (root: String) throws in
      #expect(try AtomicWriter(directory: root).currentFiles() == [])
      #expect(try listing(root) == [])
    }
  }

  @Test func modeZeroUsesDefaultModeAndAModeChangeAloneRewrites() throws {
    try withVolume { (root: String) throws in
      let writer = AtomicWriter(directory: root)
      #expect(try writer.write([file("x", "same", mode: 0)], defaultMode: 0o600) == .written)
      let first = try dataTarget(root)
      #expect(fileStat("\(root)/\(first)/x")?.permissions == 0o600)

      #expect(try writer.write([file("x", "same", mode: 0)], defaultMode: 0o444) == .written)
      let second = try dataTarget(root)
      #expect(second != first)
      #expect(fileStat("\(root)/\(second)/x")?.permissions == 0o444)
      #expect(try contents(root + "/x") == bytes("same"))
    }
  }

  @Test func nestedPaths() throws {
    try withVolume { (root: String) throws in
      let files = [file("a/b/c/d", "deep"), file("a/b/e", "mid"), file("a/f", "shallow"), file("g", "top")]
      #expect(try AtomicWriter(directory: root).write(files, defaultMode: 0o644) == .written)
      let ts = try dataTarget(root)
      #expect(try listing(root) == ["..data", ts, "a", "g"].sorted())
      #expect(linkTarget(root + "/a") == "..data/a")
      #expect(linkTarget(root + "/g") == "..data/g")
      for directory in ["a", "a/b", "a/b/c"] {
        let info = try #require(fileStat("\(root)/\(ts)/\(directory)"))
        #expect(info.isDirectory && info.permissions == 0o755, "\(directory)")
      }
      for secret in files {
        #expect(try contents(root + "/" + secret.path) == secret.contents, "\(secret.path)")
      }
    }
  }

  @Test func manyDirectoriesAndDeepNesting() throws {
    // tmpfs takes a page per non-empty file: 300 small files need over 1 MiB.
    try withVolume(sizeBytes: 8 << 20) { (root: String) throws in
      var files = (0..<300).map { file("many/d\($0)/f", "file \($0)") }
      // Names whose byte order interleaves a directory with its siblings.
      files += [
        file("a/y-b/w", "1"), file("a/y/q", "2"), file("a/y/z/deeper", "3"), file("a/y0", "4"), file("a/x", "5"),
      ]
      let deep = Array(repeating: "d", count: 200).joined(separator: "/") + "/leaf"
      files.append(file(deep, "deep"))
      let writer = AtomicWriter(directory: root)
      #expect(try writer.write(files.shuffled(), defaultMode: 0o644) == .written)
      #expect(try writer.currentFiles() == files.sorted { $0.path < $1.path })
      for secret in files {
        #expect(try contents(root + "/" + secret.path) == secret.contents, "\(secret.path)")
      }
      #expect(try listing(root).filter { !$0.hasPrefix("..") } == ["a", "d", "many"])
      #expect(try writer.write(files, defaultMode: 0o644) == .unchanged)
    }
  }

  @Test func sameContentAgainTouchesNothing() throws {
    try withVolume { (root: String) throws in
      let writer = AtomicWriter(directory: root)
      let files = [file("a", "one"), file("b", "two", mode: 0), file("db/password", "three")]
      #expect(try writer.write(files, defaultMode: 0o644) == .written)
      let ts = try dataTarget(root)
      let before = try listing(root)
      let stats = files.map { fileStat("\(root)/\(ts)/\($0.path)") }
      let linkStats = ["a", "b", "db"].map { fileStat("\(root)/\($0)") }

      // Other order, and mode 0 written out as what it resolved to: still the same files.
      let again = [file("db/password", "three"), file("b", "two", mode: 0o644), file("a", "one")]
      #expect(try writer.write(again, defaultMode: 0o600) == .unchanged)
      #expect(try dataTarget(root) == ts)
      #expect(try listing(root) == before)
      for (secret, old) in zip(files, stats) {
        let now = fileStat("\(root)/\(ts)/\(secret.path)")
        #expect(now?.inode == old?.inode, "\(secret.path) was recreated")
        #expect(now?.changeTime.tv_sec == old?.changeTime.tv_sec && now?.changeTime.tv_nsec == old?.changeTime.tv_nsec)
      }
      for (name, old) in zip(["a", "b", "db"], linkStats) {
        #expect(fileStat("\(root)/\(name)")?.inode == old?.inode, "link \(name) was recreated")
      }
    }
  }

  @Test func updateReplacesContentAndRemovesGoneNames() throws {
    try withVolume { (root: String) throws in
      let writer = AtomicWriter(directory: root)
      #expect(try writer.write([file("a", "v1"), file("b", "v1"), file("c/d", "v1")], defaultMode: 0o644) == .written)
      let old = try dataTarget(root)

      #expect(try writer.write([file("a", "v2-longer"), file("e", "v2")], defaultMode: 0o644) == .written)
      let new = try dataTarget(root)
      #expect(new != old)
      #expect(fileStat(root + "/" + old) == nil, "old timestamp directory is gone")
      #expect(try listing(root) == ["..data", new, "a", "e"].sorted())
      #expect(try contents(root + "/a") == bytes("v2-longer"))
      #expect(try contents(root + "/e") == bytes("v2"))
      #expect(try writer.currentFiles().map(\.path) == ["a", "e"])

      // Writing nothing is a valid update too: every name goes.
      #expect(try writer.write([], defaultMode: 0o644) == .written)
      #expect(try listing(root) == ["..data", try dataTarget(root)].sorted())
      #expect(try writer.currentFiles() == [])
    }
  }

  static func secret(_ path: String, mode: UInt32 = 0o644) -> SecretFile {
    SecretFile(path: path, mode: mode, contents: [])
  }

  static let hostileSets: [(String, [SecretFile], UInt32)] = [
    ("parent escape", [secret("../x")], 0o644),
    ("absolute", [secret("/etc/passwd")], 0o644),
    ("double slash", [secret("a//b")], 0o644),
    ("..data", [secret("..data")], 0o644),
    ("..data_tmp", [secret("..data_tmp")], 0o644),
    ("..foo", [secret("..foo")], 0o644),
    ("empty", [secret("")], 0o644),
    ("duplicate", [secret("dup"), secret("dup", mode: 0o600)], 0o644),
    ("file and directory", [secret("a"), secret("a/b")], 0o644),
    ("directory then file", [secret("a/b/c"), secret("a/b")], 0o644),
    ("mode above 0o7777", [secret("m", mode: 0o10000)], 0o644),
    ("default mode above 0o7777", [secret("m", mode: 0)], 0o10000),
  ]

  @Test(arguments: hostileSets)
  func hostileSetWritesNothing(_ label: String, _ hostile: [SecretFile], _ defaultMode: UInt32) throws {
    try withVolume { (root: String) throws in
      let writer = AtomicWriter(directory: root)
      let original = [file("kept", "ORIGINAL-SECRET"), file("dir/kept", "ORIGINAL-SECRET")]
      #expect(try writer.write(original, defaultMode: 0o644) == .written)
      let ts = try dataTarget(root)
      let before = try listing(root)

      // A good file first: it must not be written either.
      let request = [SecretFile(path: "fresh", mode: 0o644, contents: bytes("NEW-SECRET"))] + hostile
      let error = try #require(throws: VolumeFileError.self, "\(label)") {
        try writer.write(request, defaultMode: defaultMode)
      }
      switch error.kind {
      case .invalidPath, .invalidMode: break
      default: Issue.record("\(label): unexpected kind \(error.kind)")
      }
      #expect(!error.description.contains("SECRET"), "\(error.description)")
      #expect(try dataTarget(root) == ts)
      #expect(try listing(root) == before)
      #expect(try writer.currentFiles() == original.sorted { $0.path < $1.path })
      #expect(try contents(root + "/kept") == bytes("ORIGINAL-SECRET"))
    }
  }

  @Test func entryTheWriterDidNotMakeBlocksALinkAndIsKept() throws {
    try withVolume { (root: String) throws in
      let writer = AtomicWriter(directory: root)
      #expect(try writer.write([file("a", "v1")], defaultMode: 0o644) == .written)
      let ts = try dataTarget(root)
      let fd = open(root + "/foreign", O_WRONLY | O_CREAT | O_EXCL, 0o644)
      #expect(fd >= 0)
      close(fd)

      let error = try #require(throws: VolumeFileError.self) {
        try writer.write([file("a", "v2"), file("foreign", "v2")], defaultMode: 0o644)
      }
      guard case .unexpectedEntry(let path, _) = error.kind else {
        Issue.record("unexpected kind \(error.kind)")
        return
      }
      #expect(path == root + "/foreign")
      #expect(try dataTarget(root) == ts)
      #expect(try contents(root + "/a") == bytes("v1"))
      #expect(fileStat(root + "/foreign")?.isRegular == true)

      // A name the new files do not use is left alone.
      #expect(try writer.write([file("a", "v3")], defaultMode: 0o644) == .written)
      #expect(fileStat(root + "/foreign")?.isRegular == true)
    }
  }

  /// Plants what an interrupted write leaves behind.
  func plantLeftovers(_ root: String) throws {
    #expect(symlink("..2020_01_01_00_00_00.000000000_00000000", root + "/..data_tmp") == 0)
    let orphan = root + "/..2020_01_01_00_00_00.000000000_deadbeef"
    #expect(mkdir(orphan, 0o755) == 0)
    #expect(mkdir(orphan + "/sub", 0o755) == 0)
    for path in [orphan + "/half-written", orphan + "/sub/file"] {
      let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o000)
      #expect(fd >= 0)
      close(fd)
    }
    #expect(symlink("/etc", orphan + "/sub/escape") == 0)
    #expect(symlink("..data/gone", root + "/gone") == 0)  // a link whose file is gone
  }

  @Test func leftoversAreCleanedOnTheNextWrite() throws {
    try withVolume { (root: String) throws in
      let writer = AtomicWriter(directory: root)
      #expect(try writer.write([file("a", "v1")], defaultMode: 0o644) == .written)
      try plantLeftovers(root)

      #expect(try writer.write([file("a", "v2"), file("b", "v2")], defaultMode: 0o644) == .written)
      #expect(try listing(root) == ["..data", try dataTarget(root), "a", "b"].sorted())
      #expect(try contents(root + "/b") == bytes("v2"))
      #expect(fileStat("/etc")?.isDirectory == true, "the planted link was removed, not followed")
    }
  }

  @Test func leftoversAreCleanedAndLinksRepairedWhenUnchanged() throws {
    try withVolume { (root: String) throws in
      let writer = AtomicWriter(directory: root)
      let files = [file("a", "v1"), file("b", "v1")]
      #expect(try writer.write(files, defaultMode: 0o644) == .written)
      let ts = try dataTarget(root)
      try plantLeftovers(root)
      #expect(unlink(root + "/b") == 0)  // as if the write stopped before making this link

      #expect(try writer.write(files, defaultMode: 0o644) == .unchanged)
      #expect(try dataTarget(root) == ts)
      #expect(try listing(root) == ["..data", ts, "a", "b"].sorted())
      #expect(try contents(root + "/b") == bytes("v1"))
    }
  }

  @Test func dataThatIsNotALinkIsReplaced() throws {
    try withVolume { (root: String) throws in
      #expect(mkdir(root + "/..data", 0o755) == 0)
      let fd = open(root + "/..data/a", O_WRONLY | O_CREAT | O_EXCL, 0o644)
      close(fd)
      let writer = AtomicWriter(directory: root)
      #expect(try writer.write([file("a", "v1")], defaultMode: 0o644) == .written)
      #expect(fileStat(root + "/..data")?.isSymlink == true)
      #expect(try listing(root) == ["..data", try dataTarget(root), "a"].sorted())
      #expect(try contents(root + "/a") == bytes("v1"))
    }
  }

  @Test func writingToAMissingDirectoryNamesIt() throws {
    let error = try #require(throws: VolumeFileError.self) {
      try AtomicWriter(directory: "/nonexistent-volumefiles-dir").write([file("a", "SECRET")], defaultMode: 0o644)
    }
    #expect(error.errno == ENOENT)
    #expect(error.description.contains("/nonexistent-volumefiles-dir"))
    #expect(!error.description.contains("SECRET"))
  }

  final class ReaderState: Sendable {
    let stop = Atomic<Bool>(false)
    let mixedReads = Atomic<Int>(0)
    let tornFiles = Atomic<Int>(0)
    let versionsSeen = Mutex<Set<[UInt8]>>([])
  }

  static func version(_ n: Int) -> [UInt8] {
    // Lengths vary so a torn or mixed read cannot look whole by accident.
    bytes("version-\(n)-" + String(repeating: "x", count: n % 37) + "-end")
  }

  static func isWholeVersion(_ data: [UInt8]) -> Bool {
    let text = String(decoding: data, as: UTF8.self)
    return text.hasPrefix("version-") && text.hasSuffix("-end")
  }

  @Test func concurrentReaderNeverSeesAMix() throws {
    try withVolume { (root: String) throws in
      let writer = AtomicWriter(directory: root)
      func files(_ n: Int) -> [SecretFile] {
        [SecretFile(path: "one", mode: 0o644, contents: Self.version(n)),
         SecretFile(path: "two/nested", mode: 0o644, contents: Self.version(n))]
      }
      #expect(try writer.write(files(0), defaultMode: 0o644) == .written)

      let state = ReaderState()
      let thread = try startThread {
        while !state.stop.load(ordering: .acquiring) {
          // A consistent reader resolves ..data once, then reads both files under it.
          let data = open(root + "/..data", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
          if data >= 0 {
            let one = readAt(data, "one")
            let two = readAt(data, "two/nested")
            close(data)
            // nil: the version was replaced and removed between the two opens; not a mix.
            if let one, let two {
              if one != two { state.mixedReads.add(1, ordering: .relaxed) }
              state.versionsSeen.withLock { _ = $0.insert(one) }
            }
          }
          // Through the top-level link each file alone is always one whole version.
          if let single = try? contents(root + "/one"), !AtomicWriterTests.isWholeVersion(single) {
            state.tornFiles.add(1, ordering: .relaxed)
          }
        }
      }
      for n in 1...500 {
        #expect(try writer.write(files(n), defaultMode: 0o644) == .written)
      }
      state.stop.store(true, ordering: .releasing)
      pthread_join(thread, nil)

      #expect(state.mixedReads.load(ordering: .relaxed) == 0)
      #expect(state.tornFiles.load(ordering: .relaxed) == 0)
      // The reader really ran alongside the writer: it saw several versions come and go.
      #expect(state.versionsSeen.withLock { $0.count } > 1)
      #expect(try writer.currentFiles() == files(500))
      #expect(try listing(root).filter { $0.hasPrefix("..") } == ["..data", try dataTarget(root)].sorted())
    }
  }
}

/// Reads `path` under `directory`; nil if any part is gone.
private func readAt(_ directory: Int32, _ path: String) -> [UInt8]? {
  let fd = openat(directory, path, O_RDONLY | O_CLOEXEC)
  guard fd >= 0 else { return nil }
  defer { close(fd) }
  return try? readAll(fd)
}
