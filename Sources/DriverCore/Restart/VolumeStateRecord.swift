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
