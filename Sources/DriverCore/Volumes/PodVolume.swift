import CSIMessages
import TextFormats

/// What a NodePublishVolumeRequest says about the pod and its class, read
/// from the volume context kubelet fills in (`podInfoOnMount: true`).
public struct PodVolume: Sendable, Hashable {
  public static let classKey = "secretProviderClass"
  public static let podNameKey = "csi.storage.k8s.io/pod.name"
  public static let podNamespaceKey = "csi.storage.k8s.io/pod.namespace"
  public static let podUIDKey = "csi.storage.k8s.io/pod.uid"
  public static let serviceAccountKey = "csi.storage.k8s.io/serviceAccount.name"
  public static let tokensKey = "csi.storage.k8s.io/serviceAccount.tokens"
  public static let ephemeralKey = "csi.storage.k8s.io/ephemeral"
  /// volume_context keys whose values are names, never secrets: logs may print
  /// them and the ``SecretScrubber`` leaves them alone. Any other key's value
  /// (pod authors choose them freely) is treated as secret.
  public static let safeContextKeys: Set<String> = [classKey, podNameKey, podNamespaceKey, podUIDKey, serviceAccountKey, ephemeralKey]

  public var secretProviderClass: String
  public var podName: String
  public var podNamespace: String
  public var podUID: String
  public var serviceAccount: String

  /// Throws INVALID_ARGUMENT-worthy messages naming the missing key.
  public init(volumeContext: [String: String]) throws(PublishError) {
    guard let spc = volumeContext[Self.classKey], !spc.isEmpty else {
      throw .invalidArgument("volume_context has no \(Self.classKey): the pod's csi volume must set volumeAttributes.\(Self.classKey)")
    }
    guard let namespace = volumeContext[Self.podNamespaceKey], !namespace.isEmpty else {
      throw .invalidArgument("volume_context has no \(Self.podNamespaceKey): the CSIDriver object must set podInfoOnMount: true")
    }
    secretProviderClass = spc
    podNamespace = namespace
    podName = volumeContext[Self.podNameKey] ?? ""
    podUID = volumeContext[Self.podUIDKey] ?? ""
    serviceAccount = volumeContext[Self.serviceAccountKey] ?? ""
  }
}

/// The provider's MountRequest, built exactly as upstream builds it.
enum MountRequestBuilder {
  /// 0644: files get it when the provider leaves their mode at 0.
  static let defaultFileMode: UInt32 = 0o644

  static func build(
    spc: SecretProviderClass,
    publish: CSI.NodePublishVolumeRequest,
    currentVersions: [Provider.ObjectVersion]
  ) -> Provider.MountRequest {
    // Class parameters overlaid with the whole volume context (the context wins).
    var attributes = spc.parameters
    // Room for the context and the tokens up front: no rehashing while merging.
    attributes.reserveCapacity(attributes.count + publish.volumeContext.count + 1)
    for (k, v) in publish.volumeContext { attributes[k] = v }
    var secrets = publish.secrets
    // Newer kubelets may hand the tokens over in `secrets`; providers read them from attributes.
    if let tokens = secrets.removeValue(forKey: PodVolume.tokensKey), attributes[PodVolume.tokensKey] == nil {
      attributes[PodVolume.tokensKey] = tokens
    }
    return Provider.MountRequest(
      attributes: JSONText.object(attributes),
      secrets: secrets.isEmpty ? "null" : JSONText.object(secrets),
      targetPath: publish.targetPath,
      permission: String(defaultFileMode),
      currentObjectVersion: currentVersions)
  }
}
