import GRPCCore
import GRPCH2
import Glibc
public import Logging
public import UVRuntime

/// The running driver: one loop, the CSI gRPC server on it, signal handling.
/// `run()` is its lifetime: it returns after a graceful shutdown, with every
/// libuv handle closed.
public final class Driver: Sendable {
  public let config: DriverConfig
  public let endpoint: Endpoint
  public let loop: EventLoop
  let logger: Logger
  let server: GRPCServer<H2ServerTransport>
  let transport: H2ServerTransport

  public init(config: DriverConfig, endpoint: Endpoint, maxReceiveMessageBytes: Int, logger: Logger, loop: EventLoop? = nil) {
    self.config = config
    self.endpoint = endpoint
    self.logger = logger
    self.loop = loop ?? EventLoop(name: "csi-loop")
    transport = H2ServerTransport(config: .init(endpoint: endpoint, maxReceiveMessageBytes: maxReceiveMessageBytes), loop: self.loop)
    server = GRPCServer(
      transport: transport,
      services: [IdentityService(config: config), NodeService(config: config)],
      interceptors: [LoggingInterceptor(logger: logger)])
  }

  /// Serves until SIGTERM/SIGINT (or `beginGracefulShutdown`), then drains.
  public func run() async throws {
    let signals = try await loop.submit { [self] in
      try [UVSignal.terminate, UVSignal.interrupt].map { signum in
        try UVSignal(on: loop, signal: signum) { [self] signum in onSignal(signum) }
      }
    }
    logger.info(
      "serving CSI", metadata: ["endpoint": "\(endpoint)", "driver": "\(config.driverName)", "node": "\(config.nodeID)", "version": "\(config.version)"])
    let serving = Task(executorPreference: loop) { [server] in try await server.serve() }
    let result = await serving.result
    try await loop.submit { for s in signals { s.close() } }
    await loop.shutdownAndWait()
    if !loop.leakedHandles.isEmpty {
      logger.warning("libuv handles left open at shutdown", metadata: ["handles": "\(loop.leakedHandles)"])
    }
    try result.get()
    logger.info("stopped")
  }

  private let signalCount = Locked(0)

  private func onSignal(_ signum: Int32) {
    let count = signalCount.withLock { n -> Int in
      n += 1
      return n
    }
    if count == 1 {
      logger.info("signal received, shutting down gracefully", metadata: ["signal": "\(signum)"])
      server.beginGracefulShutdown()
    } else {
      logger.warning("second signal, stopping now", metadata: ["signal": "\(signum)"])
      _exit(1)
    }
  }

  public func beginGracefulShutdown() {
    server.beginGracefulShutdown()
  }
}
