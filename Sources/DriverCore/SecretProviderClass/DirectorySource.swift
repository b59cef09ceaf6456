import Glibc
public import Logging
public import UVRuntime
import VolumeFiles

/// SecretProviderClasses from a directory of YAML/JSON files (`--spc-dir`):
/// standalone mode for development, demos, benchmarks and nodes without API
/// access. Each file may hold several documents; objects of other kinds are
/// skipped. The directory is re-read when any file in it changes (checked by
/// name, size, inode and mtime on lookup, so an edit is seen by the next publish).
public final class DirectorySecretProviderClassSource: SecretProviderClassSource, Sendable {
  public let directory: String
  let logger: Logger

  private struct Key: Hashable {
    var namespace: String
    var name: String
  }

  private struct Snapshot {
    var stamp: [FileStamp] = []
    /// The directory's own stamp when `stamp` was taken, and when that was.
    var directoryStamp: FileStamp?
    var checkedAt: ContinuousClock.Instant = .now
    var classes: [Key: SecretProviderClass] = [:]
    /// Classes defined twice, or files that failed to parse, by the key or file involved.
    var conflicts: [Key: String] = [:]
    var brokenFiles: [String: String] = [:]
    /// The classes each file defines (on-demand refresh: a touched file names them).
    var classesByFile: [String: [Key]] = [:]
  }

  private struct FileStamp: Hashable {
    var name: String
    var size: Int
    var inode: UInt
    var mtimeNanos: Int
  }

  private let snapshot = Locked(Snapshot())

  public init(directory: String, logger: Logger = Logger(label: "spc-dir")) {
    self.directory = directory
    self.logger = logger
  }

  public func secretProviderClass(name: String, namespace: String) async throws -> SecretProviderClass? {
    let current = try refresh()
    let key = Key(namespace: namespace, name: name)
    if let conflict = current.conflicts[key] {
      throw SecretProviderClassError(name: name, namespace: namespace, reason: conflict)
    }
    if let spc = current.classes[key] { return spc }
    if !current.brokenFiles.isEmpty {
      // The class may be in a file that does not parse: say so rather than only "not found".
      let files = current.brokenFiles.keys.sorted().joined(separator: ", ")
      logger.debug("lookup missed while some files are unreadable", metadata: ["files": "\(files)"])
    }
    return nil
  }

  /// Files that could not be used, with the reason (for error messages and tests).
  public func problems() throws -> [String: String] {
    try refresh().brokenFiles
  }

  /// A full listing (a stat per file) at most once a second while the
  /// directory itself is unchanged: creating, renaming or removing a file moves
  /// the directory's mtime, so those are seen at once; an edit in place within
  /// a second. A directory changed in the last 50 ms is always listed, because
  /// two changes inside one timestamp tick would look like one.
  static let fullCheckInterval = Duration.seconds(1)

  private func refresh(force: Bool = false) throws -> Snapshot {
    let now = ContinuousClock.now
    let directoryStamp = try Self.stamp(directory, name: ".")
    if !force, let cached = snapshot.withLock({ snap -> Snapshot? in
      guard snap.directoryStamp == directoryStamp, now - snap.checkedAt < Self.fullCheckInterval else { return nil }
      return snap
    }), !Self.recentlyChanged(directoryStamp) {
      return cached
    }
    let stamp = try listing()
    if let cached = snapshot.withLock({ snap -> Snapshot? in
      guard snap.stamp == stamp else { return nil }
      snap.directoryStamp = directoryStamp
      snap.checkedAt = now
      return snap
    }) {
      return cached
    }
    var next = Snapshot(stamp: stamp, directoryStamp: directoryStamp, checkedAt: now)
    var origin: [Key: String] = [:]
    for file in stamp {
      let path = directory + "/" + file.name
      do {
        let bytes = try FileIO.readAll(path, limit: 1 << 20)
        let outcomes = try SPCDecoding.decodeAll(String(decoding: bytes, as: UTF8.self))
        for outcome in outcomes {
          switch outcome {
          case .spc(var spc):
            spc.resourceVersion = "\(file.inode)-\(file.mtimeNanos)"
            let key = Key(namespace: spc.namespace, name: spc.name)
            if let first = origin[key] {
              next.conflicts[key] = "defined in both \(first) and \(file.name)"
            }
            origin[key] = file.name
            next.classes[key] = spc
            next.classesByFile[file.name, default: []].append(key)
          case .invalid(let name, let namespace, let reason):
            // Parse errors quote the file: bounded, without control characters.
            let reason = SecretScrubber().scrub(reason)
            let key = Key(namespace: namespace, name: name)
            next.conflicts[key] = "\(reason) (in \(file.name))"
            origin[key] = file.name
            logger.error("invalid SecretProviderClass", metadata: ["file": "\(path)", "class": "\(namespace)/\(name)", "error": "\(reason)"])
          case .otherKind:
            continue
          }
        }
      } catch {
        let reason = SecretScrubber().scrub("\(error)")
        next.brokenFiles[file.name] = reason
        logger.error("cannot use SecretProviderClass file", metadata: ["file": "\(path)", "error": "\(reason)"])
      }
    }
    snapshot.withLock { $0 = next }
    return next
  }

