import GRPCCore
import UVRuntime

/// The parts of one call as the connection receives them, for the one task that reads
/// them: what `AsyncThrowingStream` did here (unbounded buffer, `finish(throwing:)`,
/// `onTermination` with `.cancelled` when the reader is cancelled or drops its
/// iterator), without its generic machinery. GRPCCore reads the parts through
/// `any AsyncSequence`, where `AsyncThrowingStream`'s storage, state and continuation
/// types were instantiated from generic metadata on every call (~130 metadata lookups
/// per publish+unpublish pair); the two sequences below are concrete types.
final class InboundParts<Part: Sendable>: @unchecked Sendable {
  enum Termination {
    case finished
    case cancelled
  }

  private struct State {
    var buffer: [Part] = []
    var head = 0
    /// Set by `finish`: what the reader gets after the buffer (nil: the end).
    var end: (any Error)?? = nil
    var waiter: UnsafeContinuation<Part?, any Error>?
    var onTermination: (@Sendable (Termination) -> Void)?
  }

  private let lock = Lock()
  private var state = State()

  init() {}

  /// Called once, when the parts end (`.finished`) or the reader goes away (`.cancelled`).
  var onTermination: (@Sendable (Termination) -> Void)? {
    get { lock.withLock { state.onTermination } }
    set { lock.withLock { state.onTermination = newValue } }
  }

  /// Dropped once finished.
  func yield(_ part: Part) {
    let waiter = lock.withLock { () -> UnsafeContinuation<Part?, any Error>? in
      guard state.end == nil else { return nil }
      if let waiter = state.waiter {
        state.waiter = nil
        return waiter
      }
      state.buffer.append(part)
      return nil
    }
    waiter?.resume(returning: part)
  }

  /// The reader gets what is buffered, then `error` (thrown) or the end.
  func finish(throwing error: (any Error)? = nil) {
    let (waiter, handler) = lock.withLock { () -> (UnsafeContinuation<Part?, any Error>?, (@Sendable (Termination) -> Void)?) in
      guard state.end == nil else { return (nil, nil) }
      state.end = .some(error)
      let handler = state.onTermination
      state.onTermination = nil
      // A waiting reader has an empty buffer.
      let waiter = state.waiter
      state.waiter = nil
      if waiter != nil { state.end = .some(nil) }  // the error, if any, goes to the waiter now
      return (waiter, handler)
    }
    handler?(.finished)
    if let waiter {
      if let error { waiter.resume(throwing: error) } else { waiter.resume(returning: nil) }
    }
  }

  /// The reader is cancelled or gone: as `AsyncThrowingStream`, `onTermination` hears
  /// `.cancelled`, then the parts end (a waiting reader gets nil).
  func cancel() {
    let handler = lock.withLock { () -> (@Sendable (Termination) -> Void)? in
      let handler = state.onTermination
      state.onTermination = nil
      return handler
    }
    handler?(.cancelled)
    finish()
  }

  private enum Take {
    case part(Part)
    case end
    case error(any Error)
    case wait
  }

  private func take() -> Take {
    if state.head < state.buffer.count {
      let part = state.buffer[state.head]
      state.head += 1
      if state.head == state.buffer.count {
        state.buffer.removeAll(keepingCapacity: true)
        state.head = 0
      }
      return .part(part)
    }
    switch state.end {
    case .none: return .wait
    case .some(.none): return .end
    case .some(.some(let error)):
      state.end = .some(nil)  // thrown once, then the end
      return .error(error)
    }
  }

  func next(isolation actor: isolated (any Actor)?) async throws -> Part? {
    let taken = lock.withLock { take() }
    switch taken {
    case .part(let part): return part
    case .end: return nil
    case .error(let error): throw error
    case .wait: break
    }
    return try await withTaskCancellationHandler {
      try await withUnsafeThrowingContinuation { (c: UnsafeContinuation<Part?, any Error>) in
        let taken = lock.withLock { () -> Take in
          let taken = take()
          if case .wait = taken { state.waiter = c }
          return taken
        }
        switch taken {
        case .part(let part): c.resume(returning: part)
        case .end: c.resume(returning: nil)
        case .error(let error): c.resume(throwing: error)
        case .wait: break
        }
      }
    } onCancel: {
      self.cancel()
    }
  }
}

/// Tells the parts when their reader is gone (the sequence and its iterators).
final class InboundReader<Part: Sendable>: Sendable {
  let parts: InboundParts<Part>
  init(_ parts: InboundParts<Part>) { self.parts = parts }
  deinit { parts.cancel() }
}

/// A request's parts, as the server's handler reads them.
struct ServerInboundParts: AsyncSequence, Sendable {
  typealias Element = RPCRequestPart<[UInt8]>
  typealias Failure = any Error
  /// Shared by every iterator, as AsyncThrowingStream shares its context: the parts
  /// hear `.cancelled` once the sequence and all its iterators are gone, not when one
  /// iterator is dropped and another made.
  let reader: InboundReader<Element>

  init(parts: InboundParts<Element>) { reader = InboundReader(parts) }

  struct AsyncIterator: AsyncIteratorProtocol {
    typealias Element = RPCRequestPart<[UInt8]>
    typealias Failure = any Error
    let reader: InboundReader<Element>

    mutating func next() async throws -> Element? { try await reader.parts.next(isolation: nil) }
    mutating func next(isolation actor: isolated (any Actor)?) async throws -> Element? {
      try await reader.parts.next(isolation: actor)
    }
  }

  func makeAsyncIterator() -> AsyncIterator { AsyncIterator(reader: reader) }
}

/// A response's parts, as the client reads them.
struct ClientInboundParts: AsyncSequence, Sendable {
  typealias Element = RPCResponsePart<[UInt8]>
  typealias Failure = any Error
  /// Shared by every iterator, as AsyncThrowingStream shares its context: the parts
  /// hear `.cancelled` once the sequence and all its iterators are gone, not when one
  /// iterator is dropped and another made.
  let reader: InboundReader<Element>

  init(parts: InboundParts<Element>) { reader = InboundReader(parts) }

  struct AsyncIterator: AsyncIteratorProtocol {
    typealias Element = RPCResponsePart<[UInt8]>
    typealias Failure = any Error
    let reader: InboundReader<Element>

    mutating func next() async throws -> Element? { try await reader.parts.next(isolation: nil) }
    mutating func next(isolation actor: isolated (any Actor)?) async throws -> Element? {
      try await reader.parts.next(isolation: actor)
    }
  }

  func makeAsyncIterator() -> AsyncIterator { AsyncIterator(reader: reader) }
}
