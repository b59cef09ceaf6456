public import CSIMessages
import Glibc
import GRPCH2
import Logging
public import UVRuntime

/// One ``VolumeActor`` per target path, made on first use and forgotten when
/// nothing is mounted there and no request is using it.
///
/// Volumes are sharded over the loops of `loops` by target path (a stable hash):
/// a target's actor always runs on the same loop, so its mount, provider call and
/// writes stay on one thread, while different targets run on different cores.
/// Each shard has its own table and its own count of requests in flight.
public final class VolumeRegistry: Sendable {
  public let loops: EventLoopGroup

  private struct Entry {
    var actor: VolumeActor
    var users: Int
    /// Counts every request that has entered: a leaver's view of the actor's idleness
    /// is stale when another request came (and maybe went) after it looked.
    var entries = 0
  }

  private struct Shard: Sendable {
    let loop: EventLoop
    let entries = Locked([String: Entry]())
    /// Publish and unpublish requests in flight on this shard's loop.
    let activity = VolumeActivity()
  }

  private let shards: [Shard]

  public init(loops: EventLoopGroup) {
    self.loops = loops
    shards = loops.loops.map { Shard(loop: $0) }
  }

  /// One loop: every volume on it (as before loop groups).
  public convenience init(loop: EventLoop) {
    self.init(loops: EventLoopGroup(loops: [loop]))
  }

  /// Loop 0 of the group.
  public var loop: EventLoop { loops.first }

  /// The loop the actor of `targetPath` runs on.
  public func loop(for targetPath: String) -> EventLoop {
    shards[loops.index(forKey: targetPath)].loop
  }

  /// Publish and unpublish requests in flight, across all loops.
  public var inFlight: Int { shards.reduce(0) { $0 + $1.activity.inFlight } }

  /// Registers an actor for a volume found mounted at startup, unless the target has one.
  /// The actor is made for the loop (and the activity count) of the shard `targetPath`
  /// belongs to, as ``withVolume(_:_:)`` would make it. Answers whether it did.
  func adopt(_ targetPath: String, _ make: (EventLoop, VolumeActivity) -> VolumeActor) -> Bool {
    let shard = shards[loops.index(forKey: targetPath)]
    return shard.entries.withLock { all in
      guard all[targetPath] == nil else { return false }
      all[targetPath] = Entry(actor: make(shard.loop, shard.activity), users: 0)
      return true
    }
  }

  /// Runs `body` on the target's actor; the entry lives at least until it returns.
  /// The caller may be on any loop: `body` runs isolated to the actor, on the target's loop.
  public func withVolume<T: Sendable>(
    _ targetPath: String, _ body: (isolated VolumeActor) async throws(PublishError) -> T
  ) async throws(PublishError) -> T {
    let shard = shards[loops.index(forKey: targetPath)]
    let (actor, entered) = shard.entries.withLock { all -> (VolumeActor, Int) in
      if var entry = all[targetPath] {
        entry.users += 1
        entry.entries += 1
        all[targetPath] = entry
        return (entry.actor, entry.entries)
      }
      let actor = VolumeActor(targetPath: targetPath, loop: shard.loop, activity: shard.activity)
      all[targetPath] = Entry(actor: actor, users: 1, entries: 1)
      return (actor, 1)
    }
    shard.activity.enter()
    // One trip to the actor's loop and back: the body and the idle check together.
    // `body` runs once, on the actor, while this caller waits for it: it is never
    // used from two places at once (the checker cannot see that through the closure).
    nonisolated(unsafe) let body = body
    func visit(_ actor: isolated VolumeActor) async -> (Result<T, PublishError>, Bool) {
      let result: Result<T, PublishError>
      do throws(PublishError) {
        result = .success(try await body(actor))
      } catch {
        result = .failure(error)
      }
      return (result, actor.isIdle)
    }
    var (result, idle): (Result<T, PublishError>, Bool)
    if loops.count == 1 {
      (result, idle) = await visit(actor)
    } else {
      // The nonisolated async code the actor calls (the provider's gRPC client, the
      // thread-pool hand-off) runs on the task's preferred executor: make that the
      // volume's loop too, or each such call would hop to the caller's loop and back.
      (result, idle) = await withTaskExecutorPreference(shard.loop) { await visit(actor) }
    }
    shard.activity.leave()
    // The last one out forgets an idle actor. `idle` was seen at the end of this body;
    // if another request entered since (and left, or it would still count as a user),
    // the volume may hold a mount now: look again before forgetting it.
    var seen = entered
    while let newer = shard.entries.withLock({ all -> Int? in
      guard var entry = all[targetPath], entry.actor === actor else { return nil }
      if idle && entry.users == 1 && entry.entries != seen { return entry.entries }
      entry.users -= 1
      if entry.users == 0 && idle {
        all[targetPath] = nil
      } else {
        all[targetPath] = entry
      }
      return nil
    }) {
      seen = newer
      idle = await actor.isIdle
    }
    return try result.get()
  }
}

