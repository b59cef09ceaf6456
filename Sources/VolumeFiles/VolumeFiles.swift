// TEMPORARY API stub while the real target is built on branch `fs`; replaced by that merge.
public struct SecretFile: Sendable, Hashable {
  public var path: String
  public var mode: UInt32
  public var contents: [UInt8]
  public init(path: String, mode: UInt32, contents: [UInt8]) { self.path = path; self.mode = mode; self.contents = contents }
}
public struct VolumeFileError: Error, Sendable, CustomStringConvertible {
  public enum Kind: Sendable { case invalidPath(path: String, reason: String), system(call: String, path: String, errno: Int32), tooLarge }
  public var kind: Kind
  public var description: String
}
public enum PathRules { public static func validate(_ path: String) throws {} }
public enum WriteOutcome: Sendable { case written, unchanged }
public struct AtomicWriter: Sendable {
  public init(directory: String) {}
  public func write(_ files: [SecretFile], defaultMode: UInt32) throws -> WriteOutcome { fatalError() }
  public func currentFiles() throws -> [SecretFile] { [] }
}
public enum Tmpfs {
  public static func mount(at target: String, sizeBytes: Int, mode: UInt32 = 0o755) throws { fatalError() }
  public static func unmount(_ target: String) throws { fatalError() }
}
public enum Mounts {
  public static func isMountPoint(_ path: String) throws -> Bool { false }
  public static func fsType(_ path: String) throws -> String? { nil }
}
