import Glibc
import Testing
import UVRuntime

/// An actor whose executor is the loop: its methods run on the loop thread.
actor LoopBound {
  let loop: EventLoop
  nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
  var calls = 0
  var callsOffLoop = 0

  init(loop: EventLoop) { self.loop = loop }

  func bump() {
    calls += 1
    if !loop.inLoop { callsOffLoop += 1 }
  }

  func counts() -> (calls: Int, offLoop: Int) { (calls, callsOffLoop) }
}

struct Boom: Error {}

@Suite(.timeLimit(.minutes(1)))
struct EventLoopTests {
  @Test func idleLoopClosesCleanly() async throws {
    let loop = EventLoop(name: "idle")
    #expect(!loop.inLoop)
    await loop.shutdownAndWait()
    #expect(loop.closeResult == 0)
    #expect(loop.leakedHandles == [])
    #expect(loop.droppedWork == 0)
  }

  @Test func shutdownAndJoinClosesCleanly() async throws {
    let loop = EventLoop(name: "join")
    #expect(try await loop.submit { loop.inLoop })
    loop.shutdownAndJoin()
    #expect(loop.closeResult == 0)
    #expect(loop.leakedHandles == [])
  }

  @Test func handlesLeftOpenAreReportedAndStillClosed() async throws {
    let loop = EventLoop(name: "leaky")
    try await onLoop(loop) { (done: Done<Void>) in
      // One armed, one idle: both are owned by nobody who will close them.
      UVTimer(on: loop).start(timeoutMs: 60_000) {}
      _ = UVTimer(on: loop)
      done()
    }
    await loop.shutdownAndWait()
    #expect(loop.leakedHandles == ["timer", "timer"])
    // The loop closed them itself, so it could still end.
    #expect(loop.closeResult == 0)
  }

  @Test func actorOnTheLoopRunsOnTheLoopThread() async throws {
    try await withLoop { loop in
      let actor = LoopBound(loop: loop)
      let tasks = 4
      let perTask = 2_500
      // Each call hops from the global pool onto the loop and back.
      try await withThrowingTaskGroup(of: Void.self) { group in
        for _ in 0..<tasks {
          group.addTask { for _ in 0..<perTask { await actor.bump() } }
        }
        try await group.waitForAll()
      }
      let counts = await actor.counts()
      #expect(counts.calls == tasks * perTask)
      #expect(counts.offLoop == 0)

      // Raw loop callbacks count as the actor's isolation (isIsolatingCurrentContext).
      let inside = try await onLoop(loop) { (done: Done<Int>) in
        done(actor.assumeIsolated { actor in
          actor.calls += 1
          return actor.calls
        })
      }
      #expect(inside == tasks * perTask + 1)
    }
  }

  @Test func taskExecutorPreferenceKeepsWorkOnTheLoop() async throws {
    try await withLoop { loop in
      let onLoopBefore = await withTaskExecutorPreference(loop) { loop.inLoop }
      #expect(onLoopBefore)
      let afterSuspension = try await withTaskExecutorPreference(loop) { () async throws -> Bool in
        try await loop.sleep(milliseconds: 1)
        await Task.yield()
        return loop.inLoop
      }
      #expect(afterSuspension)
      let task = Task(executorPreference: loop) { loop.inLoop }
      #expect(await task.value)
    }
  }

  /// A task that prefers the loop runs nonisolated async code inline: calling
  /// such functions must not send the task back through the loop's queue.
  @Test func nonisolatedAsyncCallsOnTheLoopDoNotRequeue() async throws {
    try await withLoop { loop in
      let calls = 1_000
      let queued = await withTaskExecutorPreference(loop) { () async -> Int in
        let before = loop.submittedWork
        var sum = 0
        for i in 0..<calls { sum &+= await plainAsync(i) }
        #expect(sum == (0..<calls).reduce(0, +))
        return loop.submittedWork - before
      }
      #expect(queued < 10, "each nonisolated async call went through the queue (\(queued) for \(calls) calls)")
    }
  }

  /// `whenIdle` work runs after the work already queued, once per request,
  /// and still runs while a producer keeps the queue from ever emptying.
  @Test func idleWorkRunsAfterQueuedWorkAndCannotBeStarved() async throws {
    try await withLoop { loop in
      let order = try await onLoop(loop) { (done: Done<[String]>) in
        let log = LoopBox<[String]>([])
        loop.whenIdle { log.value.append("idle") }
        for i in 0..<3 { loop.execute { log.value.append("job\(i)") } }
        loop.execute { loop.whenIdle { done(log.value) } }
      }
      #expect(order == ["job0", "job1", "job2", "idle"])

      // A chain where each job queues the next: the queue is never empty for 10 000 jobs.
      let ranAfter = try await onLoop(loop) { (done: Done<Int>) in
        let count = LoopBox(0)
        let idleAt = LoopBox<Int?>(nil)
        @Sendable func step() {
          count.value += 1
          if count.value < 10_000 { loop.execute(step) } else { done(idleAt.value ?? -1) }
        }
        loop.whenIdle { idleAt.value = count.value }
        loop.execute(step)
      }
      #expect(ranAfter >= 0 && ranAfter <= EventLoop.idleWorkEvery + 1, "idle work waited for \(ranAfter) jobs")
    }
  }

