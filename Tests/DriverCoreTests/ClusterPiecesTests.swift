@testable import DriverCore
import KubeClient
import Testing

@Suite struct PodStatusNamingTests {
  @Test func upstreamNameUnlessTooLongOrTaken() {
    #expect(PodStatusNaming.name(pod: "web-1", namespace: "shop", spc: "db", targetPath: "/t/a", plainTakenByOtherTarget: false) == "web-1-shop-db")
    let taken = PodStatusNaming.name(pod: "web-1", namespace: "shop", spc: "db", targetPath: "/t/b", plainTakenByOtherTarget: true)
    #expect(taken.hasPrefix("web-1-shop-db-") && taken.count == "web-1-shop-db-".count + 16)
    #expect(taken != PodStatusNaming.name(pod: "web-1", namespace: "shop", spc: "db", targetPath: "/t/c", plainTakenByOtherTarget: true))
    let long = PodStatusNaming.name(
      pod: String(repeating: "p", count: 200), namespace: "ns", spc: String(repeating: "c", count: 100), targetPath: "/t",
      plainTakenByOtherTarget: false)
    #expect(long.utf8.count == PodStatusNaming.maxNameLength)
    // Deterministic: a restarted driver finds the same name.
    #expect(long == PodStatusNaming.hashedName(pod: String(repeating: "p", count: 200), namespace: "ns", spc: String(repeating: "c", count: 100), targetPath: "/t"))
  }

  @Test func labelValuesAreValidOrHashed() {
    #expect(PodStatusNaming.labelValue("node-1.example") == "node-1.example")
    #expect(PodStatusNaming.labelValue(String(repeating: "a", count: 64)).hasPrefix("h-"))
    #expect(PodStatusNaming.labelValue("-bad").hasPrefix("h-"))
  }
}

@Suite struct SyncedSecretTests {
  let cert1 = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
  let cert2 = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n"
  let key = "-----BEGIN RSA PRIVATE KEY-----\nKKKK\n-----END RSA PRIVATE KEY-----\n"

  @Test func tlsSplitsOnePEMIntoCertificateAndKey() throws {
    let spec = SecretProviderClass.SecretObject(
      secretName: "tls", type: SyncedSecret.tlsType, labels: ["app": "web"],
      data: [(objectName: "bundle", key: "tls.crt"), (objectName: "bundle", key: "tls.key")])
    let secrets = try SyncedSecret.build([spec], namespace: "ns", files: ["bundle": Array((key + cert1 + cert2).utf8)])
    #expect(secrets.count == 1)
    #expect(secrets[0].data["tls.crt"] == Array((cert1 + cert2).utf8))
    #expect(secrets[0].data["tls.key"] == Array(key.utf8))
    #expect(secrets[0].labels == ["app": "web", SyncedSecret.managedLabel: "true"])
  }

  @Test func opaqueCopiesBytesAndMissingObjectsFail() throws {
    let spec = SecretProviderClass.SecretObject(secretName: "s", data: [(objectName: "a", key: "password")])
    let secrets = try SyncedSecret.build([spec], namespace: "ns", files: ["a": [0, 1, 2]])
    #expect(secrets[0].type == "Opaque" && secrets[0].data == ["password": [0, 1, 2]])
    let error = try #require(throws: SyncError.self) { try SyncedSecret.build([spec], namespace: "ns", files: [:]) }
    #expect(error.message.contains("\"a\""))
    let tls = SecretProviderClass.SecretObject(secretName: "t", type: SyncedSecret.tlsType, data: [(objectName: "a", key: "tls.key")])
    #expect(throws: SyncError.self) { try SyncedSecret.build([tls], namespace: "ns", files: ["a": Array(cert1.utf8)]) }
  }
}
