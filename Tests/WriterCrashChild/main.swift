// The child of the kill-at-every-step test (Tests/VolumeFilesTests/WriterCrashTests.swift):
// runs one AtomicWriter.write into a directory and is killed with SIGKILL just before its
// Nth system call through `sys` (debug builds' fault point).
//
//     writer-crash-child <directory> <N> [--empty] [--umask <octal>] [<path> <octal mode> <contents>]...
//
// N = 0: never killed. --empty: the write of a first mount (`emptyVolume`, the volume
// not listed). --umask: the process umask to write under (set before the writer first
// reads it). Exits 0 when the write finished before the Nth call, 2 when it failed.
import Glibc
import VolumeFiles

func complain(_ text: String) {
  let line = Array((text + "\n").utf8)
  _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

let args = CommandLine.arguments
var i = 3
var empty = false
while i < args.count, args[i].hasPrefix("--") {
  switch args[i] {
  case "--empty":
    empty = true
    i += 1
  case "--umask" where i + 1 < args.count:
    umask(mode_t(args[i + 1], radix: 8) ?? 0o022)
    i += 2
  default:
    i = args.count + 1  // usage below
  }
}
guard args.count >= 3, i <= args.count, (args.count - i) % 3 == 0, let n = Int(args[2]), n >= 0 else {
  complain("usage: writer-crash-child <directory> <N> [--empty] [--umask <octal>] [<path> <octal mode> <contents>]...")
  exit(64)
}
var files: [SecretFile] = []
while i < args.count {
  files.append(SecretFile(path: args[i], mode: UInt32(args[i + 1], radix: 8) ?? 0, contents: Array(args[i + 2].utf8)))
  i += 3
}
#if DEBUG
  SyscallFaultPoint.killBefore(call: n)
  do {
    _ = try AtomicWriter(directory: args[1]).write(files, defaultMode: 0o644, emptyVolume: empty)
  } catch {
    SyscallFaultPoint.killBefore(call: 0)
    complain("write failed: \(error)")
    exit(2)
  }
  SyscallFaultPoint.killBefore(call: 0)
  exit(0)
#else
  complain("writer-crash-child needs a debug build (the fault point exists only there)")
  exit(3)
#endif
