import CLinux
import Glibc

/// The tmpfs that holds a volume's files: secrets stay in memory and never reach a disk.
public enum Tmpfs {
  /// Mounts a tmpfs of `sizeBytes` at `target` with nosuid, nodev and noexec
  /// (`size=<sizeBytes>,mode=<octal mode>`, and `gid=<group>` when given). Follows
  /// `target` as given and does not check what is mounted there already: the driver's
  /// volumes go through `VolumeTarget.mountTmpfs`, which is confined to the kubelet root.
  /// `source` is the name the mount table shows as the mount's source: the driver passes
  /// its own name, so that after a restart it can tell its volumes from other tmpfs mounts.
  public static func mount(at target: String, sizeBytes: Int, mode: UInt32 = 0o755, group: UInt32? = nil, source: String = "tmpfs") throws {
    let options = try options(sizeBytes: sizeBytes, mode: mode, group: group)
    _ = try sys("mount", target) { Glibc.mount(source, target, "tmpfs", flags, options) }
  }

  /// nosuid, nodev, noexec: nothing in a secrets volume is a program or a device.
  static let flags = UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC)

  /// `size=…,mode=0…[,gid=…]`; refuses a size that tmpfs would take as "no limit".
  static func options(sizeBytes: Int, mode: UInt32, group: UInt32?) throws -> String {
    // size=0 would mean "unlimited" to tmpfs: never allow that by accident.
    guard sizeBytes > 0 else {
      throw VolumeFileError(.invalidArgument(name: "tmpfs size", reason: "\(sizeBytes) bytes; must be positive"))
    }
    guard mode <= 0o7777 else {
      throw VolumeFileError(.invalidArgument(name: "tmpfs mode", reason: "0o\(String(mode, radix: 8)) is above 0o7777"))
    }
    var options = "size=\(sizeBytes),mode=0\(String(mode, radix: 8))"
    if let group { options += ",gid=\(group)" }
    return options
  }

  /// Unmounts `target`. Nothing mounted there (EINVAL) or no such path (ENOENT) counts as
  /// success, so a retried unmount is idempotent; a busy mount (EBUSY) is detached instead.
  public static func unmount(_ target: String) throws {
    do {
      // NOFOLLOW: a symlink planted at the target must not redirect the unmount elsewhere.
      _ = try sys("umount2", target) { umount2(target, Int32(UMOUNT_NOFOLLOW)) }
    } catch let error as VolumeFileError {
      switch error.errno {
      case EINVAL, ENOENT:
        return
      case EBUSY:
        do {
          _ = try sys("umount2(MNT_DETACH)", target) { umount2(target, Int32(MNT_DETACH) | Int32(UMOUNT_NOFOLLOW)) }
        } catch let error as VolumeFileError where error.errno == EINVAL || error.errno == ENOENT {
          return  // someone else unmounted it in between
        }
      default:
        throw error
      }
    }
  }
}

/// Questions about the mount table (`MountTable`, /proc/self/mountinfo).
public enum Mounts {
  /// Whether `path` (symlinks resolved) is the mount point of some mount.
  /// A path that does not exist is not a mount point.
  public static func isMountPoint(_ path: String) throws -> Bool {
    // statx answers in one syscall; the mount table costs O(mounts) per call,
    // which on a node with a thousand volumes dominates every republish.
    switch clinux_is_mount_root(path) {
    case 1: return true
    case 0: return false
    case -1: throw VolumeFileError(.system(call: "statx", path: path, errno: errno))
    default: break  // older kernel: ask the mount table
    }
    guard let resolved = try resolve(path) else { return false }
    return try MountTable.read().contains { $0.mountPoint == resolved }
  }

  /// The filesystem type of the topmost mount at `path`, or nil if nothing is mounted there
  /// (or the path does not exist).
  public static func fsType(_ path: String) throws -> String? {
    guard let resolved = try resolve(path) else { return nil }
    // The last line for a mount point is the topmost mount there.
    return try MountTable.read().last { $0.mountPoint == resolved }?.fsType
  }

  /// The canonical path the mount table uses, or nil if it does not exist.
  private static func resolve(_ path: String) throws -> String? {
    guard let resolved = realpath(path, nil) else {
      let code = errno
      if code == ENOENT || code == ENOTDIR { return nil }
      throw VolumeFileError(.system(call: "realpath", path: path, errno: code))
    }
    defer { free(resolved) }
    return String(cString: resolved)
  }
}
