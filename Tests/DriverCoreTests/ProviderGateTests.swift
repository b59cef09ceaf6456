@testable import DriverCore
import Testing
import UVRuntime

@Suite struct ProviderGateTests {
  static func withLoop(_ body: (EventLoop) async throws -> Void) async throws {
    let loop = EventLoop(name: "gate")
    do {
      try await body(loop)
    } catch {
      await loop.shutdownAndWait()
      throw error
    }
    await loop.shutdownAndWait()
    #expect(loop.leakedHandles == [] && loop.closeResult == 0)
  }

  /// Waits (bounded) until the gate has queued this many calls.
  static func waitQueued(_ gate: ProviderGate, firstMounts: Int, refreshes: Int) async throws {
    for _ in 0..<10_000 {
      let q = await gate.queued
      if q.firstMounts == firstMounts && q.refreshes == refreshes { return }
      await Task.yield()
    }
    Issue.record("the gate never queued \(firstMounts) first mounts and \(refreshes) refreshes")
  }

  @Test func firstMountsGoAheadOfQueuedRefreshes() async throws {
    try await Self.withLoop { loop in
      let gate = ProviderGate(limits: .init(concurrency: 1), loop: loop)
      let order = Locked<[String]>([])
      try await gate.acquire(.refresh)  // the one slot is taken
      try await withThrowingTaskGroup(of: Void.self) { group in
        for i in 0..<5 {
          group.addTask {
            try await gate.acquire(.refresh)
            order.withLock { $0.append("refresh-\(i)") }
            await gate.release()
          }
          try await Self.waitQueued(gate, firstMounts: 0, refreshes: i + 1)
        }
        group.addTask {
          try await gate.acquire(.firstMount)
          order.withLock { $0.append("first-mount") }
          await gate.release()
        }
        try await Self.waitQueued(gate, firstMounts: 1, refreshes: 5)
        await gate.release()
        try await group.waitForAll()
      }
      #expect(order.withLock { $0 } == ["first-mount", "refresh-0", "refresh-1", "refresh-2", "refresh-3", "refresh-4"])
      let waited = await gate.waited
      #expect(waited.firstMounts == 1 && waited.refreshes == 5)
    }
  }

  @Test func concurrencyIsBounded() async throws {
    try await Self.withLoop { loop in
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
    try await Self.withLoop { loop in
      // One token per thousand seconds: after the burst of two, the third call waits.
      let gate = ProviderGate(limits: .init(ratePerSecond: 0.001, burst: 2), loop: loop)
      for _ in 0..<2 { try await gate.withPermit(.refresh) {} }
      let third = Task { try await gate.withPermit(.refresh) {} }
      try await Self.waitQueued(gate, firstMounts: 0, refreshes: 1)
      #expect(await gate.waited.refreshes == 1)
      third.cancel()
      await #expect(throws: CancellationError.self) { try await third.value }
    }
  }

  @Test func cancelledWaitersLeaveTheQueue() async throws {
    try await Self.withLoop { loop in
      let gate = ProviderGate(limits: .init(concurrency: 1), loop: loop)
      try await gate.acquire(.firstMount)
      let waiter = Task { try await gate.acquire(.refresh) }
      try await Self.waitQueued(gate, firstMounts: 0, refreshes: 1)
      waiter.cancel()
      await #expect(throws: CancellationError.self) { try await waiter.value }
      try await Self.waitQueued(gate, firstMounts: 0, refreshes: 0)
      await gate.release()
    }
  }
}
