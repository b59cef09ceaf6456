import Benchmark
import CSIMessages
import MicroSupport

// Protobuf encode/decode through CSIMessages (protoc-c underneath, Swift values on top).
// One operation per scaled iteration; `.kilo` samples, so malloc counts are per 1000 operations.
let benchmarks: @Sendable () -> Void = {
  let request = Fixtures.nodePublish()
  let requestBytes = request.serializedBytes()
  let responseBytes = Fixtures.mountResponse().serializedBytes()

  Benchmark("NodePublishVolumeRequest.encode", configuration: Micro.configuration(scaling: .kilo)) { benchmark in
    benchmark.measuringCPU {
      for _ in benchmark.scaledIterations {
        blackHole(request.serializedBytes())
      }
    }
  }

  Benchmark("NodePublishVolumeRequest.decode", configuration: Micro.configuration(scaling: .kilo)) { benchmark in
    try benchmark.measuringCPU {
      for _ in benchmark.scaledIterations {
        blackHole(try CSI.NodePublishVolumeRequest(serializedBytes: requestBytes))
      }
    }
  }

  Benchmark("MountResponse.decode", configuration: Micro.configuration(scaling: .kilo)) { benchmark in
    try benchmark.measuringCPU {
      for _ in benchmark.scaledIterations {
        blackHole(try Provider.MountResponse(serializedBytes: responseBytes))
      }
    }
  }
}

/// Messages shaped like the ones a real node sees.
enum Fixtures {
  /// What kubelet sends for an inline secrets-store volume with pod info on mount and a
  /// service-account token requested: 7 volume_context keys, one a ~1 KB token JSON.
  static func nodePublish() -> CSI.NodePublishVolumeRequest {
    let podUID = "5f0c8a52-3b1e-4d8f-9a47-2c6e1b9d0f31"
    return CSI.NodePublishVolumeRequest(
      volumeID: "csi-9d2f7c4b1a8e6f3d5c0b7a9e2d4f6c8b1a3e5d7f9c0b2a4e6d8f1c3b5a7e9d0f",
      targetPath: "/var/lib/kubelet/pods/\(podUID)/volumes/kubernetes.io~csi/secrets-store-inline/mount",
      volumeCapability: CSI.VolumeCapability(
        accessType: .mount(.init()),
        accessMode: .init(mode: .singleNodeWriter)
      ),
      readonly: true,
      volumeContext: [
        "csi.storage.k8s.io/ephemeral": "true",
        "csi.storage.k8s.io/pod.name": "payments-api-7d9f8c6b5-x2k4q",
        "csi.storage.k8s.io/pod.namespace": "payments",
        "csi.storage.k8s.io/pod.uid": podUID,
        "csi.storage.k8s.io/serviceAccount.name": "payments-api",
        "csi.storage.k8s.io/serviceAccount.tokens": serviceAccountTokens(),
        "secretProviderClass": "payments-api-secrets",
      ]
    )
  }

  /// `{"<audience>":{"token":"<JWT>","expirationTimestamp":"..."}}`, about 1 KB.
  static func serviceAccountTokens() -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    func segment(_ count: Int, seed: Int) -> String {
      String(decoding: (0..<count).map { alphabet[($0 &* 31 &+ seed) % alphabet.count] }, as: UTF8.self)
    }
    let jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.\(segment(560, seed: 7)).\(segment(342, seed: 13))"
    return #"{"vault":{"token":"\#(jwt)","expirationTimestamp":"2026-11-27T04:40:00Z"}}"#
  }

  /// A provider's answer: 3 files of 256 bytes and their versions.
  static func mountResponse() -> Provider.MountResponse {
    let names = ["db-password", "api-key", "tls.crt"]
    return Provider.MountResponse(
      objectVersion: names.map { Provider.ObjectVersion(id: $0, version: "v3") },
      files: names.enumerated().map { index, name in
        Provider.File(path: name, contents: (0..<256).map { UInt8(truncatingIfNeeded: $0 &+ index) })
      }
    )
  }
}
