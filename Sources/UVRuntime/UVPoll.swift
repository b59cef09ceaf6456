public import CUV

/// Watches a socket someone else owns (libcurl's, for example) for readability
/// and writability. Loop thread only. Close it before the socket is closed or
/// reused: libuv allows one active poll per descriptor.
public final class UVPoll: UVHandle<uv_poll_t>, @unchecked Sendable {
  public struct Events: OptionSet, Sendable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let readable = Events(rawValue: Int32(UV_READABLE.rawValue))
    public static let writable = Events(rawValue: Int32(UV_WRITABLE.rawValue))
  }

  /// Status (0, or a negative libuv error such as a socket error) and the events that are ready.
  private var callback: ((Int32, Events) -> Void)?
  public let socket: Int32

  public init(on loop: EventLoop, socket: Int32) throws(UVError) {
    self.socket = socket
    super.init(loop: loop)
    loop.preconditionInLoop()
    let rc = uv_poll_init_socket(loop.uvLoop, handle, socket)
    if rc < 0 {
      handle.deallocate()
      throw UVError(rc, "uv_poll_init_socket")
    }
    retainUntilClosed()
  }

  /// Starts (or changes) what is watched; `callback` replaces any earlier one.
  public func start(_ events: Events, _ callback: @escaping (Int32, Events) -> Void) throws(UVError) {
    precondition(!isClosed)
    self.callback = callback
    try UVError.check(
      uv_poll_start(handle, events.rawValue, { h, status, events in
        UVPoll.owner(h!.pointee.data).callback?(status, Events(rawValue: events))
      }), "uv_poll_start")
  }

  public func stop() {
    guard !isClosed else { return }
    uv_poll_stop(handle)
  }

  override func willClose() {
    uv_poll_stop(handle)
    callback = nil
  }
}
