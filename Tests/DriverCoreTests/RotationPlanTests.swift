@testable import DriverCore
import Testing

@Suite struct RotationPlanTests {
  let settings = RotationPlan.Settings(defaultInterval: .seconds(120), floor: .seconds(30))

  func volume(_ target: String, key: String = "k", interval: Duration? = nil, lastFetch: Duration = .zero, expires: Duration? = nil)
    -> RotationPlan.Volume
  {
    .init(target: target, backoffKey: key, interval: interval, lastFetch: lastFetch, tokensExpire: expires)
  }

  @Test func jitterIsBoundedStableAndSpreads() {
    let plan = RotationPlan(settings: settings)
    var dues = Set<Duration>()
    for i in 0..<200 {
      let v = volume("/var/lib/kubelet/pods/\(i)/volumes/kubernetes.io~csi/s/mount")
      let due = plan.due(v)
      #expect(due <= .seconds(120) && due >= .seconds(110), "\(due)")  // never later than one interval
      #expect(due == plan.due(v))  // stable
      dues.insert(due)
    }
    #expect(dues.count > 150)  // spread, not lockstep
    // The bound is 10 % of short intervals, 10 s of long ones.
    #expect(plan.jitter(target: "/x", interval: .seconds(40)) < .seconds(4))
    #expect(plan.jitter(target: "/x", interval: .seconds(3600)) < .seconds(10))
  }

  @Test func classIntervalsAreFloored() {
    let plan = RotationPlan(settings: settings)
    #expect(plan.interval(for: nil) == .seconds(120))
    #expect(plan.interval(for: .seconds(45)) == .seconds(45))
    #expect(plan.interval(for: .seconds(5)) == .seconds(30))
  }

  @Test func dueVolumesComeOutInOrderAndLeaveThePlan() {
    var plan = RotationPlan(settings: settings)
    plan.upsert(volume("/a", interval: .seconds(60)))
    plan.upsert(volume("/b", interval: .seconds(30)))
    plan.upsert(volume("/c"))
    #expect(plan.takeDue(now: .seconds(20)).isEmpty)
    #expect(plan.takeDue(now: .seconds(30)).map(\.target) == ["/b"])
    #expect(plan.takeDue(now: .seconds(60)).map(\.target) == ["/a"])
    #expect(plan.takeDue(now: .seconds(60)).isEmpty)  // taken once
    #expect(plan.takeDue(now: .seconds(121)).map(\.target) == ["/c"])
    #expect(plan.nextDue() == nil)
  }

  @Test func upsertReplacesTheOldDueTime() {
    var plan = RotationPlan(settings: settings)
    plan.upsert(volume("/a", interval: .seconds(60)))
    plan.upsert(volume("/a", interval: .seconds(60), lastFetch: .seconds(50)))  // refreshed by a republish
    #expect(plan.takeDue(now: .seconds(60)).isEmpty)
    #expect(plan.takeDue(now: .seconds(110)).map(\.target) == ["/a"])
    plan.upsert(volume("/b"))
    plan.remove(target: "/b")
    #expect(plan.takeDue(now: .seconds(1000)).isEmpty)
  }

