import GRPCCore
import GRPCH2
import Glibc
import UVRuntime

/// The running provider: one loop, the gRPC server on it, signals and the stats
/// file. `run()` is its lifetime and returns after a graceful shutdown with every
/// libuv handle closed and the socket file removed.
final class ProviderServer: Sendable {
  let endpoint: Endpoint
  let loop: EventLoop
  let log: Log
  let stats: Stats
  let statsPath: String?
  let server: GRPCServer<H2ServerTransport>
  private let signalCount = Locked(0)

  init(endpoint: Endpoint, maxReceiveMessageBytes: Int, service: (EventLoop) -> ProviderService, stats: Stats, statsPath: String?, log: Log, spin: Duration = .zero) {
    self.endpoint = endpoint
    self.log = log
    self.stats = stats
    self.statsPath = statsPath
    loop = EventLoop(name: "provider-loop", spin: spin)
    let transport = H2ServerTransport(
      config: .init(endpoint: endpoint, maxReceiveMessageBytes: maxReceiveMessageBytes), loop: loop)
    server = GRPCServer(transport: transport, services: [service(loop)])
  }

  /// Serves until SIGTERM/SIGINT, then lets calls in flight finish.
  func run() async throws {
    let (signals, writer) = try await loop.submit { [self] in
      let signals = try [UVSignal.terminate, UVSignal.interrupt].map { signum in
        try UVSignal(on: loop, signal: signum) { [self] signum in onSignal(signum) }
      }
      let writer = statsPath.map { StatsWriter(path: $0, stats: stats, log: log) }
      writer?.start(on: loop)
      return (signals, UncheckedBox(writer))
    }
    log.info("serving v1alpha1.CSIDriverProvider", ["endpoint": "\(endpoint)"])
    let serving = Task(executorPreference: loop) { [server] in try await server.serve() }
    let result = await serving.result
    try await loop.submit {
      for s in signals { s.close() }
      // After serve() returned no call is in flight: these are the final counters.
      writer.value?.stop()
    }
    await loop.shutdownAndWait()
    if !loop.leakedHandles.isEmpty {
      log.warning("libuv handles left open at shutdown", ["handles": "\(loop.leakedHandles)"])
    }
    try result.get()
    log.info("stopped")
  }

  private func onSignal(_ signum: Int32) {
    let count = signalCount.withLock { n -> Int in
      n += 1
      return n
    }
    if count == 1 {
      log.info("signal received, shutting down gracefully", ["signal": "\(signum)"])
      server.beginGracefulShutdown()
    } else {
      log.warning("second signal, stopping now", ["signal": "\(signum)"])
      _exit(1)
    }
  }
}

/// Carries a loop-confined object through `loop.submit` back to the loop later.
struct UncheckedBox<T>: @unchecked Sendable {
  let value: T
  init(_ value: T) { self.value = value }
}
