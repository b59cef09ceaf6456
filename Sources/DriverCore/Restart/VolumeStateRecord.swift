import CSIMessages
import FoundationEssentials
import VolumeFiles

/// What the driver keeps on the node about one volume it serves, so that a restarted
/// driver finds the volume and keeps serving it (`--state-dir`, one file per volume).
///
/// Never a secret value, a token or a nodePublishSecretRef value: only names, versions,
/// file paths and modes, times. The volume context is kept for the keys that name the
/// pod and its class (`PodVolume.safeContextKeys`); when kubelet's request held anything
/// else (tokens, other attributes, secrets), `timerRefresh` is false and the restarted
/// driver waits for kubelet's next republish, which brings them, before it refreshes.
struct VolumeStateRecord: Codable, Sendable, Hashable {
  struct Object: Codable, Sendable, Hashable {
    var id: String
    var version: String
  }

  struct File: Codable, Sendable, Hashable {
    var path: String
    var mode: UInt32
  }

  static let currentFormat = 1

  var format = VolumeStateRecord.currentFormat
  var targetPath: String
  var volumeID: String
  var podNamespace: String
  var podName: String
  var podUID: String
  var serviceAccount: String
  var secretProviderClass: String
  var provider: String
  /// The safe keys of kubelet's volume context (names of the pod and its class).
  var volumeContext: [String: String]
  /// Whether a timer refresh may rebuild kubelet's request from this record alone.
  var timerRefresh: Bool
  var objects: [Object]
  var files: [File]
  /// Last successful fetch from the provider, seconds since the epoch.
  var lastFetch: Double
  /// The class's own rotation interval in seconds, when it sets one.
  var rotationInterval: Double?
  /// The pod's fsGroup (volume_mount_group) when kubelet sent one: a rebuilt request
  /// keeps the files group-owned. Absent in records of earlier versions.
  var mountGroup: UInt32?

  init(
    request: ValidPublishRequest, provider: String, versions: [Provider.ObjectVersion], files: [SecretFile],
    defaultMode: UInt32, lastFetch: Double, rotationInterval: Duration?
  ) {
    let csi = request.csi
    targetPath = csi.targetPath
    volumeID = csi.volumeID
    podNamespace = request.pod.podNamespace
    podName = request.pod.podName
    podUID = request.pod.podUID
    serviceAccount = request.pod.serviceAccount
    secretProviderClass = request.pod.secretProviderClass
    self.provider = provider
    volumeContext = csi.volumeContext.filter { PodVolume.safeContextKeys.contains($0.key) }
    timerRefresh = csi.secrets.isEmpty && volumeContext.count == csi.volumeContext.count
    objects = versions.map { Object(id: $0.id, version: $0.version) }
    self.files = files.map { File(path: $0.path, mode: $0.mode == 0 ? defaultMode : $0.mode) }.sorted { $0.path < $1.path }
    self.lastFetch = lastFetch
    self.rotationInterval = rotationInterval.map { Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18 }
    mountGroup = request.mountGroup
  }

  var versions: [Provider.ObjectVersion] { objects.map { Provider.ObjectVersion(id: $0.id, version: $0.version) } }

  var interval: Duration? { rotationInterval.map { .milliseconds(Int64(($0 * 1000).rounded())) } }

  /// kubelet's request as far as the record can rebuild it (for timer refreshes of a
  /// volume whose request held nothing else), or nil.
  var request: ValidPublishRequest? {
    guard timerRefresh else { return nil }
    let csi = CSI.NodePublishVolumeRequest(
      volumeID: volumeID, targetPath: targetPath,
      volumeCapability: CSI.VolumeCapability(
        accessType: .mount(.init(volumeMountGroup: mountGroup.map { String($0) } ?? "")), accessMode: .init(mode: .singleNodeWriter)),
      readonly: true, volumeContext: volumeContext)
    guard let pod = try? PodVolume(volumeContext: volumeContext) else { return nil }
    return ValidPublishRequest(csi: csi, pod: pod, mountGroup: mountGroup)
  }
}

