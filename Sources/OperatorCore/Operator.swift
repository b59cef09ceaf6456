import KubeClient
import Logging
public import UVRuntime

/// The operator's lifetime: watches that turn any change of the cluster resource or of
/// an object it manages into the one key, a work queue that coalesces them, one worker
/// that reconciles, and a periodic resync. `run()` returns when its task is cancelled.
public final class Operator: Sendable {
  public let reconciler: Reconciler
  let loop: EventLoop
  let queue = WorkQueue()
  /// Retries waiting out their backoff: cancelled and awaited when `run` ends, so no
  /// loop timer outlives the operator.
  private let retries = Locked<[Int: Task<Void, Never>]>([:])
  private let retryIDs = Locked(0)
  var logger: Logger { reconciler.logger }
  var config: OperatorConfig { reconciler.config }

  public init(reconciler: Reconciler, loop: EventLoop) {
    self.reconciler = reconciler
    self.loop = loop
  }

  public func run() async {
    let key = config.clusterResource.name
    let queue = self.queue
    await withTaskCancellationHandler {
      await withTaskGroup(of: Void.self) { group in
        let cr = config.clusterResource
        group.addTask {
          await self.watch(cr.resource, namespace: nil, labelSelector: nil, fieldSelector: "metadata.name=\(cr.name)", key: key)
        }
        for resource in ManagedKinds.all(flavour: config.flavour) {
          let namespace = resource.namespaced ? config.namespace : nil
          group.addTask {
            await self.watch(resource, namespace: namespace, labelSelector: OperatorLabels.selector, fieldSelector: nil, key: key)
          }
        }
        group.addTask { await self.resync(key) }
        group.addTask { await self.work() }
        await group.waitForAll()
      }
    } onCancel: {
      Task { await queue.shutDown() }
    }
    for task in retries.withLock({ Array($0.values) }) {
      task.cancel()
      await task.value
    }
  }

  func work() async {
    while let key = await queue.next() {
      let start = KubeClient.monotonicNow()
      do {
        let outcome = try await reconciler.reconcile()
        await queue.forget(key)
        if let later = outcome.requeueAfter { add(key, after: later) }
        let ms = (KubeClient.monotonicNow() - start).timerMilliseconds
        if !outcome.created.isEmpty || !outcome.updated.isEmpty || !outcome.deleted.isEmpty {
          logger.info(
            "reconciled",
            metadata: [
              "ms": "\(ms)", "created": "\(outcome.created.joined(separator: ","))",
              "updated": "\(outcome.updated.joined(separator: ","))", "deleted": "\(outcome.deleted.joined(separator: ","))",
              "available": "\(outcome.status?.available.status ?? false)",
            ])
        } else {
          logger.debug("reconciled, no change", metadata: ["ms": "\(ms)"])
        }
      } catch {
        if Task.isCancelled { break }
        let delay = await queue.addAfterFailure(key)
        logger.warning("reconcile failed; retrying", metadata: ["error": "\(error)", "retryIn": "\(delay)"])
        add(key, after: delay)
      }
      await queue.done(key)
    }
  }

  /// Adds `key` after `delay` on the loop's timer (a task `run` cancels and awaits at the end).
  func add(_ key: String, after delay: Duration) {
    let queue = self.queue
    let loop = self.loop
    let id = retryIDs.withLock { n -> Int in
      n += 1
      return n
    }
    let retries = self.retries
    let task = Task {
      if (try? await loop.sleep(milliseconds: delay.timerMilliseconds)) != nil { await queue.add(key) }
      _ = retries.withLock { $0.removeValue(forKey: id) }
    }
    retries.withLock { $0[id] = task }
  }

  func resync(_ key: String) async {
    while !Task.isCancelled {
      do {
        try await loop.sleep(milliseconds: config.resyncInterval.timerMilliseconds)
      } catch {
        return
      }
      await queue.add(key)
    }
  }

  /// List, then watch from the list's version; every event queues the key. A watch that
  /// ends is resumed from the last version seen; a 410 or an error lists again after a
  /// backoff.
  func watch(_ resource: KubeResource, namespace: String?, labelSelector: String?, fieldSelector: String?, key: String) async {
    var backoff: UInt64 = 500
    while !Task.isCancelled {
      do {
        let list = try await reconciler.client.list(
          JSONValue.self, resource, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector)
        await queue.add(key)
        var version = list.metadata.resourceVersion ?? ""
        var relist = false
        while !relist && !Task.isCancelled {
          let events = try await reconciler.client.watch(
            JSONValue.self, resource, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector,
            resourceVersion: version)
          for try await event in events {
            switch event {
            case .added(let o), .modified(let o):
              if let v = o["metadata"]?["resourceVersion"]?.string { version = v }
              if !reconciler.ownWrites.isEcho(o) { await queue.add(key) }
            case .deleted(let o):
              if let v = o["metadata"]?["resourceVersion"]?.string { version = v }
              await queue.add(key)
            case .bookmark(let v):
              version = v
            case .error:
              relist = true
            }
            if relist { break }
          }
          backoff = 500
        }
      } catch {
        if Task.isCancelled { return }
        if let e = error as? KubeError, e.code == 404 {
          logger.debug("no such resource in this cluster; watching it later", metadata: ["resource": "\(resource)"])
        } else {
          logger.warning("watch failed; listing again", metadata: ["resource": "\(resource)", "error": "\(error)"])
        }
        do {
          try await loop.sleep(milliseconds: backoff)
        } catch {
          return
        }
        backoff = min(backoff * 2, 30_000)
      }
    }
  }
}
