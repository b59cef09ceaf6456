import Logging
import UVRuntime

extension Driver {
  /// Adopts the volumes an earlier run served (see `VolumeRecovery`); called before the
  /// CSI socket serves. When another driver still holds the state directory (a rolling
  /// update), returns a task that settles what was left once that driver has exited.
  func recoverVolumes() async -> Task<Void, Never>? {
    guard let store = publisher.env.state else { return nil }
    let started = ContinuousClock.now
    let recovery = VolumeRecovery(store: store, registry: volumes, env: publisher.env)
    let owner = store.tryLock()
    let summary = await recovery.run(settle: owner)
    logger.info(
      "volumes of earlier runs recovered",
      metadata: [
        "state_dir": "\(store.directory)", "adopted": "\(summary.adopted)", "records_removed": "\(summary.recordsRemoved)",
        "half_built_removed": "\(summary.halfBuiltRemoved)", "repaired": "\(summary.repaired)", "unrecorded": "\(summary.unrecorded)",
        "failures": "\(summary.failures)", "ms": "\(LoggingInterceptor.milliseconds(ContinuousClock.now - started))",
        "settled": "\(owner ? "now" : "when the driver holding the state directory exits")",
      ])
    if owner { return nil }
    return Task(executorPreference: loop) { [loop, logger] in
      while !Task.isCancelled {
        do { try await loop.sleep(milliseconds: 1000) } catch { return }
        guard store.tryLock() else { continue }
        let summary = await recovery.run(settle: true)
        logger.info("volumes of earlier runs settled after the previous driver exited", metadata: ["summary": "\(summary)"])
        return
      }
    }
  }
}
