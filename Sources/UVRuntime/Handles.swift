public import CUV

/// A libuv error: the call that failed and its code.
public struct UVError: Error, CustomStringConvertible, Equatable {
  public var code: Int32
  public var call: String

  public init(_ code: Int32, _ call: String) {
    self.code = code
    self.call = call
  }

  public var name: String { String(cString: uv_err_name(code)) }
  public var description: String { "\(call): \(String(cString: uv_strerror(code)))" }

  /// Throws when `rc` is negative.
  @inline(__always)
  public static func check(_ rc: Int32, _ call: String) throws(UVError) {
    if rc < 0 { throw UVError(rc, call) }
  }
}

/// Owns the memory of one libuv handle. The handle's `data` points back at the
/// owner, which stays alive until libuv's close callback frees the memory (libuv's
/// rule: a handle's memory is released only in its close callback).
public class UVHandle<H>: @unchecked Sendable {
  public let loop: EventLoop
  public let handle: UnsafeMutablePointer<H>
  public private(set) var isClosed = false

  init(loop: EventLoop) {
    self.loop = loop
    handle = .allocate(capacity: 1)
    handle.withMemoryRebound(to: uv_handle_t.self, capacity: 1) { $0.pointee.data = nil }
  }

  /// Call once the handle is initialized: keeps `self` alive until closed.
  func retainUntilClosed() {
    rawHandle.pointee.data = Unmanaged.passRetained(self).toOpaque()
  }

  public var rawHandle: UnsafeMutablePointer<uv_handle_t> {
    UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)
  }

  static func owner(_ raw: UnsafeMutableRawPointer?) -> Self {
    Unmanaged<Self>.fromOpaque(raw!).takeUnretainedValue()
  }

  /// Hook for subclasses: runs just before the close is requested.
  func willClose() {}

  /// Closes the handle; idempotent. Loop thread only.
  public func close() {
    loop.preconditionInLoop()
    guard !isClosed else { return }
    isClosed = true
    willClose()
    uv_close(rawHandle) { raw in
      guard let raw else { return }
      let data = raw.pointee.data
      raw.deallocate()
      if let data { Unmanaged<AnyObject>.fromOpaque(data).release() }
    }
  }
}

/// A libuv timer. Loop thread only.
public final class UVTimer: UVHandle<uv_timer_t>, @unchecked Sendable {
  private var callback: (() -> Void)?

  public init(on loop: EventLoop) {
    super.init(loop: loop)
    loop.preconditionInLoop()
    uv_timer_init(loop.uvLoop, handle)
    retainUntilClosed()
  }

  /// Fires `callback` after `timeoutMs`, then every `repeatMs` if non-zero.
  public func start(timeoutMs: UInt64, repeatMs: UInt64 = 0, _ callback: @escaping () -> Void) {
    precondition(!isClosed)
    self.callback = callback
    uv_timer_start(handle, { h in
      let timer = UVTimer.owner(h!.pointee.data)
      timer.callback?()
    }, timeoutMs, repeatMs)
  }

  public func stop() {
    guard !isClosed else { return }
    uv_timer_stop(handle)
  }

  override func willClose() {
    uv_timer_stop(handle)
    callback = nil
  }
}

/// Watches POSIX signals on the loop. Loop thread only.
public final class UVSignal: UVHandle<uv_signal_t>, @unchecked Sendable {
  private var callback: ((Int32) -> Void)?

  public init(on loop: EventLoop, signal: Int32, _ callback: @escaping (Int32) -> Void) throws(UVError) {
    super.init(loop: loop)
    loop.preconditionInLoop()
    self.callback = callback
    try UVError.check(uv_signal_init(loop.uvLoop, handle), "uv_signal_init")
    retainUntilClosed()
    do {
      try UVError.check(
        uv_signal_start(handle, { h, signum in
          UVSignal.owner(h!.pointee.data).callback?(signum)
        }, signal), "uv_signal_start")
    } catch {
      close()
      throw error
    }
  }

  override func willClose() {
    uv_signal_stop(handle)
    callback = nil
  }

  public static var terminate: Int32 { cuv_sigterm() }
  public static var interrupt: Int32 { cuv_sigint() }
}

extension EventLoop {
  /// Sleeps on the loop's own timer (`Task.sleep` is timed by Dispatch, not the loop).
  /// Throws `CancellationError` when the task is cancelled.
  public func sleep(milliseconds: UInt64) async throws {
    final class Sleep: @unchecked Sendable {
      // Loop thread only, except `continuation`, which is set before any loop work is queued.
      var continuation: CheckedContinuation<Void, any Error>?
      var timer: UVTimer?
      var cancelled = false

      func finish(_ result: Result<Void, any Error>) {
        timer?.close()
        timer = nil
        continuation?.resume(with: result)
        continuation = nil
      }
    }
    let sleep = Sleep()
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
        sleep.continuation = c
        self.execute {
          if sleep.cancelled {
            sleep.finish(.failure(CancellationError()))
            return
          }
          let timer = UVTimer(on: self)
          sleep.timer = timer
          timer.start(timeoutMs: milliseconds) { sleep.finish(.success(())) }
        }
      }
    } onCancel: {
      self.execute {
        sleep.cancelled = true
        if sleep.timer != nil { sleep.finish(.failure(CancellationError())) }
      }
    }
  }

  /// Runs `body` on the loop thread and returns its result.
  public func submit<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    if inLoop { return try body() }
    return try await withCheckedThrowingContinuation { c in
      execute { c.resume(with: Result { try body() }) }
    }
  }
}
