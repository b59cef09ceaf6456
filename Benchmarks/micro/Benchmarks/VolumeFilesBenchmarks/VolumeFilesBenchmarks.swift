import Benchmark
import Glibc
import MicroSupport
import VolumeFiles

// Path validation (`.kilo` samples: malloc counts per 1000 paths) and the atomic writer on
// a tmpfs of its own, mounted in setup and unmounted in teardown (needs root).
let benchmarks: @Sendable () -> Void = {
  let typical = ["db-password", "tls/tls.crt", "config/app/settings.json"]
  // 16 elements of 250 bytes: 4015 bytes, near both limits (255 per element, 4096 in all).
  let long = (0..<16).map { String(repeating: Character(UnicodeScalar(UInt8(ascii: "a") + UInt8($0))), count: 250) }
    .joined(separator: "/")

  // Each operation validates all three typical paths.
  Benchmark("PathRules.validate.typical", configuration: Micro.configuration(scaling: .kilo)) { benchmark in
    try benchmark.measuringCPU {
      for _ in benchmark.scaledIterations {
        for path in typical { try PathRules.validate(path) }
      }
    }
  }

  Benchmark("PathRules.validate.long", configuration: Micro.configuration(scaling: .kilo)) { benchmark in
    try benchmark.measuringCPU {
      for _ in benchmark.scaledIterations {
        try PathRules.validate(long)
      }
    }
  }

  let volume = Slot<String>()
  func mounted() throws -> String { try volume.get("the tmpfs") }
  // A fresh tmpfs per benchmark; the first-write benchmark leaves one volume per iteration.
  let writer = Micro.configuration(
    maxIterations: 5_000,
    setup: {
      let directory = try makeTemporaryDirectory()
      try Tmpfs.mount(at: directory, sizeBytes: 256 << 20)
      volume.value = directory
    },
    teardown: {
      guard let directory = volume.value else { return }
      volume.value = nil
      try Tmpfs.unmount(directory)
      rmdir(directory)
    }
  )
  let files = secretFiles(seed: 0)
  let changedFiles = secretFiles(seed: 1)

  // Into an empty volume: plan, timestamp directory, 3 files, `..data` and 3 links.
  var volumes = 0
  Benchmark("AtomicWriter.write.first", configuration: writer) { benchmark in
    volumes += 1
    let directory = "\(try mounted())/\(volumes)"
    guard mkdir(directory, 0o755) == 0 else { throw BenchmarkFailure("mkdir \(directory): errno \(errno)") }
    let target = AtomicWriter(directory: directory)
    benchmark.startMeasurement()
    try benchmark.measuringCPU { try expect(.written, try target.write(files, defaultMode: 0o644)) }
  }

  // The rotation poll's common case: the provider returned what is already there.
  Benchmark("AtomicWriter.write.unchanged", configuration: writer) { benchmark in
    let target = AtomicWriter(directory: try mounted())
    if benchmark.currentIteration == 0 { _ = try target.write(files, defaultMode: 0o644) }
    benchmark.startMeasurement()
    try benchmark.measuringCPU { try expect(.unchanged, try target.write(files, defaultMode: 0o644)) }
  }

  // A rotation: every iteration swaps in the other version and removes the old one.
  Benchmark("AtomicWriter.write.changed", configuration: writer) { benchmark in
    let target = AtomicWriter(directory: try mounted())
    let next = benchmark.currentIteration.isMultiple(of: 2) ? changedFiles : files
    if benchmark.currentIteration == 0 { _ = try target.write(files, defaultMode: 0o644) }
    benchmark.startMeasurement()
    try benchmark.measuringCPU { try expect(.written, try target.write(next, defaultMode: 0o644)) }
  }
}

/// 3 files of 256 bytes, as a provider returns them; `seed` changes every byte.
func secretFiles(seed: UInt8) -> [SecretFile] {
  ["db-password", "api-key", "tls.crt"].enumerated().map { index, name in
    SecretFile(path: name, mode: 0, contents: (0..<256).map { UInt8(truncatingIfNeeded: $0) &+ UInt8(index) &+ seed })
  }
}

func expect(_ expected: WriteOutcome, _ outcome: WriteOutcome) throws {
  guard outcome == expected else { throw BenchmarkFailure("write was \(outcome), expected \(expected)") }
}

func makeTemporaryDirectory() throws -> String {
  var template = Array("/tmp/csi-micro-XXXXXX".utf8CString)
  guard let created = mkdtemp(&template) else { throw BenchmarkFailure("mkdtemp: errno \(errno)") }
  return String(cString: created)
}
