import CSIMessages
import Glibc
@testable import DriverCore
import Testing
import UVRuntime

@Suite struct CoalesceKeyTests {
  static let tokens = #"{"vault":{"token":"TOKEN-A","expirationTimestamp":"2099-01-01T00:00:00Z"}}"#

  static func context(
    pod: String = "app-0", uid: String = "uid-0", namespace: String = "team", serviceAccount: String = "app",
    tokens: String? = CoalesceKeyTests.tokens, extra: [String: String] = [:]
  ) -> [String: String] {
    var c = [
      "secretProviderClass": "db", PodVolume.podNameKey: pod, PodVolume.podUIDKey: uid, PodVolume.podNamespaceKey: namespace,
      PodVolume.serviceAccountKey: serviceAccount, PodVolume.ephemeralKey: "true",
    ]
    if let tokens { c[PodVolume.tokensKey] = tokens }
    c.merge(extra) { _, new in new }
    return c
  }

  static func key(
    provider: String = "vault", parameters: [String: String] = ["roleName": "app", "objects": "db-password"],
    context: [String: String] = CoalesceKeyTests.context(), secrets: [String: String] = [:],
    versions: [Provider.ObjectVersion] = [.init(id: "db-password", version: "1")]
  ) -> CoalesceKey? {
    CoalesceKey(provider: provider, parameters: parameters, volumeContext: context, secrets: secrets, currentVersions: versions)
  }

  @Test func podsOfOneIdentityShareAKey() throws {
    let a = try #require(Self.key())
    // Another pod of the same Deployment: its own name, UID and token values.
    let otherTokens = #"{"vault":{"token":"TOKEN-B","expirationTimestamp":"2099-02-01T00:00:00Z"}}"#
    let b = try #require(Self.key(context: Self.context(pod: "app-1", uid: "uid-1", tokens: otherTokens)))
    #expect(a == b)
    // Tokens handed over in `secrets` (newer kubelets) are the same request.
    var moved = Self.context(tokens: nil)
    moved[PodVolume.tokensKey] = nil
    #expect(Self.key(context: moved, secrets: [PodVolume.tokensKey: Self.tokens]) == a)
  }

