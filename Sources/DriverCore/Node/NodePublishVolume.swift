public import CSIMessages
import GRPCCore

extension NodeService {
  /// Validate, then lock, then act: the request is checked here, once, before the
  /// publisher takes the volume's lock.
  public func nodePublishVolume(
    _ request: CSI.NodePublishVolumeRequest, deadline: ContinuousClock.Instant? = nil
  ) async throws -> CSI.NodePublishVolumeResponse {
    return try await self.publisher.publish(try Self.validate(request), deadline: deadline)
  }

  /// The CSI spec's required fields, a target path that is safe to mount on, this
  /// driver's own rule (the volume holds secrets written by the driver, so pods mount
  /// it read-only), and the volume context keys that name the pod and its class.
  static func validate(_ request: CSI.NodePublishVolumeRequest) throws(RPCError) -> ValidPublishRequest {
    try validateVolume(id: request.volumeID, targetPath: request.targetPath, in: "NodePublishVolumeRequest")
    guard request.volumeCapability != nil else {
      throw RPCError.invalidArgument("volume_capability is required in NodePublishVolumeRequest")
    }
    guard request.readonly else {
      throw RPCError.invalidArgument("readonly must be true: secrets store volumes are mounted read-only")
    }
    do {
      return ValidPublishRequest(csi: request, pod: try PodVolume(volumeContext: request.volumeContext))
    } catch {
      throw error.rpcError
    }
  }

  /// What publish and unpublish both require: a volume id and a target path.
  static func validateVolume(id: String, targetPath: String, in message: String) throws(RPCError) {
    guard !id.isEmpty else { throw RPCError.invalidArgument("volume_id is required in \(message)") }
    guard !targetPath.isEmpty else { throw RPCError.invalidArgument("target_path is required in \(message)") }
    try checkTargetPath(targetPath)
  }

  /// Target paths come from kubelet; still, mount and rmdir only absolute, clean paths.
  static func checkTargetPath(_ path: String) throws(RPCError) {
    guard isAbsoluteAndClean(path.utf8) else {
      throw RPCError.invalidArgument("target_path \"\(path)\" must be an absolute, clean path")
    }
  }

  /// An absolute path whose elements are neither empty, "." nor "..", without a trailing
  /// slash or a NUL byte, judged by its bytes as the kernel reads it: one pass, no
  /// substrings (splitting into `Substring`s and comparing grapheme clusters cost ~50 000
  /// instructions per call, a tenth of a publish+unpublish pair).
  static func isAbsoluteAndClean(_ bytes: String.UTF8View) -> Bool {
    let slash = UInt8(ascii: "/"), dot = UInt8(ascii: ".")
    guard bytes.first == slash, bytes.count > 1 else { return false }
    var length = 0  // of the current element
    var onlyDots = true
    for byte in bytes.dropFirst() {
      switch byte {
      case 0: return false
      case slash:
        if length == 0 || (onlyDots && length <= 2) { return false }
        length = 0
        onlyDots = true
      default:
        length += 1
        if byte != dot { onlyDots = false }
      }
    }
    return length > 0 && !(onlyDots && length <= 2)
  }
}

/// A NodePublishVolumeRequest that passed `NodeService.validate`, with what its volume
/// context says about the pod, read once.
public struct ValidPublishRequest: Sendable {
  public let csi: CSI.NodePublishVolumeRequest
  public let pod: PodVolume
}
