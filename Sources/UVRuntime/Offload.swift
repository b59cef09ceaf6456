import CUV

extension EventLoop {
  /// Runs `body` on libuv's thread pool and resumes the caller with its result.
  /// For short blocking system calls (mount(2), small tmpfs writes) that would
  /// otherwise hold the loop while other volumes wait: the loop keeps serving
  /// sockets and timers, and another core can do the syscalls.
  public func offload<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
      let result = Locked<Result<T, any Error>?>(nil)
      let job = OffloadJob(
        run: { result.withLock { $0 = Result { try body() } } },
        complete: { status in
          let outcome = result.withLock { $0 } ?? .failure(UVError(status, "uv_queue_work"))
          continuation.resume(with: outcome)
        })
      executeOrRun { [self] in job.queue(on: uvLoop) }  // from the loop (the usual caller): no queue trip
    }
  }
}

/// One offloaded call, type-erased so libuv's C callbacks can reach it.
private final class OffloadJob: @unchecked Sendable {
  let run: () -> Void
  let complete: (Int32) -> Void

  init(run: @escaping () -> Void, complete: @escaping (Int32) -> Void) {
    self.run = run
    self.complete = complete
  }

  /// Loop thread only.
  func queue(on loop: UnsafeMutablePointer<uv_loop_t>) {
    let req = UnsafeMutablePointer<uv_work_t>.allocate(capacity: 1)
    req.pointee.data = Unmanaged.passRetained(self).toOpaque()
    let rc = uv_queue_work(
      loop, req,
      { req in Unmanaged<OffloadJob>.fromOpaque(req!.pointee.data).takeUnretainedValue().run() },
      { req, status in
        let job = Unmanaged<OffloadJob>.fromOpaque(req!.pointee.data).takeRetainedValue()
        req!.deallocate()
        job.complete(status)
      })
    if rc != 0 {
      Unmanaged<OffloadJob>.fromOpaque(req.pointee.data).release()
      req.deallocate()
      complete(rc)
    }
  }
}
