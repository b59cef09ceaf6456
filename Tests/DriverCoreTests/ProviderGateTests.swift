import CSIMessages
import GRPCCore
import Telemetry
@testable import DriverCore
import Testing
import UVRuntime

@Suite struct ProviderGateTests {
  /// Waits (bounded) until the gate has queued this many calls.
  static func waitQueued(_ gate: ProviderGate, firstMounts: Int, refreshes: Int) async throws {
    let giveUp = ContinuousClock.now + .seconds(20)
    while ContinuousClock.now < giveUp {
      let q = gate.queued
      if q.firstMounts == firstMounts && q.refreshes == refreshes { return }
      try await Task.sleep(for: .milliseconds(1))
    }
    Issue.record("the gate never queued \(firstMounts) first mounts and \(refreshes) refreshes")
  }

  @Test func firstMountsGoAheadOfQueuedRefreshes() async throws {
    try await withLoop("gate") { loop in
      let gate = ProviderGate(limits: .init(concurrency: 1), loop: loop)
      let order = Locked<[String]>([])
      try await gate.acquire(.refresh)  // the one slot is taken
      try await withThrowingTaskGroup(of: Void.self) { group in
        for i in 0..<5 {
          group.addTask {
            try await gate.acquire(.refresh)
            order.withLock { $0.append("refresh-\(i)") }
            gate.release()
          }
          try await Self.waitQueued(gate, firstMounts: 0, refreshes: i + 1)
        }
        group.addTask {
          try await gate.acquire(.firstMount)
          order.withLock { $0.append("first-mount") }
          gate.release()
        }
        try await Self.waitQueued(gate, firstMounts: 1, refreshes: 5)
        gate.release()
        try await group.waitForAll()
      }
      #expect(order.withLock { $0 } == ["first-mount", "refresh-0", "refresh-1", "refresh-2", "refresh-3", "refresh-4"])
      let waited = gate.waited
      #expect(waited.firstMounts == 1 && waited.refreshes == 5)
    }
  }

  @Test func concurrencyIsBounded() async throws {
    try await withLoop("gate") { loop in
      let gate = ProviderGate(limits: .init(concurrency: 3), loop: loop)
      let state = Locked((now: 0, peak: 0))
      try await withThrowingTaskGroup(of: Void.self) { group in
        for _ in 0..<20 {
          group.addTask {
            try await gate.withPermit(.refresh) {
              state.withLock { $0.now += 1; $0.peak = max($0.peak, $0.now) }
              await Task.yield()
              state.withLock { $0.now -= 1 }
            }
          }
        }
        try await group.waitForAll()
      }
      #expect(state.withLock { $0.peak } <= 3)
    }
  }

  @Test func rateLimitHoldsCallsBeyondTheBurst() async throws {
    try await withLoop("gate") { loop in
      // One token per thousand seconds: after the burst of two, the third call waits.
      let gate = ProviderGate(limits: .init(ratePerSecond: 0.001, burst: 2), loop: loop)
      for _ in 0..<2 { try await gate.withPermit(.firstMount) {} }
      let third = Task { try await gate.withPermit(.refresh) {} }
      try await Self.waitQueued(gate, firstMounts: 0, refreshes: 1)
      #expect(gate.waited.refreshes == 1)
      third.cancel()
      await #expect(throws: CancellationError.self) { try await third.value }
    }
  }

  /// The `--provider-qps 100 --provider-burst 500` case of issue #13: refreshes drained the
  /// bucket and a burst of first mounts then waited for tokens. The clock is manual, so the
  /// bucket refills only when the test says.
  @Test func refreshesLeaveTheReserveToFirstMounts() async throws {
    try await withLoop("gate") { loop in
      let clock = Locked(Duration.seconds(1000))
      let gate = ProviderGate(limits: .init(ratePerSecond: 100, burst: 500), loop: loop, now: { clock.withLock { $0 } })
      #expect(gate.limits.refreshReserve == 250)
      // A storm of refreshes takes tokens until only the reserve is left.
      var refreshes = 0
      while gate.tryAcquire(.refresh) {
        refreshes += 1
        gate.release()
      }
      #expect(refreshes == 250)
      #expect(gate.tokens == 250)
      // Refreshes queue at the reserve; a first mount arriving then passes without waiting.
      let queuedRefresh = Task { try await gate.acquire(.refresh) }
      try await Self.waitQueued(gate, firstMounts: 0, refreshes: 1)
      #expect(try await gate.acquire(.firstMount) == false)
      gate.release()
      // First mounts may take the whole reserve: a burst of 249 more passes at once too.
      for _ in 0..<249 {
        #expect(gate.tryAcquire(.firstMount))
        gate.release()
      }
      #expect(gate.tokens == 0)
      // And with the bucket empty, first mounts still pass: they never wait for a token
      // (only the concurrency limit bounds them), and take none they cannot.
      #expect(gate.tryAcquire(.firstMount))
      gate.release()
      #expect(gate.tokens == 0)
      #expect(gate.waited.firstMounts == 0)
      queuedRefresh.cancel()
      await #expect(throws: CancellationError.self) { try await queuedRefresh.value }

      // Time passes with only refreshes asking: they get the refill above the reserve and
      // never take the bucket below it.
      var refilled = false
      for step in 1...30 {
        clock.withLock { $0 += .milliseconds(100 * step) }
        let before = try #require(gate.tokens)
        var taken = 0
        while gate.tryAcquire(.refresh) {
          taken += 1
          gate.release()
        }
        let after = try #require(gate.tokens)
        #expect(after < 251)  // everything above the reserve went to refreshes
        if before < 251 { #expect(taken == 0 && after == before) }
        if before >= 250 {
          refilled = true
          #expect(after >= 250)  // and nothing below it
        }
      }
      #expect(refilled)
    }
  }

  @Test func cancelledWaitersLeaveTheQueue() async throws {
    try await withLoop("gate") { loop in
      let gate = ProviderGate(limits: .init(concurrency: 1), loop: loop)
      try await gate.acquire(.firstMount)
      let waiter = Task { try await gate.acquire(.refresh) }
      try await Self.waitQueued(gate, firstMounts: 0, refreshes: 1)
      waiter.cancel()
      await #expect(throws: CancellationError.self) { try await waiter.value }
      try await Self.waitQueued(gate, firstMounts: 0, refreshes: 0)
      gate.release()
    }
  }
}

/// The gate as the provider connection uses it: every Mount call passes it, first mounts
/// ahead of refreshes, and the wait counts against the call's deadline. No provider
/// socket exists, so each call that gets through fails at once as unreachable and
/// gives its slot to the next.
@Suite struct ProviderConnectionGateTests {
  static func connection(_ loop: EventLoop, concurrency: Int) -> ProviderConnection {
    ProviderConnection(
      name: "nowhere", loop: loop,
      settings: ProviderSettings(searchDirectories: ["/nonexistent-provider-dir"], gate: .init(concurrency: concurrency)),
      metrics: DriverMetrics())
  }