  @Test func anyDifferenceInTheRequestOrIdentityMakesAnotherKey() throws {
    let base = try #require(Self.key())
    let others: [(String, CoalesceKey?)] = [
      ("namespace", Self.key(context: Self.context(namespace: "other-team"))),
      ("service account", Self.key(context: Self.context(serviceAccount: "admin"))),
      ("parameters", Self.key(parameters: ["roleName": "admin", "objects": "db-password"])),
      ("a parameter more", Self.key(parameters: ["roleName": "app", "objects": "db-password", "region": "eu"])),
      ("volume attribute", Self.key(context: Self.context(extra: ["region": "us"]))),
      ("class", Self.key(context: Self.context(extra: ["secretProviderClass": "db2"]))),
      ("provider", Self.key(provider: "azure")),
      ("nodePublishSecretRef", Self.key(secrets: ["clientSecret": "s3cr3t"])),
      ("audiences", Self.key(context: Self.context(tokens: #"{"vault":{"token":"T"},"sts.amazonaws.com":{"token":"U"}}"#))),
      ("another audience", Self.key(context: Self.context(tokens: #"{"api":{"token":"T"}}"#))),
      ("no tokens", Self.key(context: Self.context(tokens: nil))),
      ("versions", Self.key(versions: [.init(id: "db-password", version: "2")])),
    ]
    for (what, key) in others {
      let key = try #require(key, "\(what)")
      #expect(key != base, "a different \(what) must not share a call")
    }
    // Two nodePublishSecretRef values are two keys too.
    #expect(Self.key(secrets: ["clientSecret": "one"]) != Self.key(secrets: ["clientSecret": "two"]))
    // A value cannot pose as a key boundary.
    #expect(Self.key(parameters: ["a": "b", "c": "d"]) != Self.key(parameters: ["a": "b2:c1:d", "c": ""]))
  }

  @Test func unknownIdentityOrUnreadableTokensNeverShare() {
    #expect(Self.key(context: Self.context(serviceAccount: "")) == nil)
    #expect(Self.key(context: Self.context(tokens: "not json")) == nil)
  }

  @Test func theKeyNeverPrintsWhatItHolds() throws {
    let key = try #require(Self.key(secrets: ["clientSecret": "s3cr3t-value"]))
    for text in ["\(key)", String(describing: key), String(reflecting: key), "\(Mirror(reflecting: key).children.map { "\($0.value)" })"] {
      #expect(!text.contains("s3cr3t") && !text.contains("TOKEN") && !text.contains("roleName"), "\(text)")
    }
  }
}

@Suite struct RefreshCoalescerTests {
  static let answer = Provider.MountResponse(
    objectVersion: [.init(id: "db", version: "1")], files: [.init(path: "db", mode: 0, contents: Array("v1".utf8))])

  static func waitFor(_ what: String, _ condition: () async -> Bool) async {
    for _ in 0..<20_000 {
      if await condition() { return }
      await Task.yield()
    }
    Issue.record("never: \(what)")
  }

  /// A provider call held until the test lets it go (the test holds `hold`'s one slot).
  static func heldCall(_ hold: ProviderGate, calls: Locked<Int>, answer: Provider.MountResponse) -> RefreshCoalescer.Call {
    {
      calls.withLock { $0 += 1 }
      _ = try? await hold.acquire(.refresh)
      hold.release()
      return .success(answer)
    }
  }

  /// Runs `body` with what each test below starts from: a coalescer on a fresh loop, a
  /// gate whose one slot the test holds (so `heldCall`s wait until it releases it), a
  /// count of provider calls and the key of the default identity.
  static func withHeldCoalescer(
    _ body: (RefreshCoalescer, ProviderGate, Locked<Int>, CoalesceKey) async throws -> Void
  ) async throws {
    try await withLoop("coalesce") { loop in
      let coalescer = RefreshCoalescer(provider: "p", window: .seconds(60), loop: loop)
      let hold = ProviderGate(limits: .init(concurrency: 1), loop: loop)
      try await hold.acquire(.refresh)
      let calls = Locked(0)
      let key = try #require(CoalesceKeyTests.key())
      try await body(coalescer, hold, calls, key)
    }
  }

  /// A leader's call held at `hold`, three more refreshes of its key waiting on it, then
  /// `hold` released: what the three got (in order), once the leader has its answer too.
  static func threeJoinALeader(
    _ coalescer: RefreshCoalescer, _ hold: ProviderGate, calls: Locked<Int>, key: CoalesceKey, call: @escaping RefreshCoalescer.Call
  ) async -> [RefreshCoalescer.Answer] {
    let leader = Task { await coalescer.refresh(key, target: "/leader", timeout: .seconds(30), call: call) }
    await Self.waitFor("the first call") { calls.withLock { $0 } == 1 }
    let followers = (0..<3).map { i in Task { await coalescer.refresh(key, target: "/f\(i)", timeout: .seconds(30), call: call) } }
    await Self.waitFor("three waiting") { await coalescer.waiting == 3 }
    hold.release()
    var answers: [RefreshCoalescer.Answer] = []
    for f in followers { answers.append(await f.value) }
    _ = await leader.value
    return answers
  }

  @Test func oneCallFansOutToEveryWaitingRefreshAndLaterOnesInTheWindow() async throws {
    try await Self.withHeldCoalescer { coalescer, hold, calls, key in
      let call = Self.heldCall(hold, calls: calls, answer: Self.answer)
      let answers = Locked<[String: Bool]>([:])  // target -> shared
      try await withThrowingTaskGroup(of: Void.self) { group in
        for i in 0..<5 {
          group.addTask {
            let a = await coalescer.refresh(key, target: "/v\(i)", timeout: .seconds(30), call: call)
            switch a {
            case .called(let r): answers.withLock { $0["/v\(i)"] = false }; #expect((try? r.get()) == Self.answer)
            case .shared(let r, let origin):
              answers.withLock { $0["/v\(i)"] = true }
              #expect((try? r.get()) == Self.answer)
              #expect(origin.leader != "/v\(i)")
            }
          }
          if i == 0 { await Self.waitFor("the first call") { calls.withLock { $0 } == 1 } }
        }
        await Self.waitFor("four refreshes waiting") { await coalescer.waiting == 4 }
        hold.release()
        try await group.waitForAll()
      }
      #expect(calls.withLock { $0 } == 1)
      #expect(answers.withLock { $0.values.filter { $0 }.count } == 4)
      // Within the window, a later refresh takes the kept answer without a call.
      guard case .shared(.success(let kept), _) = await coalescer.refresh(key, target: "/late", timeout: .seconds(1), call: call) else {
        Issue.record("a refresh within the window made its own call")
        return
      }
      #expect(kept == Self.answer && calls.withLock { $0 } == 1)
      // Another identity never takes it.
      let other = try #require(CoalesceKeyTests.key(context: CoalesceKeyTests.context(namespace: "elsewhere")))
      try await hold.acquire(.refresh)
      let separate = Task { await coalescer.refresh(other, target: "/x", timeout: .seconds(30), call: call) }
      await Self.waitFor("the other identity's own call") { calls.withLock { $0 } == 2 }
      hold.release()
      guard case .called = await separate.value else {
        Issue.record("another namespace shared the answer")
        return
      }
      #expect(await coalescer.saved == 5)
      #expect(await coalescer.calls == 2)
      await coalescer.close()  // drops the kept answers and their timers
      #expect(await coalescer.keys == 0)
    }
  }

  @Test func anAnswerWithoutFilesIsNotHandedOn() async throws {
    try await Self.withHeldCoalescer { coalescer, hold, calls, key in
      // A provider that wrote the files into its caller's target itself.
      let call = Self.heldCall(hold, calls: calls, answer: Provider.MountResponse(objectVersion: [.init(id: "db", version: "1")]))
      for answer in await Self.threeJoinALeader(coalescer, hold, calls: calls, key: key, call: call) {
        guard case .called = answer else { Issue.record("a fileless answer was handed on"); return }
      }
      #expect(calls.withLock { $0 } == 4)
      #expect(await coalescer.keys == 0)  // nothing kept
    }
  }

  @Test func aThrottledAnswerIsSharedWithThoseWaitingButNotKept() async throws {
    try await Self.withHeldCoalescer { coalescer, hold, calls, key in
      let throttled = Provider.MountResponse(error: .init(code: "ThrottlingException"))
      let call = Self.heldCall(hold, calls: calls, answer: throttled)
      for answer in await Self.threeJoinALeader(coalescer, hold, calls: calls, key: key, call: call) {
        guard case .shared(.success(let r), _) = answer else { Issue.record("the throttled answer was not shared"); return }
        #expect(r.error?.code == "ThrottlingException")
      }
      #expect(calls.withLock { $0 } == 1)
      #expect(await coalescer.keys == 0)  // a failure is not kept: the next refresh asks again
    }
  }

  @Test func aWaitEndsAtItsOwnDeadline() async throws {
    try await Self.withHeldCoalescer { coalescer, hold, calls, key in
      let call = Self.heldCall(hold, calls: calls, answer: Self.answer)
      let leader = Task { await coalescer.refresh(key, target: "/leader", timeout: .seconds(30), call: call) }
      await Self.waitFor("the first call") { calls.withLock { $0 } == 1 }
      guard case .shared(.failure(let error), _) = await coalescer.refresh(key, target: "/f", timeout: .milliseconds(20), call: call) else {
        Issue.record("the wait did not end at its deadline")
        return
      }
      #expect(error.kind == .deadlineExceeded)
      hold.release()
      _ = await leader.value
      await coalescer.close()
    }
  }
  /// A refresh from another loop (its task prefers loop 1, as a volume sharded to loop 1
  /// calls; the coalescer is on loop 0) that finds the call in flight joins it even
  /// when the answer lands before it is registered as a waiter. The runtime puts such a
  /// caller back in loop 0's queue at the coalescer's `await` (the loop runs actor jobs
  /// with itself as the task executor, the task prefers another), so the leader's answer
  /// can run in between: the caller must take the kept answer, not make a call of its own.
  @Test func aRefreshFromAnotherLoopTakesTheAnswerThatLandedWhileItJoined() async throws {
    let loops = EventLoopGroup(count: 2, name: "coalesce")
    let (home, other) = (loops.loops[0], loops.loops[1])
    let coalescer = RefreshCoalescer(provider: "p", window: .seconds(60), loop: home)
    let calls = Locked(0)
    let held = Locked<CheckedContinuation<Void, Never>?>(nil)
    let key = try #require(CoalesceKeyTests.key())
    let call: RefreshCoalescer.Call = {
      // The first call waits until the test lets it answer; any other answers at once.
      if calls.withLock({ $0 += 1; return $0 }) == 1 { await withCheckedContinuation { c in held.withLock { $0 = c } } }
      return .success(Self.answer)
    }
    let leader = Task(executorPreference: other) { await coalescer.refresh(key, target: "/leader", timeout: .seconds(30), call: call) }
    await Self.waitFor("the leader's call") { held.withLock { $0 != nil } }
    // Loop 0 stops while, in this order, the follower reaches the coalescer (its job
    // queued on loop 0, the call in flight) and the leader's answer comes back (queued
    // after it); then loop 0 runs both.
    let paused = Locked(true)
    home.execute {
      let giveUp = ContinuousClock.now + .seconds(10)
      while paused.withLock({ $0 }) && ContinuousClock.now < giveUp { usleep(200) }
    }
    let follower = Task(executorPreference: other) { await coalescer.refresh(key, target: "/follower", timeout: .seconds(30), call: call) }
    other.execute {
      held.withLock { $0 }?.resume()
      other.execute { paused.withLock { $0 = false } }
    }
    guard case .called(.success) = await leader.value else {
      Issue.record("the leader did not make the call")
      return
    }
    switch await follower.value {
    case .shared(.success(let r), let origin):
      #expect(r == Self.answer && origin.leader == "/leader")
    case .shared(.failure(let error), _):
      Issue.record("the follower failed: \(error)")
    case .called:
      Issue.record("the follower made a call of its own")
    }
    #expect(calls.withLock { $0 } == 1)
    #expect(await coalescer.calls == 1)
    #expect(await coalescer.saved == 1)
    await coalescer.close()
    #expect(await coalescer.keys == 0)
    await loops.shutdownAndWait()
    #expect(loops.leakedHandles == [])
  }
}
