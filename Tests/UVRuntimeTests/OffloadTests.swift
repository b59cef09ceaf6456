import Glibc
import Testing
import UVRuntime

@Suite(.timeLimit(.minutes(1)))
struct OffloadTests {
  @Test func runsOffTheLoopAndReturnsTheResult() async throws {
    try await withLoop("offload") { loop in
      let (value, onLoop) = try await loop.offload { (42, loop.inLoop) }
      #expect(value == 42)
      #expect(!onLoop, "the body must run on a pool thread, not the loop")
    }
  }

  @Test func errorsReachTheCaller() async throws {
    _ = try await withLoop("offload-error") { loop in
      await #expect(throws: Boom.self) { try await loop.offload { throw Boom() } }
    }
  }

  @Test func manyConcurrentCallsAllComplete() async throws {
    try await withLoop("offload-many") { loop in
      let sum = try await withThrowingTaskGroup(of: Int.self) { group in
        for i in 1...200 { group.addTask { try await loop.offload { i } } }
        return try await group.reduce(0, +)
      }
      #expect(sum == 200 * 201 / 2)
    }
  }
}
