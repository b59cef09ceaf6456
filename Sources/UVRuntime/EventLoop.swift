public import CUV
import Glibc

/// One libuv loop on its own thread, exposed to Swift concurrency as a task
/// executor (tasks that prefer it stay on it instead of hopping to the global
/// pool) and, through `asUnownedSerialExecutor()`, as the serial executor of
/// the actors that own I/O state.
///
/// The two roles are two objects on purpose. A job that arrives as a task
/// executor job runs with no actor isolation, so a nonisolated async function
/// it calls continues inline; were every job run as isolated to the loop, each
/// such call would be a "switch to the generic executor", enqueued and drained
/// again (about 90 round trips per unary gRPC call before this split).
///
/// Threading contract: the loop is single-threaded. Every libuv call happens on
/// the loop thread; the only way in from another thread is `enqueue`/`execute`,
/// which go through one coalescing `uv_async_t`.
public final class EventLoop: TaskExecutor, @unchecked Sendable {
  enum Work {
    case job(UnownedJob)  // a task that prefers this loop, no actor isolation
    case isolatedJob(UnownedJob)  // a job of an actor whose executor is this loop
    case closure(() -> Void)
  }

  /// The serial executor of actors that run on this loop.
  final class ActorExecutor: SerialExecutor, @unchecked Sendable {
    unowned let loop: EventLoop
    init(loop: EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
      loop.submit(.isolatedJob(UnownedJob(job)))
    }

    func isIsolatingCurrentContext() -> Bool? {
      loop.inLoop
    }

    func checkIsolated() {
      loop.preconditionInLoop()
    }
  }

  enum State {
    case running
    case draining  // shutdown asked: run what is queued, then close
    case closed
  }

  public let name: String
  /// The raw loop. Only touch it on the loop thread.
  public let uvLoop: UnsafeMutablePointer<uv_loop_t>
  private let wakeup: UnsafeMutablePointer<uv_async_t>
  /// Drains work queued from the loop thread itself just before the loop
  /// blocks, so such work needs no eventfd write and no extra poll round.
  private let beforePoll: UnsafeMutablePointer<uv_prepare_t>
  /// Active while the loop spins (polls without blocking) after recent work.
  private let spinner: UnsafeMutablePointer<uv_idle_t>
  private let spinNs: UInt64
  private var spinState = (spinning: false, bursts: 0)  // guarded by lock
  private var lastWorkNs: UInt64 = 0  // loop thread only
  private var spinUntilNs: UInt64 = 0  // loop thread only: a reply expected before this
  private let lock = Lock()
  private var pending: [Work] = []  // guarded by lock
  private var state = State.running  // guarded by lock
  private var spare: [Work] = []  // loop thread only
  private var thread = pthread_t()
  private var actorExecutor: ActorExecutor!  // set once in init
  private let finished = Locked<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

  /// Result of `uv_loop_close` once the loop has stopped: 0 means every handle was closed.
  public private(set) var closeResult: Int32 = 0
  /// Descriptions of handles that were still open at shutdown (a leak: each should be empty).
  public private(set) var leakedHandles: [String] = []
  /// Work that arrived after the loop closed and could not run.
  public var droppedWork: Int { lock.withLock { droppedCount } }
  private var droppedCount = 0
  /// Jobs and closures queued on this loop since it started (a cost counter:
  /// every one is a trip through the queue).
  public var submittedWork: Int { lock.withLock { submittedCount } }
  private var submittedCount = 0

  /// The longest spin a loop accepts from a flag: beyond 1 ms spinning costs
  /// more CPU than any wakeup it saves.
  public static let maxSpin = Duration.milliseconds(1)

  /// A `--loop-spin-us` value as a spin, clamped to 0...`maxSpin`.
  public static func spin(microseconds: Int) -> Duration {
    min(max(.zero, .microseconds(microseconds)), maxSpin)
  }

