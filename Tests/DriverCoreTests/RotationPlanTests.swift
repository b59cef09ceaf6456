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
