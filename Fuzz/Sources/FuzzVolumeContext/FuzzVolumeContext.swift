// NodePublishVolume's maps as kubelet fills them: volume_context (pod info, the class, the
// service-account tokens JSON, any attribute a pod author adds) and secrets. Input: lines;
// a line starting with "s" is a secrets entry, "p" the target path, anything else a
// volume_context entry; an entry is "key=value" after that first byte, and a key "#N"
// stands for the N-th well-known key. Checks: validation, the provider's MountRequest
// (its attributes and secrets JSON must decode back to exactly the maps the driver meant),
// the log rendering (no secret value the request carries), and the scrubber (every secret,
// token included, is redacted).
import CSIMessages
@testable import DriverCore
import FoundationEssentials

let wellKnownKeys = [
  PodVolume.classKey, PodVolume.podNameKey, PodVolume.podNamespaceKey, PodVolume.podUIDKey,
  PodVolume.serviceAccountKey, PodVolume.tokensKey, PodVolume.ephemeralKey,
]

struct Input {
  var context: [String: String] = [:]
  var secrets: [String: String] = [:]
  var targetPath = "/var/lib/kubelet/pods/0d2b8f6e/volumes/kubernetes.io~csi/secrets/mount"

  init(_ bytes: UnsafeRawBufferPointer) {
    for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
      let kind = line.first!
      let rest = line.dropFirst()
      if kind == UInt8(ascii: "p") {
        targetPath = String(decoding: rest, as: UTF8.self)
        continue
      }
      let equals = rest.firstIndex(of: UInt8(ascii: "=")) ?? rest.endIndex
      var key = String(decoding: rest[..<equals], as: UTF8.self)
      let value = equals == rest.endIndex ? "" : String(decoding: rest[(equals + 1)...], as: UTF8.self)
      if key.hasPrefix("#"), let n = Int(key.dropFirst()), wellKnownKeys.indices.contains(n) { key = wellKnownKeys[n] }
      if kind == UInt8(ascii: "s") { secrets[key] = value } else { context[key] = value }
    }
  }
}

struct KubeletToken: Decodable { var token: String }

/// The secrets the request carries. The tokens JSON is not itself a secret when the scrubber
/// can read it (its audiences are names), but every token in it is, as a JSON decoder such
/// as the provider's (Go's encoding/json) reads them.
func secretValues(of request: CSI.NodePublishVolumeRequest) -> [String] {
  var values: [String] = []
  func add(key: String, value: String) {
    if key == PodVolume.tokensKey {
      if let tokens = try? JSONDecoder().decode([String: KubeletToken].self, from: Data(value.utf8)) {
        values += tokens.values.map(\.token)
      }
      if SecretScrubber.tokens(inTokensJSON: value) != nil { return }
    }
    values.append(value)
  }
  for (key, value) in request.secrets { add(key: key, value: value) }
  for (key, value) in request.volumeContext where !PodVolume.safeContextKeys.contains(key) { add(key: key, value: value) }
  return values
}

/// Worth checking: long enough to be a secret, and not text that markers and the spaces
/// between them could spell ("[redacted] [redacted]"), nor with control characters (the
/// scrubber turns those into spaces).
func checkable(_ secret: String) -> Bool {
  let n = secret.utf8.count
  return n >= SecretScrubber.minimumSecretBytes && n <= 256 && !SecretScrubber.marker.contains(secret)
    && !secret.unicodeScalars.contains(where: {
      $0 == " " || $0 == "[" || $0 == "]" || $0.value < 0x20 || $0.value == 0x7F || ($0.value >= 0x80 && $0.value < 0xA0)
    })
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  let input = Input(UnsafeRawBufferPointer(start: data, count: size))
  let request = CSI.NodePublishVolumeRequest(
    volumeID: "csi-fuzz", targetPath: input.targetPath,
    volumeCapability: CSI.VolumeCapability(accessType: .mount(.init()), accessMode: .init(mode: .singleNodeReaderOnly)),
    readonly: true, secrets: input.secrets, volumeContext: input.context)

  // Validation and what it reads.
  guard let valid = try? NodeService.validate(request) else { return 0 }
  guard valid.pod.secretProviderClass == input.context[PodVolume.classKey],
    valid.pod.podNamespace == input.context[PodVolume.podNamespaceKey]
  else { fatalError("PodVolume does not hold the volume context's class and namespace") }

  // The provider's request: the context overlays the class parameters; tokens move to attributes.
  let spc = SecretProviderClass(
    name: valid.pod.secretProviderClass, namespace: valid.pod.podNamespace, provider: "fuzz",
    parameters: ["objects": "- name: a", PodVolume.podNameKey: "from-class"])
  let mount = MountRequestBuilder.build(spc: spc, publish: request, currentVersions: [])
  var expectedAttributes = spc.parameters.merging(request.volumeContext) { _, context in context }
  var expectedSecrets = request.secrets
  if let tokens = expectedSecrets.removeValue(forKey: PodVolume.tokensKey), expectedAttributes[PodVolume.tokensKey] == nil {
    expectedAttributes[PodVolume.tokensKey] = tokens
  }
  guard let attributes = try? JSONDecoder().decode([String: String].self, from: Data(mount.attributes.utf8)),
    attributes == expectedAttributes
  else { fatalError("MountRequest.attributes is not the JSON of the intended map: \(mount.attributes.debugDescription)") }
  if expectedSecrets.isEmpty {
    guard mount.secrets == "null" else { fatalError("MountRequest.secrets for no secrets is \(mount.secrets.debugDescription)") }
  } else {
    guard let secrets = try? JSONDecoder().decode([String: String].self, from: Data(mount.secrets.utf8)),
      secrets == expectedSecrets
    else { fatalError("MountRequest.secrets is not the JSON of the intended map") }
  }

  // The log line: compared with the same request whose secret values are all "x", a secret
  // may show up only where the public fields put the same text.
  var blank = request
  blank.secrets = request.secrets.mapValues { _ in "x" }
  for key in request.volumeContext.keys where !PodVolume.safeContextKeys.contains(key) { blank.volumeContext[key] = "x" }
  let logged = Sanitizer.render(request)
  let publicText = Sanitizer.render(blank)
  let secrets = secretValues(of: request).filter(checkable)
  for secret in secrets where logged.contains(secret) && !publicText.contains(secret) {
    fatalError("the log line shows a secret value: \(logged.debugDescription)")
  }
  // All at once (the scrubber's work is per call), one per line: lines become spaces.
  let scrubbed = SecretScrubber(publishing: request).scrub(secrets.joined(separator: "\n"), limitBytes: 1 << 20)
  for secret in secrets where scrubbed.contains(secret) {
    fatalError("the scrubber leaves a secret of \(secret.utf8.count) bytes in place")
  }
  return 0
}