extension VolumeStateRecord {
  /// The record as `JSONEncoder` with `.sortedKeys` writes it, byte for byte (keys in
  /// byte order, `/` escaped, whole doubles without `.0`), built directly: the encoder
  /// cost ~230 000 instructions per publish, a fifth of a publish+unpublish pair
  /// (docs/performance.md). `JSONDecoder` reads it back; a unit test holds the two equal.
  func json() throws -> [UInt8] {
    guard lastFetch.isFinite, rotationInterval?.isFinite ?? true else {
      // JSONEncoder refuses these; let it say so.
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      return Array(try encoder.encode(self))
    }
    var out: [UInt8] = []
    out.reserveCapacity(512 + targetPath.utf8.count * 2 + files.count * 64)
    func key(_ name: StaticString, first: Bool = false) {
      if !first { out.append(UInt8(ascii: ",")) }
      out.append(UInt8(ascii: "\""))
      out.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
      out.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
    }
    func string(_ s: String) { Self.appendJSONString(s, to: &out) }
    func number(_ d: Double) {
      var text = d.description
      if text.hasSuffix(".0") { text.removeLast(2) }
      out.append(contentsOf: text.utf8)
    }
    out.append(UInt8(ascii: "{"))
    // Keys in byte order, as `.sortedKeys` puts them (the context's keys are ASCII names,
    // PodVolume.safeContextKeys, for which String's order is byte order).
    key("files", first: true)
    out.append(UInt8(ascii: "["))
    for (i, file) in files.enumerated() {
      if i > 0 { out.append(UInt8(ascii: ",")) }
      out.append(UInt8(ascii: "{"))
      key("mode", first: true)
      out.append(contentsOf: String(file.mode).utf8)
      key("path")
      string(file.path)
      out.append(UInt8(ascii: "}"))
    }
    out.append(UInt8(ascii: "]"))
    key("format")
    out.append(contentsOf: String(format).utf8)
    key("lastFetch")
    number(lastFetch)
    if let mountGroup {
      key("mountGroup")
      out.append(contentsOf: String(mountGroup).utf8)
    }
    key("objects")
    out.append(UInt8(ascii: "["))
    for (i, object) in objects.enumerated() {
      if i > 0 { out.append(UInt8(ascii: ",")) }
      out.append(UInt8(ascii: "{"))
      key("id", first: true)
      string(object.id)
      key("version")
      string(object.version)
      out.append(UInt8(ascii: "}"))
    }
    out.append(UInt8(ascii: "]"))
    key("podName")
    string(podName)
    key("podNamespace")
    string(podNamespace)
    key("podUID")
    string(podUID)
    key("provider")
    string(provider)
    if let rotationInterval {
      key("rotationInterval")
      number(rotationInterval)
    }
    key("secretProviderClass")
    string(secretProviderClass)
    key("serviceAccount")
    string(serviceAccount)
    key("targetPath")
    string(targetPath)
    key("timerRefresh")
    out.append(contentsOf: (timerRefresh ? "true" : "false").utf8)
    key("volumeContext")
    out.append(UInt8(ascii: "{"))
    for (i, k) in volumeContext.keys.sorted().enumerated() {
      if i > 0 { out.append(UInt8(ascii: ",")) }
      string(k)
      out.append(UInt8(ascii: ":"))
      string(volumeContext[k]!)
    }
    out.append(UInt8(ascii: "}"))
    key("volumeID")
    string(volumeID)
    out.append(UInt8(ascii: "}"))
    return out
  }

  /// A JSON string as Foundation's JSONEncoder writes one: `"`, `\` and `/` escaped,
  /// \b \f \n \r \t, other control characters as lower-case `\u00xx`, the rest as is.
  static func appendJSONString(_ s: String, to out: inout [UInt8]) {
    out.append(UInt8(ascii: "\""))
    var s = s
    s.withUTF8 { bytes in
      // Runs that need no escaping are copied in one go.
      var runStart = 0
      for i in 0..<bytes.count {
        let byte = bytes[i]
        guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte == UInt8(ascii: "/") else { continue }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<i]))
        runStart = i + 1
        switch byte {
        case 0x08: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
        case 0x0C: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
        case UInt8(ascii: "\n"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
        case UInt8(ascii: "\r"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
        case UInt8(ascii: "\t"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
        case 0..<0x20:
          let hex = Array("0123456789abcdef".utf8)
          out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 15)]])
        default:  // " \ /
          out.append(UInt8(ascii: "\\"))
          out.append(byte)
        }
      }
      out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<bytes.count]))
    }
    out.append(UInt8(ascii: "\""))
  }
}
