public import CSIMessages
import GRPCCore
import VolumeFiles

extension NodeService {
  /// Validate, then lock, then act: the request is checked here, once, before the
  /// publisher takes the volume's lock.
  public func nodePublishVolume(
    _ request: CSI.NodePublishVolumeRequest, deadline: ContinuousClock.Instant? = nil
  ) async throws -> CSI.NodePublishVolumeResponse {
    return try await self.publisher.publish(try Self.validate(request, kubeletRootDir: config.kubeletRootDir), deadline: deadline)
  }

  /// The CSI spec's required fields, a target path that is safe to mount on, this
  /// driver's own rule (the volume holds secrets written by the driver, so pods mount
  /// it read-only), and the volume context keys that name the pod and its class.
  static func validate(
    _ request: CSI.NodePublishVolumeRequest, kubeletRootDir: String = DriverConfig.defaultKubeletRootDir
  ) throws(RPCError) -> ValidPublishRequest {
    try validateVolume(id: request.volumeID, targetPath: request.targetPath, in: "NodePublishVolumeRequest", kubeletRootDir: kubeletRootDir)
    guard let capability = request.volumeCapability else {
      throw RPCError.invalidArgument("volume_capability is required in NodePublishVolumeRequest")
    }
    let group = try mountGroup(capability)
    guard request.readonly else {
      throw RPCError.invalidArgument("readonly must be true: secrets store volumes are mounted read-only")
    }
    do {
      return ValidPublishRequest(csi: request, pod: try PodVolume(volumeContext: request.volumeContext), mountGroup: group)
    } catch {
      throw error.rpcError
    }
  }

  /// What publish and unpublish both require: a volume id and a target path under the
  /// kubelet root's `pods` directory.
  static func validateVolume(id: String, targetPath: String, in message: String, kubeletRootDir: String) throws(RPCError) {
    guard !id.isEmpty else { throw RPCError.invalidArgument("volume_id is required in \(message)") }
    guard !targetPath.isEmpty else { throw RPCError.invalidArgument("target_path is required in \(message)") }
    try checkTargetPath(targetPath, kubeletRootDir: kubeletRootDir)
  }

  /// Target paths come from kubelet; still, mount and rmdir only absolute, clean paths
  /// strictly beneath `<kubelet root>/pods`, where kubelet keeps pod volumes. (Symlinks on
  /// the way are refused later, when the volume walks the path with openat2.)
  static func checkTargetPath(_ path: String, kubeletRootDir: String = DriverConfig.defaultKubeletRootDir) throws(RPCError) {
    guard VolumeTarget.isClean(path), path.utf8.count > 1 else {
      throw RPCError.invalidArgument("target_path \(quotedPath(path)) must be an absolute, clean path (no \".\", \"..\", \"//\", trailing \"/\" or NUL)")
    }
    // What the kernel would refuse with ENAMETOOLONG: refuse it as the caller's mistake.
    if path.utf8.count >= PathRules.maxPathBytes || longestElement(path) > PathRules.maxElementBytes
    {
      throw RPCError.invalidArgument(
        "target_path \(quotedPath(path)) is too long (at most \(PathRules.maxPathBytes - 1) bytes, \(PathRules.maxElementBytes) per element)")
    }
    let pods = DriverConfig.podsDirectory(kubeletRootDir: kubeletRootDir)
    guard VolumeTarget(path: path, under: pods) != nil else {
      throw RPCError.invalidArgument(
        "target_path \(quotedPath(path)) is not under \(pods), where kubelet keeps pod volumes (set --kubelet-root-dir to kubelet's --root-dir)")
    }
  }

  /// A path quoted for a message, cut when very long.
  private static func quotedPath(_ path: String) -> String {
    path.utf8.count <= 300 ? path.debugDescription : String(decoding: path.utf8.prefix(300), as: UTF8.self).debugDescription + "…"
  }

  /// The largest group id accepted as volume_mount_group: Kubernetes' limit for fsGroup.
  static let maxMountGroup: UInt32 = 2_147_483_647

  /// `volume_capability.mount.volume_mount_group` (kubelet's fsGroup for this pod, sent
  /// because the CSIDriver says `fsGroupPolicy: File` and the driver advertises
  /// VOLUME_MOUNT_GROUP) as a group id; nil when not set. Decimal digits only, at most
  /// 2147483647.
  static func mountGroup(_ capability: CSI.VolumeCapability) throws(RPCError) -> UInt32? {
    guard case .mount(let mount) = capability.accessType, !mount.volumeMountGroup.isEmpty else { return nil }
    let text = mount.volumeMountGroup
    guard text.utf8.count <= 10, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let value = UInt64(text),
      value <= UInt64(maxMountGroup)
    else {
      throw RPCError.invalidArgument(
        "volume_capability.mount.volume_mount_group \(quotedPath(text)) must be a numeric group id from 0 to \(maxMountGroup)")
    }
    return UInt32(value)
  }

  /// The length in bytes of the longest element of a path, in one pass (no substrings).
  static func longestElement(_ path: String) -> Int {
    var path = path
    return path.withUTF8 { bytes in
      var longest = 0
      var current = 0
      for byte in bytes {
        if byte == UInt8(ascii: "/") {
          current = 0
        } else {
          current += 1
          longest = max(longest, current)
        }
      }
      return longest
    }
  }

}

/// A NodePublishVolumeRequest that passed `NodeService.validate`, with what its volume
/// context says about the pod, read once.
public struct ValidPublishRequest: Sendable {
  public let csi: CSI.NodePublishVolumeRequest
  public let pod: PodVolume
  /// The pod's fsGroup (volume_mount_group): files are group-owned by it and group-readable.
  public let mountGroup: UInt32?

  public init(csi: CSI.NodePublishVolumeRequest, pod: PodVolume, mountGroup: UInt32? = nil) {
    self.csi = csi
    self.pod = pod
    self.mountGroup = mountGroup
  }
}
