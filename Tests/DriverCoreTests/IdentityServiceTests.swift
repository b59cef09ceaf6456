import CSIMessages
import DriverCore
import GRPCCore
import Testing

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
}
