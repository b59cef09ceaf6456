import Testing
import UVRuntime

/// Weak references set on the loop thread and read after the loop thread has ended.
final class WeakOwners: @unchecked Sendable {
  struct Entry { weak var owner: AnyObject? }
  var entries: [Entry] = []
  var alive: Int { entries.filter { $0.owner != nil }.count }
}

@Suite struct LeakedHandleTests {
  /// A handle its owner never closed is closed by the loop at shutdown, reported, and
  /// released: its memory and its owner are freed, not kept until the process exits.
  /// (LeakSanitizer in `make test-asan` found owners and the loop itself kept alive.)
  @Test func handlesLeftOpenAreReleasedWhenTheLoopCloses() async throws {
    let loop = EventLoop(name: "leaky-release")
    let owners = WeakOwners()
    try await onLoop(loop) { (done: Done<Void>) in
      let armed = UVTimer(on: loop)
      armed.start(timeoutMs: 60_000) {}
      let idle = UVTimer(on: loop)
      owners.entries = [.init(owner: armed), .init(owner: idle)]
      done()
    }
    await loop.shutdownAndWait()
    #expect(loop.leakedHandles == ["timer", "timer"])
    #expect(loop.closeResult == 0)
    #expect(owners.alive == 0)
  }
}