/// NodePublishVolume / NodeUnpublishVolume backed by real tmpfs mounts and providers.
public struct MountingPublisher: VolumePublisher {
  public let registry: VolumeRegistry
  public let env: VolumeEnvironment

  public init(registry: VolumeRegistry, env: VolumeEnvironment) {
    self.registry = registry
    self.env = env
  }

  public func publish(
    _ request: ValidPublishRequest, deadline: ContinuousClock.Instant?
  ) async throws -> CSI.NodePublishVolumeResponse {
    let env = self.env
    let target = request.csi.targetPath
    let started = ContinuousClock.now
    do {
      let outcome = try await registry.withVolume(target) { (volume: isolated VolumeActor) async throws(PublishError) -> PublishOutcome in
        do throws(PublishError) {
          let outcome = try await volume.publish(request, deadline: deadline, env: env)
          env.metrics.published(outcome, provider: volume.lastProvider, target: target, since: started)
          return outcome
        } catch {
          env.metrics.publishFailed(error, provider: volume.lastProvider, since: started)
          throw error
        }
      }
      env.logger.debug("published", metadata: ["target": "\(target)", "outcome": "\(outcome)"])
      return CSI.NodePublishVolumeResponse()
    } catch {
      // Messages are built from scrubbed parts; once more over the whole, with
      // the request's secrets, before kubelet and the log see it.
      var error = error
      error.message = SecretScrubber(publishing: request.csi).scrub(error.message, limitBytes: 1024)
      env.logger.warning(
        "publish failed",
        metadata: ["target": "\(target)", "code": "\(error.code.canonicalName)", "error_type": "\(error.errorType)", "error": "\(error.message)"])
      throw error.rpcError
    }
  }

  /// The rotation scheduler's refresh of a volume, due or asked for on demand (false:
  /// failed, or nothing mounted).
  public func refreshDue(target: String, trigger: RotationScheduler.Trigger = .timer) async -> Bool {
    let env = self.env
    return (try? await registry.withVolume(target) { volume in await volume.refreshDue(env: env, trigger: trigger) }) ?? false
  }

  public func unpublish(
    _ request: CSI.NodeUnpublishVolumeRequest, deadline: ContinuousClock.Instant?
  ) async throws -> CSI.NodeUnpublishVolumeResponse {
    let env = self.env
    do {
      try await registry.withVolume(request.targetPath) { volume throws(PublishError) in
        try await volume.unpublish(env: env)
      }
      env.metrics.unpublished(target: request.targetPath)
      return CSI.NodeUnpublishVolumeResponse()
    } catch {
      env.metrics.unpublishFailed()
      var error = error
      error.message = SecretScrubber().scrub(error.message, limitBytes: 1024)
      env.logger.warning("unpublish failed", metadata: ["target": "\(request.targetPath)", "error": "\(error.message)"])
      throw error.rpcError
    }
  }
}

/// How many volume requests are in flight on one loop: lets a volume decide
/// whether blocking filesystem work is worth moving off its loop.
public final class VolumeActivity: Sendable {
  private let count = Locked(0)

  public init() {}

  public var inFlight: Int { count.withLock { $0 } }
  func enter() { count.withLock { $0 += 1 } }
  func leave() { count.withLock { $0 -= 1 } }
}
