import Glibc
import Testing
import UVRuntime

@Suite struct EventLoopGroupTests {
  static func target(_ pod: Int) -> String {
    "/var/lib/kubelet/pods/0d7c-\(pod)-4e1f/volumes/kubernetes.io~csi/secrets-store-inline/mount"
  }

  /// The same key lands on the same loop in every group of the same size, in this
  /// process and the next: the hash is fixed, not Swift's per-process seeded one.
  @Test func aKeyAlwaysMapsToTheSameLoopAndKeysSpread() async {
    let a = EventLoopGroup(count: 4, name: "shard-a")
    let b = EventLoopGroup(count: 4, name: "shard-b")
    var perLoop = [0, 0, 0, 0]
    for pod in 0..<400 {
      let key = Self.target(pod)
      #expect(a.index(forKey: key) == b.index(forKey: key))
      #expect(a.loop(forKey: key) === a.loops[a.index(forKey: key)])
      perLoop[a.index(forKey: key)] += 1
    }
    // 400 keys over 4 loops: each gets a fair share (100 expected; a broken hash gives 0 or 400).
    #expect(perLoop.allSatisfy { $0 > 60 }, "\(perLoop)")
    // Pinned values (computed by an independent implementation): a change of hash
    // would move every volume of a restarted driver to another loop.
    #expect(EventLoopGroup.shard(of: "/a", count: 8) == 3)
    #expect(EventLoopGroup.shard(of: Self.target(0), count: 1) == 0)
    #expect((0..<8).map { EventLoopGroup.shard(of: Self.target($0), count: 8) } == [3, 3, 7, 3, 5, 5, 7, 1])
    #expect((8..<24).map { EventLoopGroup.shard(of: Self.target($0), count: 2) } == [1, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 1, 0, 1])
    await a.shutdownAndWait()
    await b.shutdownAndWait()
    #expect(a.leakedHandles == [] && b.leakedHandles == [])
  }

  @Test func currentIsTheLoopThatRunsTheCode() async throws {
    let group = EventLoopGroup(count: 3, name: "current")
    #expect(group.currentIndex == nil && group.current == nil)
    for (i, loop) in group.loops.enumerated() {
      let seen = try await loop.submit { group.currentIndex }
      #expect(seen == i)
    }
    #expect(group.loops.map(\.name) == ["current", "current-1", "current-2"])
    await group.shutdownAndWait()
  }

  /// Shutdown ends every loop's thread with every handle closed; a handle left open on
  /// any loop is closed and reported with that loop's name.
  @Test func shutdownClosesEveryLoopAndReportsLeaksByLoop() async throws {
    let group = EventLoopGroup(count: 3, name: "close")
    for loop in group.loops {
      try await loop.submit {
        let timer = UVTimer(on: loop)
        timer.start(timeoutMs: 1) {}
        timer.close()
      }
    }
    try await group.loops[2].submit {
      UVTimer(on: group.loops[2]).start(timeoutMs: 60_000) {}
    }
    await group.shutdownAndWait()
    #expect(group.leakedHandles == ["close-2: timer"])
    for loop in group.loops { #expect(loop.closeResult == 0) }
    // Every loop has ended: work sent now is dropped, not run.
    for loop in group.loops {
      loop.execute {}
      #expect(loop.droppedWork == 1)
    }
  }

  @Test(arguments: [
    ("max 100000", nil), ("max", nil), ("100000 100000", 1), ("150000 100000\n", 2), ("50000 100000", 1),
    ("800000 100000", 8), ("250000 50000", 5), ("", nil), ("0 100000", nil), ("abc 100000", nil),
  ] as [(String, Int?)])
  func cgroupQuotaIsRoundedUp(cpuMax: String, cores: Int?) {
    #expect(CPUBudget.cores(cpuMax: cpuMax) == cores)
  }

  @Test func unifiedCgroupPath() {
    #expect(CPUBudget.unifiedPath(procSelfCgroup: "0::/kubepods/pod1/ctr\n") == "/kubepods/pod1/ctr")
    #expect(CPUBudget.unifiedPath(procSelfCgroup: "12:cpu,cpuacct:/x\n0::/\n") == "/")
    #expect(CPUBudget.unifiedPath(procSelfCgroup: "4:memory:/x\n1:cpu:/\n") == nil)
  }

  /// A quota in the cgroup file system limits the default, as in a container.
  @Test func quotaFromACgroupTree() throws {
    var template = Array("/tmp/cgroup-XXXXXX".utf8CString)
    let root = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    defer { unlink(root + "/cpu.max"); rmdir(root) }
    #expect(CPUBudget.cgroupQuota(root: root) == nil)
    let fd = open(root + "/cpu.max", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    _ = "250000 100000\n".withCString { write(fd, $0, strlen($0)) }
    close(fd)
    // This process's own cgroup may be below the root; the root's quota still bounds it.
    #expect(CPUBudget.cgroupQuota(root: root) == 3)
  }

  @Test func defaultLoopCountIsTheUsableCoresCapped() {
    let usable = CPUBudget.usableCores()
    #expect(usable >= 1 && usable <= CPUBudget.affinityCount())
    #expect(EventLoopGroup.defaultLoopCount() == min(usable, EventLoopGroup.defaultCap))
    #expect(EventLoopGroup.defaultLoopCount(cap: 1) == 1)
  }
}
