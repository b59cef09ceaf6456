import ArgumentParser
import CSIMessages
import GRPCCore
import GRPCH2
import Glibc
import UVRuntime

/// Unary round-trip benchmark: NodeGetInfo against a running driver over its
/// socket, through our own client transport, at several concurrencies.
@main
struct Bench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "csi-bench",
    abstract: "Measure unary RTT (NodeGetInfo) against a running driver: p50/p90/p99 and calls/s.")

  @Option(help: "Driver endpoint (unix:///path/csi.sock or tcp://host:port).")
  var endpoint: String

  @Option(help: "Comma-separated concurrencies.")
  var concurrency = "1,4,16"

  @Option(name: .customLong("seconds"), help: "Measured seconds per concurrency level.")
  var seconds = 5.0

  @Option(name: .customLong("warmup-calls"), help: "Calls before measuring.")
  var warmupCalls = 2000

  func run() async throws {
    let endpoint = try Endpoint(parsing: endpoint)
    let levels = concurrency.split(separator: ",").compactMap { Int($0) }
    let loop = EventLoop(name: "bench")
    let transport = H2ClientTransport(config: .init(endpoint: endpoint, authority: "localhost"), loop: loop)
    let duration = seconds
    let warmup = warmupCalls
    try await withGRPCClient(transport: transport) { client in
      try await withTaskExecutorPreference(loop) {
        for _ in 0..<warmup { _ = try await client.call(CSI.Node.nodeGetInfo, CSI.NodeGetInfoRequest()) }
        print("concurrency    calls     calls/s    p50 µs    p90 µs    p99 µs    max µs")
        for level in levels {
          let r = try await Self.measure(client: client, concurrency: level, seconds: duration)
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

  static func measure(client: GRPCClient<H2ClientTransport>, concurrency: Int, seconds: Double) async throws -> Result {
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
            _ = try await client.call(CSI.Node.nodeGetInfo, CSI.NodeGetInfoRequest())
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
}