  @Test func backoffGrowsPerKeyAndResets() {
    var plan = RotationPlan(settings: settings)
    let v = volume("/a", key: "ns/sa/class", interval: .seconds(30))
    plan.upsert(v)
    var now = Duration.seconds(30)
    #expect(plan.takeDue(now: now).count == 1)
    var waits: [Duration] = []
    for _ in 0..<8 {
      plan.failed(v, now: now)
      let next = plan.nextDue()!
      waits.append(next - now)
      #expect(plan.takeDue(now: next).count == 1)
      now = next
    }
    for (a, b) in zip(waits, waits.dropFirst()) { #expect(b >= a) }
    #expect(waits.first! >= .seconds(5) && waits.first! <= .seconds(7))
    #expect(waits.last! <= .seconds(375))  // the cap plus its jitter
    #expect(plan.backoffFailures(key: "ns/sa/class") == 8)
    plan.failed(v, now: now)
    // Another volume of the same key waits for the backoff too.
    plan.upsert(volume("/b", key: "ns/sa/class", interval: .seconds(30), lastFetch: now - .seconds(100)))
    #expect(plan.takeDue(now: now).isEmpty)
    #expect(plan.takeDue(now: now + .seconds(400)).map(\.target).sorted() == ["/a", "/b"])  // after the backoff
    plan.succeeded(backoffKey: "ns/sa/class")
    #expect(plan.backoffFailures(key: "ns/sa/class") == 0)
    plan.upsert(volume("/b", key: "ns/sa/class", interval: .seconds(30), lastFetch: now - .seconds(100)))
    #expect(plan.takeDue(now: now).map(\.target) == ["/b"])
  }

  @Test func aFailureHoldsBackEveryVolumeOfItsKeyAlreadyScheduled() {
    var plan = RotationPlan(settings: settings)
    // Three volumes of one class and identity, one of another, all scheduled before any failure.
    for t in ["/a", "/b", "/c"] { plan.upsert(volume(t, key: "ns/sa/hot", interval: .seconds(30))) }
    plan.upsert(volume("/d", key: "ns/other/cold", interval: .seconds(30)))
    #expect(plan.volumesInBackoff == 0)
    // Due at 27 to 30 s (jitter up to 3 s); a republish of /a fails at 26 s.
    let now = Duration.seconds(26)
    #expect(plan.takeDue(now: now).isEmpty)
    let first = volume("/a", key: "ns/sa/hot", interval: .seconds(30))
    plan.failed(first, now: now)
    #expect(plan.volumesInBackoff == 3)
    let until = plan.backoffUntil(key: "ns/sa/hot", now: now)!
    #expect(until >= now + .seconds(5) && until <= now + .seconds(7))
    // At their own due time the other volumes of the key wait for the backoff; the other key does not.
    #expect(plan.takeDue(now: .seconds(30)).map(\.target) == ["/d"])
    #expect(plan.nextDue()! == until)
    #expect(plan.takeDue(now: until + .seconds(2)).map(\.target).sorted() == ["/a", "/b", "/c"])
    // A second failure doubles the wait; a success ends it for the whole key.
    plan.failed(first, now: until)
    #expect(plan.backoffFailures(key: "ns/sa/hot") == 2)
    #expect(plan.backoffUntil(key: "ns/sa/hot", now: until)! >= until + .seconds(10))
    plan.succeeded(backoffKey: "ns/sa/hot")
    #expect(plan.volumesInBackoff == 0)
    #expect(plan.backoffUntil(key: "ns/sa/hot", now: until) == nil)
    plan.remove(target: "/a")
    plan.failed(volume("/b", key: "ns/sa/hot"), now: until)
    #expect(plan.volumesInBackoff == 2)  // removed volumes no longer count
  }

  @Test func volumesFailingTogetherGrowTheBackoffOnce() {
    var plan = RotationPlan(settings: settings)
    let vs = (0..<10).map { volume("/v\($0)", key: "ns/sa/hot", interval: .seconds(30)) }
    for v in vs { plan.upsert(v) }
    let due = plan.takeDue(now: .seconds(30))
    #expect(due.count == 10)
    // Ten calls were in flight; their failures come back one after another.
    for (i, v) in due.enumerated() { plan.failed(v, now: .seconds(30) + .milliseconds(i * 10)) }
    #expect(plan.backoffFailures(key: "ns/sa/hot") == 1)
    let until = plan.backoffUntil(key: "ns/sa/hot", now: .seconds(30))!
    #expect(until <= .seconds(30) + .milliseconds(6250))
    // All retry when it ends; the next round's failure doubles it.
    #expect(plan.takeDue(now: until).count == 10)
    plan.failed(vs[3], now: until)
    #expect(plan.backoffFailures(key: "ns/sa/hot") == 2)
  }

  @Test func volumesThatSharedAnAnswerComeDueWithTheirLeader() {
    let plan = RotationPlan(settings: settings)
    let leader = volume("/pods/leader", lastFetch: .seconds(100))
    var follower = volume("/pods/follower", lastFetch: .seconds(100))
    #expect(plan.due(leader) != plan.due(follower))  // own jitter: spread
    follower.jitterSeed = "/pods/leader"
    #expect(plan.due(leader) == plan.due(follower))  // the leader's jitter: due together
  }

  @Test func expiredTokensWaitForRepublish() {
    var plan = RotationPlan(settings: settings)
    plan.upsert(volume("/a", interval: .seconds(30), expires: .seconds(20)))
    plan.upsert(volume("/b", interval: .seconds(30), expires: .seconds(600)))
    #expect(plan.takeDue(now: .seconds(30)).map(\.target) == ["/b"])
    #expect(plan.waitingForRepublish == ["/a"])
    // kubelet's republish brings fresh tokens (and refreshes, being due).
    plan.upsert(volume("/a", interval: .seconds(30), lastFetch: .seconds(40), expires: .seconds(700)))
    #expect(plan.waitingForRepublish.isEmpty)
    #expect(plan.takeDue(now: .seconds(70)).map(\.target) == ["/a"])
  }
}
