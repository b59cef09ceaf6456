import CSIMessages
@testable import DriverCore
import GRPCCore
import GRPCH2
import Glibc
import Logging
import Testing
import UVRuntime
import VolumeFiles

/// Volumes spread over a loop group: each target's actor on one loop, always the
/// same; the whole publish path (tmpfs, provider call, writes) correct when two loops
/// run it at once; every loop closed at the end.
@Suite struct LoopShardingTests {
  static func kubeletTarget(_ root: String, pod: Int) -> String {
    "\(root)/pods/pod-\(pod)-uid/volumes/kubernetes.io~csi/secrets/mount"
  }

  @Test func eachTargetRunsOnOneLoopAndTargetsSpreadOverLoops() async throws {
    let loops = EventLoopGroup(count: 2, name: "shard")
    let registry = VolumeRegistry(loops: loops)
    var seen: [String: Int] = [:]
    for round in 0..<3 {
      for pod in 0..<24 {
        let target = Self.kubeletTarget("/nonexistent", pod: pod)
        // Where the actor's code actually runs: the loop whose thread it is on.
        let ran = try await registry.withVolume(target) { (volume: isolated VolumeActor) throws(PublishError) -> Int in
          loops.currentIndex ?? -1
        }
        #expect(ran == loops.index(forKey: target))
        #expect(registry.loop(for: target) === loops.loops[ran])
        if round == 0 {
          seen[target] = ran
        } else {
          #expect(seen[target] == ran, "target \(target) moved from loop \(seen[target] ?? -1) to \(ran)")
        }
      }
    }
    #expect(Set(seen.values) == [0, 1], "24 targets all on one loop: \(seen)")
    await loops.shutdownAndWait()
    #expect(loops.leakedHandles == [])
  }

  @Test(.enabled(if: geteuid() == 0, "mounts tmpfs: needs root"))
  func publishUnpublishStormOverTwoLoops() async throws {
    var template = Array("/tmp/loop-storm-XXXXXX".utf8CString)
    let root = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    let providerDir = root + "/providers"
    mkdir(providerDir, 0o755)
    defer {
      unlink(providerDir + "/echo.sock")
      rmdir(providerDir)
      Self.removeTree(root)
    }

    let providerLoop = EventLoop(name: "echo-provider")
    let provider = GRPCServer(
      transport: H2ServerTransport(config: .init(endpoint: .unix(path: providerDir + "/echo.sock"), maxReceiveMessageBytes: 4 << 20), loop: providerLoop),
      services: [EchoProvider()])
    let serving = Task(executorPreference: providerLoop) { try await provider.serve() }

    let loops = EventLoopGroup(count: 2, name: "storm")
    let registry = VolumeRegistry(loops: loops)
    let providers = ProviderConnections(loops: loops, settings: ProviderSettings(searchDirectories: [providerDir]))
    let env = VolumeEnvironment(
      classes: OneClass(), providers: providers, settings: VolumeSettings(tmpfsSizeBytes: 1 << 20, kubeletRootDir: root),
      logger: Logger(label: "storm") { _ in SwiftLogNoOpLogHandler() })
    let publisher = MountingPublisher(registry: registry, env: env)
    try await Self.waitForSocket(providerDir + "/echo.sock")

    let pods = 24
    let targets = (0..<pods).map { Self.kubeletTarget(root, pod: $0) }
    #expect(Set(targets.map { loops.index(forKey: $0) }) == [0, 1])
    for round in 0..<4 {
      // Every pod at once, then every volume read back, then every pod gone at once.
      try await withThrowingTaskGroup(of: Void.self) { group in
        for (pod, target) in targets.enumerated() {
          group.addTask {
            var request = validPublish
            request.targetPath = target
            request.volumeContext["csi.storage.k8s.io/pod.uid"] = "pod-\(pod)-uid"
            _ = try await publisher.publish(try NodeService.validate(request, kubeletRootDir: root), deadline: nil)
          }
        }
        try await group.waitForAll()
      }
      for target in targets {
        #expect(try Mounts.isMountPoint(target), "round \(round): \(target) is not mounted")
        #expect(Self.read(target + "/secret.txt") == "for \(target)", "round \(round): wrong content at \(target)")
      }
      try await withThrowingTaskGroup(of: Void.self) { group in
        for target in targets {
          group.addTask {
            _ = try await publisher.unpublish(CSI.NodeUnpublishVolumeRequest(volumeID: "v", targetPath: target), deadline: nil)
          }
        }
        try await group.waitForAll()
      }
      for target in targets {
        #expect(try !Mounts.isMountPoint(target), "round \(round): \(target) still mounted")
        #expect(access(target, F_OK) != 0, "round \(round): \(target) left behind")
      }
    }
    #expect(registry.inFlight == 0)
    // Each loop called the provider on its own connection.
    #expect(providers.connectionCounts == [1, 1])

    await providers.closeAll()
    await loops.shutdownAndWait()
    #expect(loops.leakedHandles == [])
    for loop in loops.loops { #expect(loop.closeResult == 0) }
    provider.beginGracefulShutdown()
    try await serving.value
    await providerLoop.shutdownAndWait()
    #expect(providerLoop.leakedHandles == [])
  }

  static func waitForSocket(_ path: String) async throws {
    for _ in 0..<500 where access(path, F_OK) != 0 {
      try await Task.sleep(for: .milliseconds(10))
    }
  }

  static func read(_ path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 4096)
    let n = Glibc.read(fd, &buffer, buffer.count)
    return n >= 0 ? String(decoding: buffer[..<n], as: UTF8.self) : nil
  }

  /// What the test made under `root` (pod directories; nothing is mounted by then).
  static func removeTree(_ root: String) {
    guard let dir = opendir(root) else { return }
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
      if name == "." || name == ".." { continue }
      let path = root + "/" + name
      if entry.pointee.d_type == UInt8(DT_DIR) { removeTree(path) } else { unlink(path) }
    }
    closedir(dir)
    rmdir(root)
  }
}

/// Every pod's class: provider "echo".
private struct OneClass: SecretProviderClassSource {
  func secretProviderClass(name: String, namespace: String) async throws -> SecretProviderClass? {
    SecretProviderClass(name: name, namespace: namespace, provider: "echo")
  }
}

/// A provider that answers each Mount with one file naming the target it was asked for,
/// so a volume holding another volume's answer shows.
private struct EchoProvider: RegistrableRPCService {
  func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    router.registerUnary(Provider.CSIDriverProvider.version) { _, _ in
      Provider.VersionResponse(version: "v1alpha1", runtimeName: "echo", runtimeVersion: "1")
    }
    router.registerUnary(Provider.CSIDriverProvider.mount) { request, _ in
      Provider.MountResponse(
        objectVersion: [.init(id: "secret.txt", version: "1")],
        files: [.init(path: "secret.txt", mode: 0o644, contents: Array("for \(request.targetPath)".utf8))])
    }
  }
}
