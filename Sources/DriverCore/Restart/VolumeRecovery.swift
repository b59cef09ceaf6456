import Glibc
import KubeClient
import Logging
import VolumeFiles

/// Restart with live mounts: before the CSI socket serves, find every volume an earlier
/// run of the driver served (its tmpfs in the mount table, its record in the state
/// directory) and serve it from here on, without a remount.
///
/// - A record whose target holds one of our tmpfs mounts with content: adopted (a
///   `VolumeActor` that knows it is mounted, its versions and last fetch) and handed to
///   the rotation timer, due at last fetch + interval. A volume whose request carried
///   tokens or secrets (never recorded) waits for kubelet's next republish.
/// - A record without such a mount: the volume is gone; the record is removed.
/// - One of our mounts without `..data` (a first mount that never completed; kubelet
///   never got an answer and retries): unmounted, its target removed.
/// - One of our mounts with content but no record (a killed first mount that had written
///   everything, or a lost state directory): logged; unpublish works as for any target,
///   and the next republish adopts it.
/// - Adopted volumes: whatever a killed write left half-done is finished
///   (`AtomicWriter.repairInterruptedWrite`).
///
/// Removing and repairing happen only while this driver holds the state directory's
/// lock: during a rolling update the previous driver may still be writing, so the new
/// one adopts at once and settles once the previous one has exited.
struct VolumeRecovery: Sendable {
  let store: VolumeStateStore
  let registry: VolumeRegistry
  let env: VolumeEnvironment
  /// Before this driver named its mounts after itself they were "tmpfs": still adopted
  /// when recorded, never removed.
  static let legacySource = "tmpfs"

  struct Summary: Sendable, CustomStringConvertible {
    var adopted = 0
    var recordsRemoved = 0
    var halfBuiltRemoved = 0
    var repaired = 0
    var unrecorded = 0
    var failures = 0
    var owner = false

    var description: String {
      "adopted=\(adopted) records_removed=\(recordsRemoved) half_built_removed=\(halfBuiltRemoved) repaired=\(repaired) unrecorded=\(unrecorded) failures=\(failures)"
    }
  }

  /// One pass; `settle` removes and repairs (only for the lock's holder).
  func run(settle: Bool) async -> Summary {
    var summary = Summary()
    summary.owner = settle
    let logger = env.logger
    let ours = env.settings.mountSource
    let mounts: [String: MountEntry]
    let loaded: (records: [VolumeStateRecord], unreadable: [String])
    do {
      // The topmost tmpfs per mount point (a later line is mounted over an earlier one).
      var top: [String: MountEntry] = [:]
      for entry in try MountTable.read() { top[entry.mountPoint] = entry }
      // Only beneath this driver's kubelet root: another driver on the machine (another
      // kubelet root, as tests and benchmarks run them) owns what lies elsewhere, and its
      // first mounts have no `..data` until their provider answers.
      let pods = DriverConfig.podsDirectory(kubeletRootDir: env.settings.kubeletRootDir)
      mounts = top.filter {
        $0.value.fsType == "tmpfs" && ($0.value.source == ours || $0.value.source == Self.legacySource)
          && VolumeTarget(path: $0.key, under: pods) != nil
      }
      loaded = try store.loadAll()
    } catch {
      logger.error("cannot look for volumes an earlier run served; they are adopted at their next republish", metadata: ["error": "\(error)"])
      summary.failures += 1
      return summary
    }
    for name in loaded.unreadable where settle {
      logger.warning("removing an unreadable file from the state directory", metadata: ["file": "\(store.directory)/\(name)"])
      store.removeFile(name)
    }
    let nowWall = TokenExpiry.wallNow()
    let nowClock = env.now()
    var recorded: Set<String> = []
    for record in loaded.records {
      let target = record.targetPath
      recorded.insert(target)
      guard mounts[target] != nil, hasContent(target) else {
        if mounts[target] == nil {
          // Unpublished (or unmounted by someone else) while no driver ran.
          try? store.remove(target: target)
          summary.recordsRemoved += 1
        }
        continue
      }
      let age = Duration.milliseconds(Int64(max(0, nowWall - record.lastFetch) * 1000))
      let adopted = AdoptedVolume(
        versions: record.versions, lastFetch: nowClock - age, request: record.request, interval: record.interval,
        provider: record.provider)
      let added = registry.adopt(target) { loop, activity in
        VolumeActor(targetPath: target, loop: loop, activity: activity, adopting: adopted)
      }
      guard added else { continue }  // this run serves it already
      summary.adopted += 1
      if let rotation = env.rotation {
        rotation.noteFetched(
          RotationPlan.Volume(
            target: target, backoffKey: "\(record.podNamespace)/\(record.serviceAccount)/\(record.secretProviderClass)",
            interval: record.interval, lastFetch: KubeClient.monotonicNow() - age,
            // Without a rebuildable request it waits for kubelet's republish and its tokens.
            tokensExpire: record.request == nil ? .zero : nil))
      }
    }
    for (target, entry) in mounts where !recorded.contains(target) && entry.source == ours {
      if hasContent(target) {
        summary.unrecorded += 1
        logger.warning(
          "a volume of this driver is mounted without a record in the state directory; unpublish works, and its next republish adopts it",
          metadata: ["target": "\(target)"])
      }
    }
    guard settle else { return summary }
    // Under each volume's lock, serialised with any request this run has taken meanwhile.
    for (target, entry) in mounts
    where recorded.contains(target) || (entry.source == ours && Self.isKubeletVolumeTarget(target)) {
      let result = (try? await registry.withVolume(target) { volume in await volume.settleAfterRestart(env: env) }) ?? .none
      switch result {
      case .none: break
      case .repaired(let repair):
        summary.repaired += 1
        logger.info(
          "finished a write an earlier run left half-done", metadata: ["target": "\(target)", "removed": "\(repair.removed)", "links_fixed": "\(repair.linksFixed)"])
      case .removedHalfBuilt:
        summary.halfBuiltRemoved += 1
        logger.info("removed a first mount that never completed; kubelet retries the publish", metadata: ["target": "\(target)"])
      case .failed(let error):
        summary.failures += 1
        logger.warning("cannot settle a volume an earlier run left", metadata: ["target": "\(target)", "error": "\(error)"])
      }
    }
    return summary
  }

  /// kubelet's target for a CSI volume: `.../pods/<uid>/volumes/kubernetes.io~csi/<volume>/mount`.
  /// An unrecorded mount elsewhere is not taken for one of ours, whatever its source says.
  static func isKubeletVolumeTarget(_ path: String) -> Bool {
    let parts = path.split(separator: "/")
    guard parts.count >= 6 else { return false }
    let n = parts.count
    return parts[n - 1] == "mount" && parts[n - 3] == "kubernetes.io~csi" && parts[n - 4] == "volumes" && parts[n - 6] == "pods"
  }

  /// Whether the writer's `..data` link is in the volume, looked up beneath the kubelet
  /// root as every other volume operation is (no symlink followed on the way).
  private func hasContent(_ target: String) -> Bool {
    let pods = DriverConfig.podsDirectory(kubeletRootDir: env.settings.kubeletRootDir)
    guard let volume = VolumeTarget(path: target, under: pods) else { return false }
    return (try? volume.hasEntry("..data")) == true
  }

}