  /// Starts a loop on a new thread.
  ///
  /// `spin`: after running work, keep polling without blocking for this long
  /// before sleeping in epoll. A peer's next message then needs no wakeup of
  /// this thread, which on a virtual machine costs ~25 µs per cross-core
  /// round; the price is at most `spin` of CPU after each burst of work, and
  /// nothing while the loop is idle. Zero (the default) never spins.
  public init(name: String = "uv-loop", spin: Duration = .zero) {
    // A peer that goes away must be an error on the write, not a signal that kills us.
    _ = EventLoop.ignoreSIGPIPE
    self.name = name
    uvLoop = .allocate(capacity: 1)
    precondition(uv_loop_init(uvLoop) == 0, "uv_loop_init failed")
    wakeup = .allocate(capacity: 1)
    beforePoll = .allocate(capacity: 1)
    spinner = .allocate(capacity: 1)
    let (seconds, attoseconds) = spin.components
    spinNs = spin > .zero ? UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000) : 0
    uv_async_init(uvLoop, wakeup) { handle in
      let loop = Unmanaged<EventLoop>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
      loop.drain()
    }
    // The loop keeps itself alive until its thread ends (released in `threadMain`).
    wakeup.pointee.data = Unmanaged.passRetained(self).toOpaque()
    uv_prepare_init(uvLoop, beforePoll)
    beforePoll.pointee.data = wakeup.pointee.data
    uv_prepare_start(beforePoll) { handle in
      let loop = Unmanaged<EventLoop>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
      loop.drain()
    }
    // Only the async handle keeps the loop running; this one just rides along.
    uv_unref(cuv_handle(beforePoll))
    uv_idle_init(uvLoop, spinner)
    spinner.pointee.data = wakeup.pointee.data
    uv_unref(cuv_handle(spinner))
    actorExecutor = ActorExecutor(loop: self)  // before the thread exists, so it never sees nil
    let box = Unmanaged.passUnretained(self).toOpaque()
    let rc = pthread_create(&thread, nil, { arg in
      let loop = Unmanaged<EventLoop>.fromOpaque(arg!).takeUnretainedValue()
      loop.threadMain()
      return nil
    }, box)
    precondition(rc == 0, "pthread_create failed")
  }

  private static let ignoreSIGPIPE: Void = { signal(SIGPIPE, SIG_IGN) }()

  private func threadMain() {
    cuv_set_thread_name(name)
    uv_run(uvLoop, UV_RUN_DEFAULT)
    closeResult = uv_loop_close(uvLoop)
    if closeResult == 0 {
      uvLoop.deallocate()
    }
    let waiters = finished.withLock { state -> [CheckedContinuation<Void, Never>] in
      state.done = true
      defer { state.waiters = [] }
      return state.waiters
    }
    for w in waiters { w.resume() }
    Unmanaged<EventLoop>.passUnretained(self).release()
  }

  /// True when called on this loop's thread.
  public var inLoop: Bool {
    cuv_pthread_equal_self(thread) != 0
  }

  @inline(__always)
  public func preconditionInLoop(file: StaticString = #fileID, line: UInt = #line) {
    precondition(inLoop, "must be called on the loop thread of \(name)", file: file, line: line)
  }

  // MARK: Executor

  public func enqueue(_ job: consuming ExecutorJob) {
    submit(.job(UnownedJob(job)))
  }

  /// Runs `body` on the loop thread, soon. Safe from any thread.
  public func execute(_ body: @escaping @Sendable () -> Void) {
    submit(.closure(body))
  }

  /// Runs `body` on the loop thread now if already there, else soon.
  public func executeOrRun(_ body: @escaping @Sendable () -> Void) {
    if inLoop { body() } else { submit(.closure(body)) }
  }

  fileprivate func submit(_ work: Work) {
    let onLoop = inLoop
    lock.withLock {
      if case .closed = state {
        droppedCount += 1
        return
      }
      pending.append(work)
      submittedCount &+= 1
      // On the loop thread the prepare handle drains the queue before the loop
      // next blocks: no wakeup needed. From elsewhere, uv_async_send coalesces,
      // so only the first item of a batch sends one. It is sent under the lock:
      // once the loop has seen `.closed` it frees the async handle, so a send
      // after unlocking could touch freed memory.
      if !onLoop && pending.count == 1 { uv_async_send(wakeup) }
    }
  }

  /// The serial executor for an actor that runs on this loop
  /// (`nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }`).
  /// Raw libuv callbacks count as its isolation, so `actor.assumeIsolated` works in them.
  public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
    UnownedSerialExecutor(ordinary: actorExecutor)
  }

  /// Runs `body` on the loop thread once the work queued so far has run and
  /// the loop is about to wait for I/O, or after a long stretch of work,
  /// whichever comes first. Loop thread only. For output that should leave in
  /// one write per turn rather than one per producer (a connection's flush).
  public func whenIdle(_ body: @escaping () -> Void) {
    preconditionInLoop()
    idleWork.append(body)
  }

  /// Jobs run between two rounds of `whenIdle` work when the queue never empties.
  public static let idleWorkEvery = 64
  private var idleWork: [() -> Void] = []  // loop thread only
  private var idleSpare: [() -> Void] = []  // loop thread only
  private var workSinceIdle = 0  // loop thread only

  private func drain() {
    while true {
      let took = lock.withLock { () -> Bool in
        if pending.isEmpty { return false }
        swap(&pending, &spare)
        return true
      }
      if took {
        for work in spare {
          switch work {
          case .job(let job):
            job.runSynchronously(on: asUnownedTaskExecutor())
          case .isolatedJob(let job):
            job.runSynchronously(isolatedTo: asUnownedSerialExecutor(), taskExecutor: asUnownedTaskExecutor())
          case .closure(let body):
            body()
          }
        }
        workSinceIdle += spare.count
        spare.removeAll(keepingCapacity: true)
        if spinNs > 0 { noteWork() }
        if workSinceIdle >= Self.idleWorkEvery { runIdleWork() }
        continue
      }
      if runIdleWork() { continue }
      let closeNow = lock.withLock { () -> Bool in
        guard pending.isEmpty, case .draining = state else { return false }
        state = .closed
        return true
      }
      if closeNow { closeRemainingHandles() }
      return
    }
  }

  /// A caller just sent a request whose reply usually comes within `within`:
  /// keep polling until then (at most `maxSpin`) rather than sleep and be woken.
  /// Loop thread only; nothing when spinning is off.
  public func expectReply(within: Duration) {
    preconditionInLoop()
    guard spinNs > 0, within > .zero else { return }
    let (seconds, attoseconds) = min(within, Self.maxSpin).components
    spinUntilNs = max(spinUntilNs, uv_hrtime() + UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000))
    startSpinning()
  }

  /// Work ran: spin (poll without blocking) until `spin` passes without more.
  private func noteWork() {
    lastWorkNs = uv_hrtime()
    startSpinning()
  }

  private func startSpinning() {
    let start = lock.withLock { () -> Bool in
      guard !spinState.spinning else { return false }
      spinState = (true, spinState.bursts + 1)
      return true
    }
    guard start else { return }
    uv_idle_start(spinner) { handle in
      let loop = Unmanaged<EventLoop>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
      let now = uv_hrtime()
      if now &- loop.lastWorkNs > loop.spinNs && now > loop.spinUntilNs {
        loop.lock.withLock { loop.spinState.spinning = false }
        uv_idle_stop(handle)
      }
    }
  }

  /// Whether the loop is polling without blocking right now, and how many
  /// times it has started to (for tests and diagnostics).
  public var spinStatus: (spinning: Bool, bursts: Int) { lock.withLock { spinState } }

  /// Runs the `whenIdle` work queued so far; true when there was some.
  @discardableResult
  private func runIdleWork() -> Bool {
    workSinceIdle = 0
    if idleWork.isEmpty { return false }
    swap(&idleWork, &idleSpare)
    for body in idleSpare { body() }
    idleSpare.removeAll(keepingCapacity: true)
    return true
  }

  private func closeRemainingHandles() {
    uv_close(cuv_handle(wakeup)) { handle in
      handle!.deallocate()
    }
    uv_prepare_stop(beforePoll)
    uv_close(cuv_handle(beforePoll)) { handle in
      handle!.deallocate()
    }
    uv_idle_stop(spinner)
    uv_close(cuv_handle(spinner)) { handle in
      handle!.deallocate()
    }
    // Anything still open is a leak by its owner; close it so the loop can end, and say so.
    uv_walk(uvLoop, { handle, arg in
      guard let handle, cuv_is_closing(handle) == 0 else { return }
      let loop = Unmanaged<EventLoop>.fromOpaque(arg!).takeUnretainedValue()
      let type = String(cString: uv_handle_type_name(handle.pointee.type))
      loop.leakedHandles.append(type)
      // As `UVHandle.close` does (every handle here is one): free the memory and drop the
      // owner's keep-alive reference, so a leaked handle costs a report, not its memory.
      uv_close(handle) { raw in
        guard let raw else { return }
        let data = raw.pointee.data
        raw.deallocate()
        if let data { Unmanaged<AnyObject>.fromOpaque(data).release() }
      }
    }, Unmanaged.passUnretained(self).toOpaque())
  }

  /// Asks the loop to stop once the work queued so far has run. Every component
  /// should have closed its handles first; any still open are closed and
  /// reported in `leakedHandles`.
  public func shutdown() {
    lock.withLock {
      guard case .running = state else { return }
      state = .draining
      uv_async_send(wakeup)  // under the lock, as in `submit`
    }
  }

  /// Shuts down and waits until the loop thread has ended.
  public func shutdownAndWait() async {
    shutdown()
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
      let done = finished.withLock { state -> Bool in
        if state.done { return true }
        state.waiters.append(c)
        return false
      }
      if done { c.resume() }
    }
    pthread_join(thread, nil)
  }

  /// Blocking variant for synchronous callers (never from the loop thread).
  public func shutdownAndJoin() {
    precondition(!inLoop, "cannot join the loop from its own thread")
    shutdown()
    pthread_join(thread, nil)
  }

  /// Milliseconds of the loop's clock (cached per loop iteration). Loop thread only.
  public var nowMs: UInt64 { uv_now(uvLoop) }
}
