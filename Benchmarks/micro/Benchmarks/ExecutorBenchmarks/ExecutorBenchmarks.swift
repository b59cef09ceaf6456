import Benchmark
import MicroSupport
import UVRuntime

// What it costs to get onto the libuv loop and back: every volume and provider connection is
// an actor on the loop, and every handler that awaits one from elsewhere pays this.
// The benchmark task runs on the global pool (package-benchmark starts it there).
// `.kilo` samples: malloc counts are per 1000 round trips.
//
// A hop between threads costs ~7 us when both threads share a core (a busy machine) and
// 25-50 us when each wakes the other across idle vCPUs, run to run: time may vary 6x here
// before the check fails; malloc counts stay tight.
let benchmarks: @Sendable () -> Void = {
  let loop = Slot<EventLoop>()
  func running() throws -> EventLoop { try loop.get("the loop") }
  func configuration(slowdown: Int) -> Benchmark.Configuration {
    Micro.configuration(
      scaling: .kilo,
      mallocSlack: 50,
      slowdown: slowdown,
      setup: { loop.value = EventLoop(name: "micro-executor") },
      teardown: {
        guard let stopping = loop.value else { return }
        loop.value = nil
        await stopping.shutdownAndWait()
        guard stopping.leakedHandles.isEmpty else { throw BenchmarkFailure("leaked \(stopping.leakedHandles)") }
      }
    )
  }

  // Global pool -> loop -> global pool, through the actor's serial executor.
  Benchmark("actor.call.fromGlobalPool", configuration: configuration(slowdown: 6)) { benchmark in
    let counter = LoopCounter(loop: try running())
    await benchmark.measuringCPU {
      for _ in benchmark.scaledIterations {
        blackHole(await counter.increment())
      }
    }
  }

  // The same call from a task that already prefers the loop: no thread switch at all.
  Benchmark("actor.call.onLoop", configuration: configuration(slowdown: 2)) { benchmark in
    let current = try running()
    let counter = LoopCounter(loop: current)
    await withTaskExecutorPreference(current) {
      await benchmark.measuringCPU {
        for _ in benchmark.scaledIterations {
          blackHole(await counter.increment())
        }
      }
    }
  }

  // A closure run on the loop and its result awaited (what transports use to touch loop state).
  Benchmark("loop.submit", configuration: configuration(slowdown: 6)) { benchmark in
    let current = try running()
    try await benchmark.measuringCPU {
      for _ in benchmark.scaledIterations {
        blackHole(try await current.submit { 1 })
      }
    }
  }
}

/// An actor whose serial executor is the loop, like `VolumeActor` and `ProviderConnection`.
actor LoopCounter {
  let loop: EventLoop
  var count = 0

  init(loop: EventLoop) { self.loop = loop }

  nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

  func increment() -> Int {
    count += 1
    return count
  }
}