  @Test func aFirstMountGoesAheadOfAQueueFullOfRefreshes() async throws {
    try await withLoop("gate") { loop in
      let connection = Self.connection(loop, concurrency: 1)
      let order = Locked<[String]>([])
      try await connection.gate.acquire(.refresh)  // a refresh in flight holds the one slot
      try await withThrowingTaskGroup(of: Void.self) { group in
        for i in 0..<8 {
          group.addTask {
            let failure = await #expect(throws: ProviderCallError.self) {
              try await connection.mount(Provider.MountRequest(), timeout: .seconds(30), scrubber: SecretScrubber(), priority: .refresh)
            }
            #expect(failure?.kind == .unreachable)  // it got through the gate and was sent
            order.withLock { $0.append("refresh-\(i)") }
          }
          try await ProviderGateTests.waitQueued(connection.gate, firstMounts: 0, refreshes: i + 1)
        }
        group.addTask {
          await #expect(throws: ProviderCallError.self) {
            try await connection.mount(Provider.MountRequest(), timeout: .seconds(30), scrubber: SecretScrubber(), priority: .firstMount)
          }
          order.withLock { $0.append("first-mount") }
        }
        try await ProviderGateTests.waitQueued(connection.gate, firstMounts: 1, refreshes: 8)
        // The slot given back goes, in the same step, to the first mount: it has left the
        // queue when `release` returns (had a refresh got the slot, the first mount would
        // still be queued until that refresh's call ended on another task).
        connection.gate.release()
        #expect(connection.gate.queued.firstMounts == 0)
        try await group.waitForAll()
      }
      // Each call records itself after it failed and gave back its slot, so the next one
      // admitted may record first: every call went through, compared as a set.
      #expect(Set(order.withLock { $0 }) == Set((0..<8).map { "refresh-\($0)" } + ["first-mount"]))
      await connection.close()
    }
  }

  @Test func aFirstMountNeverWaitsPastItsDeadline() async throws {
    try await withLoop("gate") { loop in
      let metrics = DriverMetrics()
      let connection = ProviderConnection(
        name: "nowhere", loop: loop,
        settings: ProviderSettings(searchDirectories: ["/nonexistent-provider-dir"], gate: .init(concurrency: 1)), metrics: metrics)
      try await connection.gate.acquire(.refresh)
      let failure = await #expect(throws: ProviderCallError.self) {
        try await connection.mount(Provider.MountRequest(), timeout: .milliseconds(30), scrubber: SecretScrubber(), priority: .firstMount)
      }
      #expect(failure?.kind == .deadlineExceeded)
      #expect(PublishError(failure!).code == .deadlineExceeded)
      #expect(connection.gate.queued == (0, 0))  // it left the queue
      connection.gate.release()
      let text = metrics.registry.render()
      #expect(text.contains(#"secrets_store_provider_gate_timeouts_total{provider="nowhere",priority="first_mount"} 1"#))
      await connection.close()
    }
  }

  @Test func aTokenBucketWaitAlsoEndsAtTheDeadline() async throws {
    try await withLoop("gate") { loop in
      let gate = ProviderGate(limits: .init(ratePerSecond: 0.001, burst: 1), loop: loop)
      try await gate.withPermit(.refresh) {}
      await #expect(throws: ProviderGate.TimedOut.self) { try await gate.acquire(.refresh, timeout: .milliseconds(20)) }
      #expect(gate.queued == (0, 0))
      // A first mount does not wait for tokens at all.
      #expect(try await gate.acquire(.firstMount, timeout: .milliseconds(20)) == false)
      gate.release()
    }
  }
}
