import Glibc
import Testing
import UVRuntime

@Suite struct HeartbeatTests {
  let ms: UInt64 = 1_000_000

  @Test func readingTellsAStallInProgressAndOneThatJustEnded() {
    let interval = Duration.milliseconds(10)
    let stallAfter = Duration.milliseconds(100)
    let t0: UInt64 = 1_000_000_000_000
    var reading = LoopHeartbeat.Reading(lastBeatNs: t0)
    func stall(at now: UInt64, recovery: Duration = .seconds(5)) -> Duration? {
      reading.stall(nowNs: now, interval: interval, stallAfter: stallAfter, recovery: recovery)
    }
    // Beats on time, or a little late: healthy.
    #expect(stall(at: t0 + 5 * ms) == nil)
    #expect(stall(at: t0 + 110 * ms) == nil)
    // No beat for longer than interval + stallAfter: stalled now, for that long less one interval.
    #expect(stall(at: t0 + 300 * ms) == .milliseconds(290))
    // The late beat came: the stall is remembered for `recovery`, then forgotten.
    reading = LoopHeartbeat.Reading(lastBeatNs: t0 + 300 * ms, lastStall: (t0 + 300 * ms, 290 * ms))
    #expect(stall(at: t0 + 305 * ms) == .milliseconds(290))
    reading.lastBeatNs = t0 + 5_300 * ms
    #expect(stall(at: t0 + 5_299 * ms) == .milliseconds(290))
    #expect(stall(at: t0 + 5_301 * ms) == nil)
    #expect(stall(at: t0 + 5_301 * ms, recovery: .seconds(60)) == .milliseconds(290))
  }

  @Test func aBlockedLoopShowsAsStalledWhileBlockedAndAfter() async throws {
    try await withLoop("heartbeat") { loop in
      let stalls = Locked<[Duration]>([])
      let heartbeat = try await loop.submit {
        // A stall threshold well above what a loaded test machine's scheduler can cause.
        LoopHeartbeat(on: loop, interval: .milliseconds(10), stallAfter: .seconds(1)) { length in
          stalls.withLock { $0.append(length) }
        }
      }
      #expect(heartbeat.stall(recovery: .seconds(60)) == nil)
      // A job that holds the loop until the test has seen the stall from outside.
      let release = Locked(false)
      loop.execute {
        while !release.withLock({ $0 }) { usleep(1_000) }
      }
      let seenWhileBlocked = try await eventually { heartbeat.stall(recovery: .seconds(60)) != nil }
      release.withLock { $0 = true }
      #expect(seenWhileBlocked, "a loop held for 10 s never showed as stalled")
      // Once the loop runs again, the late beat records the stall and keeps it.
      #expect(try await eventually { !stalls.withLock { $0 }.isEmpty })
      #expect(stalls.withLock { $0 }.allSatisfy { $0 > .seconds(1) })
      #expect(heartbeat.stall(recovery: .seconds(60)) != nil)
      // Without a recovery period it clears with the next beat on time.
      #expect(try await eventually { heartbeat.stall(recovery: .zero) == nil })
      try await loop.submit { heartbeat.stop() }
    }
  }
}
