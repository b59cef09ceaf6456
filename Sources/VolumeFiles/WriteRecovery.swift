import Glibc

/// What `AtomicWriter.repairInterruptedWrite()` found and did.
public struct WriteRepair: Sendable, Hashable {
  /// `..data` points to a complete version: the volume has content (old or new).
  public var hasContent: Bool
  /// Writer's entries removed: half-built or superseded `..<timestamp>` directories, `..data_tmp`.
  public var removed: [String]
  /// Top-level links created or removed so that they match what `..data` holds.
  public var linksFixed: Int

  public init(hasContent: Bool, removed: [String], linksFixed: Int) {
    self.hasContent = hasContent
    self.removed = removed
    self.linksFixed = linksFixed
  }
}

extension AtomicWriter {
  /// Finishes what a writer killed mid-write left behind, without changing the content
  /// readers see: removes every writer's entry that `..data` does not point to (a
  /// half-built `..<timestamp>` directory, an old one not yet removed, `..data_tmp`),
  /// then makes the top-level links match the version `..data` points to (a kill right
  /// after the swap leaves new names without links and old links dangling).
  ///
  /// The swap of `..data` is the only step that changes what a reader sees, so after a
  /// kill at any step `..data` points to the old version or the new one, both complete.
  /// Without `..data` (a first write that never reached the swap) there is no content:
  /// leftovers are removed and `hasContent` is false; the caller unmounts such a volume.
  ///
  /// The caller guarantees no writer is working on the directory (one writer per volume).
  public func repairInterruptedWrite() throws -> WriteRepair {
    let rootDirectory = OpenDirectory(fd: try target.openDirectory())
    defer { rootDirectory.close() }
    let root = rootDirectory.fd
    let scan = try scanRoot(rootDirectory)
    var repair = WriteRepair(hasContent: false, removed: [], linksFixed: 0)
    for entry in scan.leftovers {
      try removeEntry(at: root, entry.name, type: entry.type, path: fullPath(entry.name))
      repair.removed.append(string(entry.name))
    }
    guard let target = scan.dataTarget, let current = scan.currentEntry, current.type == .directory else {
      return repair
    }
    repair.hasContent = true
    let names = try withCName(target) { cName in
      let version = try OpenDirectory(at: root, cName, path: fullPath(target))
      defer { version.close() }
      return Set(try version.entries(path: fullPath(target)).map(\.name))
    }
    // Names the writer did not make stay as they are (the next write refuses to cover them).
    for name in names where !scan.links.contains(name) && !scan.others.contains(name) {
      _ = try withCName(Self.linkPrefix + name) { linkTarget in
        try withCName(name) { cName in
          try sys("symlinkat", fullPath(name)) { symlinkat(linkTarget, root, cName) }
        }
      }
      repair.linksFixed += 1
    }
    for name in scan.links where !names.contains(name) {
      _ = try withCName(name) { cName in
        try sys("unlinkat", fullPath(name)) { unlinkat(root, cName, 0) }
      }
      repair.linksFixed += 1
    }
    return repair
  }
}
