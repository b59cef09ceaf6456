import Glibc
import Testing
import VolumeFiles

/// The atomic writer killed at every step: a child process (`writer-crash-child`) runs
/// one write over a real tmpfs and is SIGKILLed just before its Nth system call through
/// `sys`, for N = 1, 2, ... until a write completes. After each kill the volume must hold
/// the old content or the new one, complete (nothing but "no content yet" before a first
/// write finished), and `repairInterruptedWrite`, what the next start runs, must leave
/// no half-built directory and top-level links that match `..data`.
@Suite(.enabled(if: canMount, "NOT RUN: mounts tmpfs, which needs root (run the tests as root)"))
struct WriterCrashTests {
  static let old = [
    SecretFile(path: "password", mode: 0o600, contents: Array("old-password".utf8)),
    SecretFile(path: "removed", mode: 0o644, contents: Array("only in the old version".utf8)),
    SecretFile(path: "db/user", mode: 0o644, contents: Array("admin".utf8)),
  ]
  static let new = [
    SecretFile(path: "password", mode: 0o400, contents: Array("new-password".utf8)),
    SecretFile(path: "db/user", mode: 0o644, contents: Array("root".utf8)),
    SecretFile(path: "db/tls/key", mode: 0o400, contents: Array("-----BEGIN KEY-----".utf8)),
    SecretFile(path: "added", mode: 0, contents: []),
  ]

  /// As `currentFiles()` reports them: sorted by path, mode 0 resolved to 0o644.
  static func stored(_ files: [SecretFile]) -> [SecretFile] {
    files.map { SecretFile(path: $0.path, mode: $0.mode == 0 ? 0o644 : $0.mode, contents: $0.contents) }
      .sorted { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
  }

  @Test func killedAtEveryStepOfAFirstWrite() throws {
    let steps = try killAtEveryStep(before: nil, write: Self.new)
    #expect(steps > 20, "only \(steps) system calls: the fault point did not count the writer's calls")
  }

  /// A first mount's write, which does not list the volume it has just mounted.
  @Test func killedAtEveryStepOfAWriteIntoAFreshVolume() throws {
    let steps = try killAtEveryStep(before: nil, write: Self.new, options: ["--empty"])
    #expect(steps > 15, "only \(steps) system calls: the fault point did not count the writer's calls")
  }

  /// Files and directories get their mode at creation, and fchmod only when the umask
  /// (or a set-id bit) may have cut it: the modes on disk are the asked ones under any umask.
  @Test(arguments: ["000", "022", "077", "777"])
  func modesDoNotDependOnTheUmask(mask: String) throws {
    let files = [
      SecretFile(path: "open", mode: 0o666, contents: Array("a".utf8)),
      SecretFile(path: "default", mode: 0, contents: Array("b".utf8)),
      SecretFile(path: "dir/owner-only", mode: 0o400, contents: Array("c".utf8)),
      SecretFile(path: "dir/setgid", mode: 0o2750, contents: Array("d".utf8)),
      SecretFile(path: "none", mode: 0, contents: []),
    ]
    try withVolume { root in
      let outcome = try runChild(root, killBefore: 0, files, options: ["--empty", "--umask", mask])
      #expect(outcome == .exited(0))
      #expect(try AtomicWriter(directory: root).currentFiles() == Self.stored(files))
      let version = try dataTarget(root)
      #expect(fileStat(root + "/" + version)?.permissions == 0o755, "umask \(mask)")
      #expect(fileStat(root + "/" + version + "/dir")?.permissions == 0o755, "umask \(mask)")
    }
  }

  @Test func killedAtEveryStepOfAnUpdate() throws {
    let steps = try killAtEveryStep(before: Self.old, write: Self.new)
    #expect(steps > 20, "only \(steps) system calls: the fault point did not count the writer's calls")
  }

  /// Returns the number of system calls the complete write took.
  func killAtEveryStep(before: [SecretFile]?, write files: [SecretFile], options: [String] = []) throws -> Int {
    let oldContent = before.map(Self.stored) ?? []
    let newContent = Self.stored(files)
    var n = 1
    while n < 1000 {
      var finished = false
      try withVolume { root in
        if let before { _ = try AtomicWriter(directory: root).write(before, defaultMode: 0o644) }
        let outcome = try runChild(root, killBefore: n, files, options: options)
        switch outcome {
        case .exited(0):
          finished = true
          #expect(try AtomicWriter(directory: root).currentFiles() == newContent)
        case .killed(SIGKILL):
          let seen = try AtomicWriter(directory: root).currentFiles()
          #expect(seen == oldContent || seen == newContent, "killed before call \(n): neither the old nor the new content")
          let repair = try AtomicWriter(directory: root).repairInterruptedWrite()
          #expect(repair.hasContent == !seen.isEmpty, "call \(n)")
          #expect(try AtomicWriter(directory: root).currentFiles() == seen, "call \(n): the repair changed the content")
          try expectClean(root, content: seen, step: n)
        default:
          Issue.record("writer-crash-child before call \(n): \(outcome)")
          finished = true
        }
      }
      if finished { return n - 1 }
      n += 1
    }
    Issue.record("the write never finished")
    return n
  }

  /// Only `..data` and the directory it points to among the writer's names, and a link
  /// `name -> ..data/name` for each top-level name of the content, nothing else; reading
  /// through the links gives the content. No content: an empty volume.
  func expectClean(_ root: String, content: [SecretFile], step: Int) throws {
    let names = try listing(root)
    guard !content.isEmpty else {
      #expect(names == [], "call \(step): left \(names) in a volume with no content")
      return
    }
    let data = try dataTarget(root)
    let topLevel = Set(content.map { String($0.path.split(separator: "/")[0]) })
    #expect(Set(names) == Set(["..data", data]).union(topLevel), "call \(step): \(names)")
    for name in topLevel { #expect(linkTarget(root + "/" + name) == "..data/" + name, "call \(step): \(name)") }
    for file in content { #expect(try contents(root + "/" + file.path) == file.contents, "call \(step): \(file.path)") }
  }

  enum ChildOutcome: Equatable, CustomStringConvertible {
    case exited(Int32)
    case killed(Int32)
    var description: String {
      switch self {
      case .exited(let code): "exited with \(code)"
      case .killed(let signal): "killed by signal \(signal)"
      }
    }
  }

  /// The child binary sits next to this test binary (`swift build --build-tests` builds both).
  static let childPath: String = {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    let exe = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
    return String(exe[..<(exe.lastIndex(of: "/") ?? exe.startIndex)]) + "/writer-crash-child"
  }()

  func runChild(_ root: String, killBefore n: Int, _ files: [SecretFile], options: [String] = []) throws -> ChildOutcome {
    guard access(Self.childPath, X_OK) == 0 else {
      throw TestFailure("\(Self.childPath) is missing: build it with `swift build --build-tests`")
    }
    var args = [Self.childPath, root, String(n)] + options
    for file in files { args += [file.path, String(file.mode, radix: 8), String(decoding: file.contents, as: UTF8.self)] }
    var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, Self.childPath, nil, nil, &argv, environ)
    guard rc == 0 else { throw TestFailure("posix_spawn \(Self.childPath): \(rc)") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
      guard errno == EINTR else { throw TestFailure("waitpid: errno \(errno)") }
    }
    // WIFEXITED / WTERMSIG by hand: the macros do not import.
    return status & 0x7f == 0 ? .exited((status >> 8) & 0xff) : .killed(status & 0x7f)
  }
}
