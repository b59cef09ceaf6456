import Glibc
import Testing
import UVRuntime

@Suite(.timeLimit(.minutes(1)))
struct PollTests {
  @Test func pollReportsReadableAndWritableUntilClosed() async throws {
    var fds: [Int32] = [0, 0]
    #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
    defer { for fd in fds { close(fd) } }
    let (a, b) = (fds[0], fds[1])
    let seen = try await withLoop { loop in
      try await onLoop(loop) { (done: Done<[String]>) in
        let seen = LoopBox<[String]>([])
        let poll = try UVPoll(on: loop, socket: a)
        // An empty socket buffer: writable at once.
        try poll.start(.writable) { status, events in
          #expect(status == 0)
          guard events.contains(.writable) else { return }
          seen.value.append("writable")
          // Now wait for the peer's byte instead.
          try? poll.start(.readable) { status, events in
            #expect(status == 0)
            guard events.contains(.readable) else { return }
            var byte: UInt8 = 0
            seen.value.append(read(a, &byte, 1) == 1 ? "read \(byte)" : "read failed")
            poll.close()
            poll.close()  // idempotent
            done(seen.value)
          }
          var byte: UInt8 = 42
          _ = write(b, &byte, 1)
        }
      }
    }
    #expect(seen == ["writable", "read 42"])
  }

  @Test func pollOnABadDescriptorThrows() async throws {
    try await withLoop { loop in
      try await onLoop(loop) { (done: Done<Void>) in
        #expect(throws: UVError.self) { try UVPoll(on: loop, socket: -1) }
        done()
      }
    }
  }
}