  // MARK: on-demand refresh

  /// How often `watchChanges` lists the directory.
  public static let changePollInterval = Duration.milliseconds(250)

  /// Until cancelled, lists the directory every `every` (one stat per file, on the
  /// loop) and, when a file changed (touched, rewritten, replaced, added), calls
  /// `onChange` with the classes that file now defines. A stat poll rather than
  /// inotify: a ConfigMap volume presents its files as symlinks into a directory
  /// that kubelet swaps, and touching a file through such a link changes nothing in
  /// the watched directory itself. A file that no longer parses names no class
  /// (its volumes keep their content until it is fixed).
  public func watchChanges(
    loop: EventLoop, every: Duration = changePollInterval,
    onChange: @escaping @Sendable (_ classes: [(namespace: String, name: String)]) -> Void
  ) async {
    var previous = (try? refresh(force: true))?.stamp
    let ms = max(1, every.timerMilliseconds)
    while !Task.isCancelled {
      do { try await loop.sleep(milliseconds: ms) } catch { return }
      guard let current = try? listing(), current != previous else { continue }
      let before = Dictionary((previous ?? []).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
      let touched = Set(current.filter { before[$0.name] != $0 }.map(\.name))
      guard let next = try? refresh(force: true) else { continue }
      previous = next.stamp
      let keys = touched.sorted().flatMap { next.classesByFile[$0] ?? [] }
      if !keys.isEmpty {
        logger.debug("SecretProviderClass files changed", metadata: ["files": "\(touched.sorted())", "classes": "\(keys.count)"])
        onChange(keys.map { (namespace: $0.namespace, name: $0.name) })
      }
    }
  }

  private static func stamp(_ path: String, name: String) throws -> FileStamp {
    var st = stat()
    _ = try sys("stat", path) { stat(path, &st) }
    return FileStamp(name: name, size: Int(st.st_size), inode: UInt(st.st_ino), mtimeNanos: st.st_mtim.tv_sec * 1_000_000_000 + st.st_mtim.tv_nsec)
  }

  private static func recentlyChanged(_ stamp: FileStamp) -> Bool {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    let nowNanos = ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    return nowNanos - stamp.mtimeNanos < 50_000_000
  }

  private func listing() throws -> [FileStamp] {
    var out: [FileStamp] = []
    for name in try directoryNames(directory) {
      guard !name.hasPrefix("."), name.hasSuffix(".yaml") || name.hasSuffix(".yml") || name.hasSuffix(".json") else { continue }
      var st = stat()
      let path = directory + "/" + name
      // stat, not lstat: a ConfigMap volume presents its files as symlinks. One that
      // vanished or cannot be read since the listing is skipped, as before it was listed.
      guard (try? sys("stat", path) { stat(path, &st) }) != nil, (st.st_mode & S_IFMT) == S_IFREG else { continue }
      out.append(FileStamp(name: name, size: Int(st.st_size), inode: UInt(st.st_ino), mtimeNanos: st.st_mtim.tv_sec * 1_000_000_000 + st.st_mtim.tv_nsec))
    }
    out.sort { $0.name < $1.name }
    return out
  }
}
