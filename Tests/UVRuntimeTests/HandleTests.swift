import Glibc
import Testing
import UVRuntime

@Suite(.timeLimit(.minutes(1)))
struct TimerTests {
  @Test func timersFireInDeadlineOrder() async throws {
    let order = try await withLoop { loop in
      try await onLoop(loop) { (done: Done<[String]>) in
        let fired = LoopBox<[String]>([])
        // Started in one callback, so all share the loop's cached "now"; equal
        // deadlines fire in the order they were started.
        for (label, ms) in [("a", 30), ("b", 10), ("c", 20), ("d", 0), ("e", 10)] {
          let timer = UVTimer(on: loop)
          timer.start(timeoutMs: UInt64(ms)) {
            fired.value.append(label)
            timer.close()
            if fired.value.count == 5 { done(fired.value) }
          }
        }
      }
    }
    #expect(order == ["d", "b", "e", "c", "a"])
  }

  @Test func repeatingTimerRepeatsUntilClosed() async throws {
    let ticks = try await withLoop { loop in
      try await onLoop(loop) { (done: Done<Int>) in
        let ticks = LoopBox(0)
        let timer = UVTimer(on: loop)
        timer.start(timeoutMs: 0, repeatMs: 1) {
          ticks.value += 1
          guard ticks.value == 5 else { return }
          timer.close()
          timer.close()  // idempotent
          #expect(timer.isClosed)
          // Were the repeat still armed (every 1 ms), it would fire before this 20 ms deadline.
          let later = UVTimer(on: loop)
          later.start(timeoutMs: 20) {
            later.close()
            done(ticks.value)
          }
        }
      }
    }
    #expect(ticks == 5)
  }

  @Test func stoppedTimerStaysSilentAndCanBeRestarted() async throws {
    let (whileStopped, afterRestart) = try await withLoop { loop in
      try await onLoop(loop) { (done: Done<(Int, Int)>) in
        let fired = LoopBox(0)
        let stopped = UVTimer(on: loop)
        stopped.start(timeoutMs: 1) { fired.value += 1 }
        stopped.stop()
        let later = UVTimer(on: loop)
        later.start(timeoutMs: 20) {
          let whileStopped = fired.value
          stopped.start(timeoutMs: 0) {
            fired.value += 1
            stopped.close()
            stopped.stop()  // harmless once closed
            later.close()
            done((whileStopped, fired.value))
          }
        }
      }
    }
    #expect(whileStopped == 0)
    #expect(afterRestart == 1)
  }

  @Test func closedTimerNeverFires() async throws {
    let fired = try await withLoop { loop in
      try await onLoop(loop) { (done: Done<Bool>) in
        let fired = LoopBox(false)
        let closed = UVTimer(on: loop)
        closed.start(timeoutMs: 0) { fired.value = true }
        closed.close()
        let later = UVTimer(on: loop)
        later.start(timeoutMs: 10) {
          later.close()
          done(fired.value)
        }
      }
    }
    #expect(!fired)
  }
}

@Suite(.timeLimit(.minutes(1)))
struct SleepTests {
  @Test func shortSleepReturns() async throws {
    try await withLoop { loop in
      try await loop.sleep(milliseconds: 0)
      try await loop.sleep(milliseconds: 2)
    }
  }

  @Test func cancellingASleepEndsItWithCancellationError() async throws {
    try await withLoop { loop in
      let sleeper = Task { try await loop.sleep(milliseconds: 600_000) }
      // Give the sleep a chance to arm its timer, so the cancel takes the timer path.
      try await loop.sleep(milliseconds: 5)
      sleeper.cancel()
      await #expect(throws: CancellationError.self) { try await sleeper.value }
    }
  }

  @Test func sleepInACancelledTaskEndsAtOnce() async throws {
    try await withLoop { loop in
      let sleeper = Task {
        withUnsafeCurrentTask { $0?.cancel() }
        try await loop.sleep(milliseconds: 600_000)
      }
      await #expect(throws: CancellationError.self) { try await sleeper.value }
    }
  }

  @Test func manySleepsCancelledTogetherAllEnd() async throws {
    let outcomes = try await withLoop { loop in
      await withTaskGroup(of: Bool.self) { group in
        for _ in 0..<100 {
          group.addTask {
            do {
              try await loop.sleep(milliseconds: 600_000)
              return false
            } catch {
              return error is CancellationError
            }
          }
        }
        group.cancelAll()
        var all: [Bool] = []
        for await cancelled in group { all.append(cancelled) }
        return all
      }
    }
    #expect(outcomes.count == 100)
    #expect(outcomes.allSatisfy { $0 })
  }
}

/// Raises `signal` on a new thread that unblocks it first; join the result. Threads
/// started from Swift tasks (the loop's included) inherit a mask that blocks every
/// signal, so a signal raised there would stay pending. Here libuv's handler runs
/// before `raise` returns and the callback follows on the loop.
func raiseOnFreshThread(_ signal: Int32) -> Threads {
  Threads(1) { _ in
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, signal)
    pthread_sigmask(SIG_UNBLOCK, &set, nil)
    raise(signal)
  }
}

/// Signals are process-wide: each test uses its own signal and raises it only while
/// a handle for it is installed (the default action of SIGUSR1/2 ends the process).
@Suite(.timeLimit(.minutes(1)))
struct SignalTests {
  @Test func watchedSignalIsReportedOnTheLoop() async throws {
    let raiser = Locked<Threads?>(nil)
    let (signum, onLoopThread) = try await withLoop { loop in
      try await onLoop(loop) { (done: Done<(Int32, Bool)>) in
        let watcher = LoopBox<UVSignal?>(nil)
        watcher.value = try UVSignal(on: loop, signal: SIGUSR1) { signum in
          watcher.value?.close()
          watcher.value = nil
          done((signum, loop.inLoop))
        }
        raiser.withLock { $0 = raiseOnFreshThread(SIGUSR1) }
      }
    }
    raiser.withLock { $0?.join() }
    #expect(signum == SIGUSR1)
    #expect(onLoopThread)
  }

  @Test func closedSignalHandleStaysSilent() async throws {
    let raiser = Locked<Threads?>(nil)
    let closedHandleCalls = try await withLoop { loop in
      try await onLoop(loop) { (done: Done<Int>) in
        let calls = LoopBox(0)
        let closed = try UVSignal(on: loop, signal: SIGUSR2) { _ in calls.value += 1 }
        // The second watcher keeps SIGUSR2 handled, so raising it is safe.
        let open = LoopBox<UVSignal?>(nil)
        open.value = try UVSignal(on: loop, signal: SIGUSR2) { _ in
          open.value?.close()
          open.value = nil
          done(calls.value)
        }
        closed.close()
        raiser.withLock { $0 = raiseOnFreshThread(SIGUSR2) }
      }
    }
    raiser.withLock { $0?.join() }
    #expect(closedHandleCalls == 0)
  }

  @Test func unwatchableSignalThrowsAndLeavesNoHandle() async throws {
    let error = try await withLoop { loop in
      try await onLoop(loop) { (done: Done<UVError?>) in
        do {
          _ = try UVSignal(on: loop, signal: SIGKILL) { _ in }
          done(nil)
        } catch {
          done(error as? UVError)
        }
      }
    }
    #expect(error?.name == "EINVAL")
    #expect(error?.call == "uv_signal_start")
  }
}
