import CSIMessages
import DriverCore
import GRPCCore
import Glibc
import Logging
import Testing
import UVRuntime

@Suite struct IdentityServiceTests {
  @Test func getPluginInfoReportsNameAndVersion() async throws {
    try await withDriver { client in
      let info = try await client.call(CSI.Identity.getPluginInfo, .init())
      #expect(info == CSI.GetPluginInfoResponse(name: "secrets-store.csi.k8s.io", vendorVersion: "v9.9.9-test"))
    }
  }

  @Test func getPluginInfoUsesTheConfiguredName() async throws {
    let config = DriverConfig(driverName: "secrets.example.com", version: "1", nodeID: "n")
    try await withDriver(config: config) { client in
      let response = try await client.call(CSI.Identity.getPluginInfo, .init())
      #expect(response.name == "secrets.example.com")
    }
  }

  @Test func advertisesNoPluginCapabilities() async throws {
    try await withDriver { client in
      let response = try await client.call(CSI.Identity.getPluginCapabilities, .init())
      #expect(response.capabilities == [])
    }
  }

  @Test func probeIsReady() async throws {
    try await withDriver { client in
      let response = try await client.call(CSI.Identity.probe, .init())
      #expect(response.ready == true)
    }
  }

  @Test func probeIsNotReadyOnceShutdownBegins() async throws {
    let readiness = Readiness()
    try await withDriver(readiness: readiness) { client throws in
      #expect(try await client.call(CSI.Identity.probe, .init()).ready == true)
      readiness.beginShutdown()
      #expect(try await client.call(CSI.Identity.probe, .init()).ready == false)
      #expect(readiness.notReady == .shuttingDown)
    }
  }

  /// The loop is held by a job (a hook standing in for a blocking call); the
  /// Probe, answered off that loop here, says not ready while it is held and
  /// for the recovery period after.
  @Test func probeIsNotReadyWhileTheLoopIsStalledAndForAWhileAfter() async throws {
    let loop = EventLoop(name: "probe-stall")
    let heartbeat = try await loop.submit {
      LoopHeartbeat(on: loop, interval: .milliseconds(10), stallAfter: .seconds(1))
    }
    let readiness = Readiness(recovery: .seconds(60))
    readiness.watch(heartbeat)
    try await withDriver(readiness: readiness) { client throws in
      #expect(try await client.call(CSI.Identity.probe, .init()).ready == true)
      let release = Locked(false)
      loop.execute {
        while !release.withLock({ $0 }) { usleep(1_000) }
      }
      var readyWhileHeld = true
      for _ in 0..<2_000 where readyWhileHeld {
        readyWhileHeld = try await client.call(CSI.Identity.probe, .init()).ready ?? true
        if readyWhileHeld { try await Task.sleep(for: .milliseconds(5)) }
      }
      release.withLock { $0 = true }
      #expect(!readyWhileHeld, "the loop was held for 10 s and Probe still said ready")
      // Moving again: the late heartbeat records the stall, and Probe stays not ready.
      for _ in 0..<2_000 where heartbeat.reading.lastStall == nil {
        try await Task.sleep(for: .milliseconds(5))
      }
      #expect(heartbeat.reading.lastStall != nil)
      #expect(try await client.call(CSI.Identity.probe, .init()).ready == false)
    }
    try await loop.submit { heartbeat.stop() }
    await loop.shutdownAndWait()
    #expect(loop.leakedHandles == [])
  }

  @Test func driverShutdownMakesProbeNotReady() async throws {
    let driver = Driver(
      config: testConfig, endpoint: .memory(name: "probe-shutdown-\(getpid())"), maxReceiveMessageBytes: 4 << 20,
      logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
    let running = Task { try await driver.run() }
    await driver.waitUntilServing()
    let identity = IdentityService(config: testConfig, readiness: driver.readiness)
    #expect(identity.probe(.init()).ready == true)
    driver.beginGracefulShutdown()
    #expect(identity.probe(.init()).ready == false)
    try await running.value
    #expect(driver.loop.leakedHandles == [])
  }
}
