/// One file of a volume, as a provider returned it.
public struct SecretFile: Sendable, Hashable {
  /// Relative path inside the volume, e.g. `db/password`; must pass `PathRules.validate`.
  public var path: String
  /// Permission bits (at most 0o7777); 0 means "use the writer's `defaultMode`".
  public var mode: UInt32
  public var contents: [UInt8]

  public init(path: String, mode: UInt32, contents: [UInt8]) {
    self.path = path
    self.mode = mode
    self.contents = contents
  }
}

/// What `AtomicWriter.write` did.
public enum WriteOutcome: Sendable {
  /// A new timestamp directory now backs `..data`.
  case written
  /// `..data` already held exactly these paths, modes and bytes; no file was rewritten.
  case unchanged
}
