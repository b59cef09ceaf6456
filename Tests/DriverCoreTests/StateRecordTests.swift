import CSIMessages
@testable import DriverCore
import FoundationEssentials
import Testing
import VolumeFiles

/// The state record's hand-built JSON is what Foundation's JSONEncoder (sorted keys)
/// writes, byte for byte, and reads back equal.
@Suite struct StateRecordTests {
  static func record(
    target: String = "/var/lib/kubelet/pods/7a1c/volumes/kubernetes.io~csi/secrets/mount", context: [String: String],
    secrets: [String: String] = [:], files: [SecretFile], versions: [Provider.ObjectVersion], lastFetch: Double,
    interval: Duration?, mountGroup: UInt32? = nil
  ) throws -> VolumeStateRecord {
    let csi = CSI.NodePublishVolumeRequest(
      volumeID: "csi-0f3e", targetPath: target,
      volumeCapability: CSI.VolumeCapability(accessType: .mount(.init()), accessMode: .init(mode: .singleNodeWriter)),
      readonly: true, secrets: secrets, volumeContext: context)
    let valid = ValidPublishRequest(csi: csi, pod: try PodVolume(volumeContext: context), mountGroup: mountGroup)
    return VolumeStateRecord(
      request: valid, provider: "reference", versions: versions, files: files, defaultMode: 0o644, lastFetch: lastFetch,
      rotationInterval: interval)
  }

  static let fullContext = [
    PodVolume.classKey: "db-creds", PodVolume.podNameKey: "web-0", PodVolume.podNamespaceKey: "team-a",
    PodVolume.podUIDKey: "7a1c-22", PodVolume.serviceAccountKey: "web", PodVolume.ephemeralKey: "true",
  ]

  static func records() throws -> [VolumeStateRecord] {
    [
      try record(
        context: fullContext, files: [SecretFile(path: "b/password", mode: 0, contents: []), SecretFile(path: "a", mode: 0o400, contents: [])],
        versions: [Provider.ObjectVersion(id: "secret/a", version: "v1")], lastFetch: 1_764_769_357.123456, interval: .seconds(90),
        mountGroup: 2_147_483_647),
      try record(
        context: [PodVolume.classKey: "c", PodVolume.podNamespaceKey: "n", "extra": "x"], secrets: ["k": "v"], files: [],
        versions: [], lastFetch: 1_764_769_357, interval: nil),
      try record(
        target: "/tmp/é\"q\\u\t\u{1}\u{1f}\u{7f}\u{2028}<>&/x", context: fullContext,
        files: [SecretFile(path: "dir/é \"x\"", mode: 0o7777, contents: [1])],
        versions: [
          Provider.ObjectVersion(id: "a/b\n", version: "\u{8}\u{c}\r"), Provider.ObjectVersion(id: "", version: ""),
        ],
        lastFetch: 0.1 + 0.2, interval: .milliseconds(1500)),
      try record(context: fullContext, files: [], versions: [], lastFetch: 1e20, interval: .seconds(3_000_000_000_000)),
    ]
  }

  @Test func handBuiltJSONIsWhatJSONEncoderWrites() throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    for record in try Self.records() {
      let expected = String(decoding: try encoder.encode(record), as: UTF8.self)
      #expect(String(decoding: try record.json(), as: UTF8.self) == expected)
    }
  }

  @Test func handBuiltJSONDecodesToTheSameRecord() throws {
    for record in try Self.records() {
      #expect(try JSONDecoder().decode(VolumeStateRecord.self, from: Data(try record.json())) == record)
    }
  }

  @Test func recordFileIsNamedByTheTargetsSHA256() {
    #expect(VolumeStateStore.fileName(target: "/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/s/mount") == "63a14e6fde05fd7ee07dc3ba16777c97.json")
  }
}
