import ArgumentParser
import CSIMessages
import GRPCCore
import GRPCH2
import Glibc
import Synchronization
import UVRuntime

/// Benchmarks a running driver over its socket, from outside its process,
/// through our own client transport, at several concurrencies:
/// `--workload rtt` times NodeGetInfo (unary round trip); `--workload publish`
/// times NodePublishVolume and NodeUnpublishVolume cycles, each worker on its
/// own pod volume under `--target-root`.
@main
struct Bench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "csi-bench",
    abstract: "Measure a running driver: unary RTT (NodeGetInfo) or publish/unpublish latency; p50/p90/p99 and calls/s.")

  @Option(help: "Driver endpoint (unix:///path/csi.sock or tcp://host:port).")
  var endpoint: String

  @Option(help: "Comma-separated concurrencies.")
  var concurrency = "1,4,16"

  @Option(name: .customLong("seconds"), help: "Measured seconds per concurrency level.")
  var seconds = 5.0

  @Option(name: .customLong("warmup-calls"), help: "Calls before measuring.")
  var warmupCalls = 2000

  @Option(name: .customLong("timeout-ms"), help: "rtt: per-call deadline sent as grpc-timeout (0: none).")
  var timeoutMs = 0

  @Option(help: "rtt (NodeGetInfo), publish (NodePublishVolume + NodeUnpublishVolume cycles) or republish (repeated NodePublishVolume of mounted volumes).")
  var workload = "rtt"

  @Option(name: .customLong("target-root"), help: "publish: kubelet root under which pod volumes are created (<root>/pods/...); start the driver with the same --kubelet-root-dir.")
  var targetRoot = "/tmp/csi-bench"

  @Option(help: "publish: the SecretProviderClass the volumes use.")
  var spc = "bench"

  @Option(help: "publish: the pods' namespace.")
  var namespace = "default"

  @Option(name: .customLong("loop-spin-us"), help: "Microseconds the client's loop keeps polling after work before sleeping (0 to 1000).")
  var loopSpinUs = 50

  @Option(help: "publish: run exactly this many publish+unpublish cycles per concurrency level (shared by the workers) instead of --seconds; for counting the driver's work per cycle.")
  var cycles = 0

  func run() async throws {
    let endpoint = try Endpoint(parsing: endpoint)
    let levels = concurrency.split(separator: ",").compactMap { Int($0) }
    let loop = EventLoop(name: "bench", spin: EventLoop.spin(microseconds: loopSpinUs))
    let transport = H2ClientTransport(config: .init(endpoint: endpoint, authority: "localhost"), loop: loop)
    let duration = seconds
    let warmup = warmupCalls
    let timeout = timeoutMs
    let cycles = cycles
    if workload == "publish" || workload == "republish" {
      let root = targetRoot
      let spc = spc
      let namespace = namespace
      try await withGRPCClient(transport: transport) { client in
        try await withTaskExecutorPreference(loop) {
          try await Self.publishBenchmark(
            client: client, levels: levels, seconds: duration, warmup: warmup, root: root, spc: spc, namespace: namespace,
            republishOnly: workload == "republish", cycles: cycles)
        }
      }
      await loop.shutdownAndWait()
      return
    }
    try await withGRPCClient(transport: transport) { client in
      try await withTaskExecutorPreference(loop) {
        for _ in 0..<warmup { _ = try await client.call(CSI.Node.nodeGetInfo, CSI.NodeGetInfoRequest()) }
        print("concurrency    calls     calls/s    p50 µs    p90 µs    p99 µs    max µs")
        for level in levels {
          let r = try await Self.measure(client: client, concurrency: level, seconds: duration, timeoutMs: timeout)
          print(r)
        }
      }
    }
    await loop.shutdownAndWait()
  }

  struct Result: CustomStringConvertible {
    var concurrency: Int
    var samples: [UInt64]
    var elapsedNs: UInt64

    func percentile(_ p: Double) -> Double {
      let i = min(samples.count - 1, Int(Double(samples.count) * p))
      return Double(samples[i]) / 1000
    }

    var description: String {
      let rate = Double(samples.count) / (Double(elapsedNs) / 1e9)
      func col(_ v: Double, _ w: Int) -> String {
        let s = String(Int(v.rounded()))
        return String(repeating: " ", count: max(0, w - s.count)) + s
      }
      return col(Double(concurrency), 11) + col(Double(samples.count), 9) + col(rate, 12)
        + col(percentile(0.5), 10) + col(percentile(0.9), 10) + col(percentile(0.99), 10) + col(Double(samples.last ?? 0) / 1000, 10)
    }
  }

  static func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
  }

  static func measure(client: GRPCClient<H2ClientTransport>, concurrency: Int, seconds: Double, timeoutMs: Int = 0) async throws -> Result {
    let metadata: Metadata = timeoutMs > 0 ? GRPCTimeout.metadata(.milliseconds(timeoutMs)) : [:]
    let start = now()
    let end = start + UInt64(seconds * 1e9)
    var all: [UInt64] = []
    try await withThrowingTaskGroup(of: [UInt64].self) { group in
      for _ in 0..<concurrency {
        group.addTask {
          var samples: [UInt64] = []
          samples.reserveCapacity(200_000)
          while true {
            let t0 = now()
            if t0 >= end { break }
            _ = try await client.call(CSI.Node.nodeGetInfo, CSI.NodeGetInfoRequest(), metadata: metadata)
            samples.append(now() - t0)
          }
          return samples
        }
      }
      for try await s in group { all += s }
    }
    all.sort()
    return Result(concurrency: concurrency, samples: all, elapsedNs: now() - start)
  }

  // MARK: publish workload

  static func publishRequest(root: String, worker: Int, spc: String, namespace: String) -> CSI.NodePublishVolumeRequest {
    let uid = "bench-pod-\(worker)"
    let parent = "\(root)/pods/\(uid)/volumes/kubernetes.io~csi/secrets"
    var path = ""
    for element in parent.split(separator: "/") {  // kubelet creates the parent
      path += "/" + element
      mkdir(path, 0o750)
    }
    return CSI.NodePublishVolumeRequest(
      volumeID: "csi-bench-\(worker)",
      targetPath: parent + "/mount",
      volumeCapability: CSI.VolumeCapability(
        accessType: .mount(CSI.VolumeCapability.MountVolume()),
        accessMode: CSI.VolumeCapability.AccessMode(mode: .singleNodeWriter)),
      readonly: true,
      volumeContext: [
        "secretProviderClass": spc,
        "csi.storage.k8s.io/pod.name": uid,
        "csi.storage.k8s.io/pod.namespace": namespace,
        "csi.storage.k8s.io/pod.uid": uid,
        "csi.storage.k8s.io/serviceAccount.name": "default",
        "csi.storage.k8s.io/ephemeral": "true",
      ])
  }

  static func publishBenchmark(
    client: GRPCClient<H2ClientTransport>, levels: [Int], seconds: Double, warmup: Int, root: String, spc: String, namespace: String,
    republishOnly: Bool = false, cycles: Int = 0
  ) async throws {
    let maxLevel = levels.max() ?? 1
    let requests = (0..<maxLevel).map { publishRequest(root: root, worker: $0, spc: spc, namespace: namespace) }
    for _ in 0..<min(warmup, 500) {
      _ = try await client.call(CSI.Node.nodePublishVolume, requests[0])
      _ = try await client.call(CSI.Node.nodeUnpublishVolume, unpublish(requests[0]))
    }
    print("concurrency  rpc          calls     calls/s    p50 µs    p90 µs    p99 µs    max µs")
    for level in levels {
      let start = now()
      let end = start + UInt64(seconds * 1e9)
      // --cycles: a shared budget of cycles instead of a deadline.
      let budget = CycleBudget(cycles)
      var pubs: [UInt64] = []
      var unpubs: [UInt64] = []
      try await withThrowingTaskGroup(of: ([UInt64], [UInt64]).self) { group in
        for worker in 0..<level {
          let request = requests[worker]
          group.addTask {
            var p: [UInt64] = []
            var u: [UInt64] = []
            if republishOnly {
              // kubelet's periodic republish of a mounted volume; unpublished at the end.
              _ = try await client.call(CSI.Node.nodePublishVolume, request)
              while now() < end {
                let t0 = now()
                _ = try await client.call(CSI.Node.nodePublishVolume, request)
                p.append(now() - t0)
              }
              let t1 = now()
              _ = try await client.call(CSI.Node.nodeUnpublishVolume, unpublish(request))
              u.append(now() - t1)
              return (p, u)
            }
            while cycles > 0 ? budget.take() : now() < end {
              let t0 = now()
              _ = try await client.call(CSI.Node.nodePublishVolume, request)
              let t1 = now()
              _ = try await client.call(CSI.Node.nodeUnpublishVolume, unpublish(request))
              p.append(t1 - t0)
              u.append(now() - t1)
            }
            return (p, u)
          }
        }
        for try await (p, u) in group {
          pubs += p
          unpubs += u
        }
      }
      let elapsed = now() - start
      pubs.sort()
      unpubs.sort()
      let p = Result(concurrency: level, samples: pubs, elapsedNs: elapsed).description
      let u = Result(concurrency: level, samples: unpubs, elapsedNs: elapsed).description
      print(String(p.prefix(11)) + "  publish  " + String(p.dropFirst(11)))
      print(String(u.prefix(11)) + "  unpublish" + String(u.dropFirst(11)))
      let cycles = Double(pubs.count) / (Double(elapsed) / 1e9)
      print("           cycles/s (publish+unpublish): \(Int(cycles.rounded()))")
    }
  }

  /// Cycles left to run, shared by the workers of one level.
  final class CycleBudget: Sendable {
    private let left: Mutex<Int>
    init(_ n: Int) { left = Mutex(n) }
    func take() -> Bool { left.withLock { if $0 > 0 { $0 -= 1; return true } else { return false } } }
  }

  static func unpublish(_ r: CSI.NodePublishVolumeRequest) -> CSI.NodeUnpublishVolumeRequest {
    CSI.NodeUnpublishVolumeRequest(volumeID: r.volumeID, targetPath: r.targetPath)
  }
}
