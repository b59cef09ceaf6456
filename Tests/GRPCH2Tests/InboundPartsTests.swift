import GRPCCore
import Synchronization
import Testing

@testable import GRPCH2

/// The transports' inbound parts behave as the AsyncThrowingStream they replace.
@Suite struct InboundPartsTests {
  typealias Parts = InboundParts<RPCRequestPart<[UInt8]>>

  final class Terminations: Sendable {
    let seen = Mutex<[String]>([])
    func note(_ t: Parts.Termination) { seen.withLock { $0.append("\(t)") } }
    var all: [String] { seen.withLock { $0 } }
  }

  static func messages(_ parts: ServerInboundParts) async throws -> [[UInt8]] {
    var out: [[UInt8]] = []
    for try await part in parts {
      if case .message(let bytes) = part { out.append(bytes) }
    }
    return out
  }

  @Test func bufferedPartsComeBeforeTheEnd() async throws {
    let parts = Parts()
    let terminations = Terminations()
    parts.onTermination = { terminations.note($0) }
    parts.yield(.message([1]))
    parts.yield(.message([2]))
    parts.finish()
    parts.yield(.message([3]))  // after the end: dropped
    #expect(try await Self.messages(ServerInboundParts(parts: parts)) == [[1], [2]])
    #expect(terminations.all == ["finished"])
  }

  @Test func aWaitingReaderGetsWhatArrivesThenTheError() async throws {
    let parts = Parts()
    let reader = Task { try await Self.messages(ServerInboundParts(parts: parts)) }
    parts.yield(.message([1]))
    try await Task.sleep(for: .milliseconds(20))
    parts.yield(.message([2]))
    parts.finish(throwing: RPCError(code: .cancelled, message: "gone"))
    await #expect(throws: RPCError.self) { try await reader.value }
  }

  @Test func theErrorIsThrownOnceThenTheEnd() async throws {
    let parts = Parts()
    parts.yield(.message([1]))
    parts.finish(throwing: RPCError(code: .cancelled, message: "gone"))
    var iterator = ServerInboundParts(parts: parts).makeAsyncIterator()
    #expect(try await iterator.next() != nil)
    await #expect(throws: RPCError.self) { try await iterator.next() }
    #expect(try await iterator.next() == nil)
  }

  @Test func cancellingAWaitingReaderEndsItAndSaysCancelled() async throws {
    let parts = Parts()
    let terminations = Terminations()
    parts.onTermination = { terminations.note($0) }
    let reader = Task { try await Self.messages(ServerInboundParts(parts: parts)) }
    try await Task.sleep(for: .milliseconds(20))
    reader.cancel()
    #expect(try await reader.value == [])
    #expect(terminations.all == ["cancelled"])
    parts.yield(.message([9]))  // nobody reads: dropped
  }

  @Test func droppingTheIteratorSaysCancelled() async throws {
    let parts = Parts()
    let terminations = Terminations()
    parts.onTermination = { terminations.note($0) }
    parts.yield(.message([1]))
    do {
      var iterator = ServerInboundParts(parts: parts).makeAsyncIterator()
      _ = try await iterator.next()
    }
    #expect(terminations.all.first == "cancelled")
  }

  @Test func aSecondIteratorOfTheSameSequenceKeepsReading() async throws {
    let parts = Parts()
    let terminations = Terminations()
    parts.onTermination = { terminations.note($0) }
    parts.yield(.message([1]))
    parts.yield(.message([2]))
    let sequence = ServerInboundParts(parts: parts)
    do {
      var first = sequence.makeAsyncIterator()
      _ = try await first.next()
    }
    var second = sequence.makeAsyncIterator()
    guard case .message(let bytes) = try await second.next() else { Issue.record("no second part"); return }
    #expect(bytes == [2])
    #expect(terminations.all.isEmpty)
  }
}
