import CSIMessages
import GRPCCore
import UVRuntime

/// `v1alpha1.CSIDriverProvider`: Version and Mount.
struct ProviderService: RegistrableRPCService {
  static let apiVersion = "v1alpha1"

  let runtimeName: String
  let runtimeVersion: String
  let mounter: Mounter
  let stats: Stats
  let log: Log
  /// Injected latency waits on this loop's timers.
  let loop: EventLoop

  func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    router.registerUnary(Provider.CSIDriverProvider.version) { _ in version() }
    router.registerUnary(Provider.CSIDriverProvider.mount) { request in try await mount(request) }
  }

  func version() -> Provider.VersionResponse {
    stats.versionCalled()
    log.debug("Version", ["outcome": "ok"])
    return Provider.VersionResponse(version: Self.apiVersion, runtimeName: runtimeName, runtimeVersion: runtimeVersion)
  }

  func mount(_ request: Provider.MountRequest) async throws -> Provider.MountResponse {
    stats.mountStarted()
    // Decoding JSON, reading files and hashing happen off the loop thread, which
    // stays free for the connections; only the wait is on the loop (a libuv timer).
    let mounter = self.mounter
    let outcome = await withTaskExecutorPreference(globalConcurrentExecutor) { mounter.evaluate(request) }
    if outcome.delayMs > 0 {
      do {
        try await loop.sleep(milliseconds: outcome.delayMs)
      } catch {
        finish(outcome, errorLabel: "CANCELLED", reason: "cancelled while waiting")
        throw RPCError(code: .cancelled, message: "call cancelled during injected latency")
      }
    }
    finish(outcome, errorLabel: outcome.errorLabel, reason: outcome.reason)
    switch outcome.answer {
    case .response(let response): return response
    case .status(let error): throw error
    }
  }

  private func finish(_ outcome: MountOutcome, errorLabel: String?, reason: String?) {
    stats.mountFinished(error: errorLabel, hostile: outcome.hostile, objects: outcome.objectCount)
    guard log.enabled(.debug) else { return }
    let result = errorLabel ?? (outcome.hostile.map { "hostile:\($0.rawValue)" } ?? "ok")
    if let reason {
      log.debug("Mount", ["objects": "\(outcome.objectCount)", "outcome": result, "latency_ms": "\(outcome.delayMs)", "reason": reason])
    } else {
      log.debug("Mount", ["objects": "\(outcome.objectCount)", "outcome": result, "latency_ms": "\(outcome.delayMs)"])
    }
  }
}

extension RPCRouter {
  /// Registers a unary handler for a typed method. An `RPCError` thrown by the
  /// handler reaches the client as that status.
  fileprivate mutating func registerUnary<Request, Response>(
    _ method: UnaryMethod<Request, Response>,
    handler: @escaping @Sendable (Request) async throws -> Response
  ) {
    registerHandler(forMethod: method.descriptor, deserializer: method.deserializer, serializer: method.serializer) {
      request, _ in
      let single = try await ServerRequest(stream: request)
      return StreamingServerResponse(single: ServerResponse(message: try await handler(single.message)))
    }
  }
}