  /// A spinning loop polls after work, then goes back to sleep by itself;
  /// without `spin` it never spins. Both close cleanly (`withLoop` checks).
  @Test func spinAfterWorkThenSleep() async throws {
    let spin = EventLoop(name: "spin", spin: .microseconds(200))
    let before = spin.spinStatus.bursts
    #expect(try await spin.submit { 6 * 7 } == 42)
    // `submit` returns as soon as its job has run; the loop notes the work (and
    // starts spinning) after the job's batch, so wait for that event, then for
    // the spin to end. Both waits are bounded (10 s), not timing checks.
    let spun = try await eventually { spin.spinStatus.bursts > before }
    #expect(spun, "the loop never spun after work")
    let stopped = try await eventually { !spin.spinStatus.spinning }
    #expect(stopped, "the loop kept spinning while idle")
    await spin.shutdownAndWait()
    #expect(spin.leakedHandles == [] && spin.closeResult == 0)

    try await withLoop { loop in
      _ = try await loop.submit { 1 }
      try await loop.submit { loop.expectReply(within: .microseconds(500)) }
      #expect(loop.spinStatus.bursts == 0, "a loop without spin spun")
    }
  }

  /// `expectReply` spins an idle loop for a bounded time only: it goes back to sleep.
  @Test func expectReplyNeverLeavesTheLoopSpinning() async throws {
    let loop = EventLoop(name: "reply", spin: .microseconds(1))
    try await loop.submit { loop.expectReply(within: .microseconds(300)) }
    #expect(loop.spinStatus.bursts >= 1)  // started by expectReply itself, inside the job
    let stopped = try await eventually { !loop.spinStatus.spinning }
    #expect(stopped, "the loop kept spinning while idle")
    await loop.shutdownAndWait()
    #expect(loop.leakedHandles == [] && loop.closeResult == 0)
  }

  @Test func submitReturnsValuesAndErrorsFromTheLoopThread() async throws {
    try await withLoop { loop throws in
      #expect(try await loop.submit { loop.inLoop })
      #expect(try await loop.submit { 6 * 7 } == 42)
      await #expect(throws: Boom.self) { try await loop.submit { () throws -> Int in throw Boom() } }
    }
  }

  @Test func jobsFromManyThreadsRunOnceInOrderPerThread() async throws {
    let threads = 8
    let perThread = 5_000
    // Loop thread only: each closure appends its sequence number to its thread's list.
    let seen = LoopBox([[Int]](repeating: [], count: threads))
    let offLoop = Locked(0)
    try await withLoop { loop in
      let senders = Threads(threads) { thread in
        for seq in 0..<perThread {
          loop.execute {
            if !loop.inLoop { offLoop.withLock { $0 += 1 } }
            seen.value[thread].append(seq)
          }
        }
      }
      senders.join()
      // FIFO: once this runs, everything submitted before it has run.
      try await loop.submit {}
    }
    for thread in 0..<threads {
      #expect(seen.value[thread] == Array(0..<perThread), "thread \(thread)")
    }
    #expect(offLoop.withLock { $0 } == 0)
  }

  @Test func executeOrRunRunsInlineOnlyOnTheLoop() async throws {
    let order = try await withLoop { loop in
      try await onLoop(loop) { (done: Done<[String]>) in
        let order = LoopBox<[String]>([])
        order.value.append("a")
        loop.execute {
          order.value.append("c")
          done(order.value)
        }
        loop.executeOrRun { order.value.append("b") }
      }
    }
    #expect(order == ["a", "b", "c"])

    let ranOnLoop = try await withLoop { loop in
      try await withCheckedThrowingContinuation { (c: CheckedContinuation<Bool, any Error>) in
        loop.executeOrRun { c.resume(returning: loop.inLoop) }
      }
    }
    #expect(ranOnLoop)
  }

  @Test func shutdownRunsQueuedWorkThenDropsLateWork() async throws {
    let loop = EventLoop(name: "drain")
    let ran = Locked(0)
    for _ in 0..<1_000 { loop.execute { ran.withLock { $0 += 1 } } }
    await loop.shutdownAndWait()
    #expect(ran.withLock { $0 } == 1_000)
    #expect(loop.droppedWork == 0)

    loop.execute { ran.withLock { $0 += 1 } }
    #expect(loop.droppedWork == 1)
    #expect(ran.withLock { $0 } == 1_000)
    #expect(loop.closeResult == 0)
    #expect(loop.leakedHandles == [])
  }

  /// Work racing a shutdown either runs or is counted as dropped, never lost or
  /// doubled, and the wake-up after the loop closed must not touch freed memory.
  @Test(arguments: 0..<20)
  func workRacingShutdownRunsOrIsDropped(round: Int) async throws {
    let loop = EventLoop(name: "race")
    let ran = Locked(0)
    let threads = 4
    let perThread = 2_000
    // One sender asks for the shutdown halfway through its own submissions.
    let senders = Threads(threads) { thread in
      for seq in 0..<perThread {
        if thread == 0 && seq == perThread / 2 { loop.shutdown() }
        loop.execute { ran.withLock { $0 += 1 } }
      }
    }
    senders.join()
    await loop.shutdownAndWait()
    #expect(ran.withLock { $0 } + loop.droppedWork == threads * perThread)
    #expect(loop.closeResult == 0)
    #expect(loop.leakedHandles == [])
  }
}

@inline(never)
private nonisolated func plainAsync(_ value: Int) async -> Int {
  value
}
