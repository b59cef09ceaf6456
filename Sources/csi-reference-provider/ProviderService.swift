import CSIMessages
import GRPCCore
import GRPCH2
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
    router.registerUnary(Provider.CSIDriverProvider.version) { _, _ in version() }
    router.registerUnary(Provider.CSIDriverProvider.mount) { request, context in
      try await mount(request, deadlineMs: Self.deadlineMs(context.callDeadline))
    }
  }

  func version() -> Provider.VersionResponse {
    stats.versionCalled()
    log.debug("Version", ["outcome": "ok"])
    return Provider.VersionResponse(version: Self.apiVersion, runtimeName: runtimeName, runtimeVersion: runtimeVersion)
  }

  /// `deadlineMs`: the call's deadline on `Mounter.monotonicMs()`'s clock, if it has one.
  func mount(_ request: Provider.MountRequest, deadlineMs: Double? = nil) async throws -> Provider.MountResponse {
    let arrivedMs = Mounter.monotonicMs()
    let inFlight = stats.mountStarted()
    // Decoding JSON, reading files and hashing take tens of microseconds: alone,
    // they run right here; under load they move off the loop thread, which stays
    // free for the connections. Only the wait is on the loop (a libuv timer).
    let mounter = self.mounter
    let outcome =
      inFlight <= 2 ? mounter.evaluate(request) : await withTaskExecutorPreference(globalConcurrentExecutor) { mounter.evaluate(request) }
    // The injected latency counts from arrival, as a store's latency would:
    // the provider's own work happens within it, not before it.
    let remainingMs = Double(outcome.delayMs) - (Mounter.monotonicMs() - arrivedMs)
    if remainingMs >= 1 {
      // GRPCCore reports a deadline or a client's cancel through the RPC's
      // cancellation handle, not by cancelling this task: watch both.
      let delay = InjectedDelay(loop: loop)
      let elapsed = await withTaskCancellationHandler {
        await withRPCCancellationHandler {
          await delay.wait(milliseconds: UInt64(remainingMs))
        } onCancelRPC: {
          delay.cancel()
        }
      } onCancel: {
        delay.cancel()
      }
      guard elapsed else {
        // Both the deadline and a client's cancel end the call the same way; name the
        // right one. The transport starts its deadline timer a little before this
        // handler runs, hence the slack.
        if let deadlineMs, Mounter.monotonicMs() >= deadlineMs - 50 {
          finish(outcome, errorLabel: "DEADLINE_EXCEEDED", reason: "deadline passed while waiting")
          throw RPCError(code: .deadlineExceeded, message: "deadline exceeded during injected latency")
        }
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

  /// The caller's deadline (its `grpc-timeout`, from the transport) on `Mounter.monotonicMs()`'s clock.
  static func deadlineMs(_ deadline: ContinuousClock.Instant?) -> Double? {
    guard let deadline else { return nil }
    let (seconds, atto) = (deadline - .now).components
    return Mounter.monotonicMs() + Double(seconds) * 1000 + Double(atto) / 1e15
  }

  private func finish(_ outcome: MountOutcome, errorLabel: String?, reason: String?) {
    stats.mountFinished(error: errorLabel, hostile: outcome.hostile, objects: outcome.objectCount, identity: outcome.identity)
    guard log.enabled(.debug) else { return }
    let result = errorLabel ?? (outcome.hostile.map { "hostile:\($0.rawValue)" } ?? "ok")
    if let reason {
      log.debug("Mount", ["objects": "\(outcome.objectCount)", "outcome": result, "latency_ms": "\(outcome.delayMs)", "reason": reason])
    } else {
      log.debug("Mount", ["objects": "\(outcome.objectCount)", "outcome": result, "latency_ms": "\(outcome.delayMs)"])
    }
  }
}

/// One injected wait on a libuv timer that can be called off from any thread.
/// State is touched on the loop thread only.
final class InjectedDelay: @unchecked Sendable {
  private let loop: EventLoop
  private var continuation: CheckedContinuation<Bool, Never>?
  private var timer: UVTimer?
  private var cancelled = false

  init(loop: EventLoop) {
    self.loop = loop
  }

  /// True when the time elapsed, false when cancelled first.
  func wait(milliseconds: UInt64) async -> Bool {
    await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
      loop.executeOrRun { [self] in
        guard !cancelled else {
          c.resume(returning: false)
          return
        }
        continuation = c
        let timer = UVTimer(on: loop)
        self.timer = timer
        timer.start(timeoutMs: milliseconds) { [self] in finish(true) }
      }
    }
  }

  func cancel() {
    loop.executeOrRun { [self] in
      cancelled = true
      finish(false)
    }
  }

  private func finish(_ elapsed: Bool) {
    timer?.close()
    timer = nil
    continuation?.resume(returning: elapsed)
    continuation = nil
  }
}
