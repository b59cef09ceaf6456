import CSIMessages
import KubeClient
import Logging
import VolumeFiles

/// What a restarted driver knows about a volume it adopts, from its record.
struct AdoptedVolume: Sendable {
  var versions: [Provider.ObjectVersion]
  /// The record's last fetch on this process's clock.
  var lastFetch: ContinuousClock.Instant
  /// The request rebuilt from the record, when a timer refresh needs nothing else.
  var request: ValidPublishRequest?
  var interval: Duration?
  var provider: String
}

/// What `VolumeActor.settleAfterRestart` did.
enum RestartSettlement: Sendable {
  case none
  case repaired(WriteRepair)
  case removedHalfBuilt
  case failed(String)
}

extension VolumeActor {
  /// Records the volume in the state directory after a successful fetch. A failure is
  /// logged, never fails the request: the record only matters after a restart. The
  /// file work goes where the volume's other file work goes (`onPool`).
  func saveState(
    _ request: ValidPublishRequest, spc: SecretProviderClass, versions: [Provider.ObjectVersion], files: [SecretFile],
    env: VolumeEnvironment
  ) async {
    guard let store = env.state else { return }
    let record = VolumeStateRecord(
      request: request, provider: spc.provider, versions: versions, files: files, defaultMode: MountRequestBuilder.defaultFileMode,
      lastFetch: TokenExpiry.wallNow(), rotationInterval: spc.rotationInterval)
    if let error = await stateFileWork({ try store.save(record) }) {
      env.logger.warning(
        "cannot record the volume in the state directory; a restarted driver will adopt it only at its next republish",
        metadata: ["target": "\(targetPath)", "error": "\(error)"])
    }
  }

  func removeState(env: VolumeEnvironment) async {
    guard let store = env.state else { return }
    let target = targetPath
    if let error = await stateFileWork({ try store.remove(target: target) }) {
      env.logger.warning("cannot remove the volume's record from the state directory", metadata: ["target": "\(targetPath)", "error": "\(error)"])
    }
  }

  /// Runs a state-directory call as the volume runs its other file work; its error, if any.
  private func stateFileWork(_ work: @escaping @Sendable () throws -> Void) async -> String? {
    do {
      return try await onPool { () throws(PublishError) -> String? in
        do {
          try work()
          return nil
        } catch {
          return "\(error)"
        }
      }
    } catch {
      return error.message
    }
  }

  /// An adopted volume got kubelet's request (with any tokens it carries): it is due
  /// when its record said, and the timer may use these tokens until they expire.
  func scheduleAdopted(_ valid: ValidPublishRequest, lastFetch: ContinuousClock.Instant, interval: Duration?, env: VolumeEnvironment) {
    let age = max(.zero, env.now() - lastFetch)
    schedule(pod: valid.pod, request: valid.csi, interval: interval, lastFetch: KubeClient.monotonicNow() - age, env: env)
  }
}
