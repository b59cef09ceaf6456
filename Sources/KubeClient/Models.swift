public import FoundationEssentials

/// The Kubernetes object shapes the driver reads and writes: only the fields it uses.
/// Unknown fields are ignored on decode, so objects from newer servers still decode;
/// writes of objects the driver does not own go through merge patches, never a
/// whole-object update built from this partial shape.

public struct OwnerReference: Codable, Sendable, Hashable {
  public var apiVersion: String
  public var kind: String
  public var name: String
  public var uid: String
  public var controller: Bool?
  public var blockOwnerDeletion: Bool?

  public init(apiVersion: String, kind: String, name: String, uid: String, controller: Bool? = nil, blockOwnerDeletion: Bool? = nil) {
    self.apiVersion = apiVersion
    self.kind = kind
    self.name = name
    self.uid = uid
    self.controller = controller
    self.blockOwnerDeletion = blockOwnerDeletion
  }
}

public struct ObjectMeta: Codable, Sendable, Hashable {
  public var name: String?
  public var namespace: String?
  public var uid: String?
  public var resourceVersion: String?
  public var generation: Int64?
  public var creationTimestamp: String?
  public var deletionTimestamp: String?
  public var labels: [String: String]?
  public var annotations: [String: String]?
  public var ownerReferences: [OwnerReference]?
  public var finalizers: [String]?

  public init(
    name: String? = nil, namespace: String? = nil, labels: [String: String]? = nil, annotations: [String: String]? = nil,
    ownerReferences: [OwnerReference]? = nil, resourceVersion: String? = nil
  ) {
    self.name = name
    self.namespace = namespace
    self.labels = labels
    self.annotations = annotations
    self.ownerReferences = ownerReferences
    self.resourceVersion = resourceVersion
  }
}

/// An object the client can address: its resource and its metadata.
public protocol KubeObject: Codable, Sendable {
  static var resource: KubeResource { get }
  var metadata: ObjectMeta { get set }
}

/// The `Status` body the API server sends with every failure.
public struct KubeStatus: Codable, Sendable, Hashable {
  public struct Details: Codable, Sendable, Hashable {
    public var name: String?
    public var group: String?
    public var kind: String?
    public var retryAfterSeconds: Int?
  }
  public var kind: String?
  public var status: String?
  public var message: String?
  public var reason: String?
  public var code: Int?
  public var details: Details?
}

public struct KubeList<Item: Decodable & Sendable>: Decodable, Sendable {
  public struct ListMeta: Codable, Sendable {
    public var resourceVersion: String?
    public var `continue`: String?
  }
  public var metadata: ListMeta
  public var items: [Item]
}

/// One line of a watch stream.
public enum WatchEvent<Item: Sendable>: Sendable {
  case added(Item)
  case modified(Item)
  case deleted(Item)
  /// The server's progress mark: everything up to this resourceVersion has been sent.
  case bookmark(resourceVersion: String)
  /// The watch ended with this status (410 Gone: the resourceVersion is too old, re-list).
  case error(KubeStatus)
}

// MARK: - secrets-store.csi.x-k8s.io

public struct SecretProviderClassObject: KubeObject, Hashable {
  public static let resource = KubeResource.secretProviderClasses
  public struct SecretObjectData: Codable, Sendable, Hashable {
    public var objectName: String?
    public var key: String?
  }
  public struct SecretObject: Codable, Sendable, Hashable {
    public var secretName: String?
    public var type: String?
    public var labels: [String: String]?
    public var annotations: [String: String]?
    public var data: [SecretObjectData]?
  }
  public struct Spec: Codable, Sendable, Hashable {
    public var provider: String?
    public var parameters: [String: String]?
    public var secretObjects: [SecretObject]?
  }
  public var apiVersion: String? = "secrets-store.csi.x-k8s.io/v1"
  public var kind: String? = "SecretProviderClass"
  public var metadata: ObjectMeta
  public var spec: Spec?
}

public struct SecretProviderClassPodStatusObject: KubeObject, Hashable {
  public static let resource = KubeResource.secretProviderClassPodStatuses
  public struct ObjectVersion: Codable, Sendable, Hashable {
    public var id: String
    public var version: String
    public init(id: String, version: String) {
      self.id = id
      self.version = version
    }
  }
  public struct Status: Codable, Sendable, Hashable {
    public var podName: String
    public var secretProviderClassName: String
    public var mounted: Bool
    public var targetPath: String
    public var objects: [ObjectVersion]?
    public init(podName: String, secretProviderClassName: String, mounted: Bool, targetPath: String, objects: [ObjectVersion]?) {
      self.podName = podName
      self.secretProviderClassName = secretProviderClassName
      self.mounted = mounted
      self.targetPath = targetPath
      self.objects = objects
    }
  }
  public var apiVersion: String? = "secrets-store.csi.x-k8s.io/v1"
  public var kind: String? = "SecretProviderClassPodStatus"
  public var metadata: ObjectMeta
  public var status: Status?

  public init(metadata: ObjectMeta, status: Status?) {
    self.metadata = metadata
    self.status = status
  }
}

// MARK: - core/v1

public struct SecretObject: KubeObject, Hashable {
  public static let resource = KubeResource.secrets
  public var apiVersion: String? = "v1"
  public var kind: String? = "Secret"
  public var metadata: ObjectMeta
  public var type: String?
  /// Values as bytes; JSON carries them base64-encoded, as the API does.
  public var data: [String: Data]?

  public init(metadata: ObjectMeta, type: String?, data: [String: Data]?) {
    self.metadata = metadata
    self.type = type
    self.data = data
  }
}

public struct PodObject: KubeObject, Hashable {
  public static let resource = KubeResource.pods
  public struct Spec: Codable, Sendable, Hashable {
    public var nodeName: String?
    public var serviceAccountName: String?
  }
  public var apiVersion: String? = "v1"
  public var kind: String? = "Pod"
  public var metadata: ObjectMeta
  public var spec: Spec?
}

public struct EventObject: KubeObject, Hashable {
  public static let resource = KubeResource.events
  public struct InvolvedObject: Codable, Sendable, Hashable {
    public var apiVersion: String?
    public var kind: String?
    public var name: String?
    public var namespace: String?
    public var uid: String?
    public init(apiVersion: String?, kind: String?, name: String?, namespace: String?, uid: String?) {
      self.apiVersion = apiVersion
      self.kind = kind
      self.name = name
      self.namespace = namespace
      self.uid = uid
    }
  }
  public struct Source: Codable, Sendable, Hashable {
    public var component: String?
    public var host: String?
    public init(component: String?, host: String?) {
      self.component = component
      self.host = host
    }
  }
  public var apiVersion: String? = "v1"
  public var kind: String? = "Event"
  public var metadata: ObjectMeta
  public var involvedObject: InvolvedObject
  public var reason: String?
  public var message: String?
  /// "Normal" or "Warning".
  public var type: String?
  public var count: Int?
  public var firstTimestamp: String?
  public var lastTimestamp: String?
  public var source: Source?
  public var reportingComponent: String?
  public var reportingInstance: String?

  public init(
    metadata: ObjectMeta, involvedObject: InvolvedObject, reason: String, message: String, type: String, count: Int,
    firstTimestamp: String, lastTimestamp: String, source: Source
  ) {
    self.metadata = metadata
    self.involvedObject = involvedObject
    self.reason = reason
    self.message = message
    self.type = type
    self.count = count
    self.firstTimestamp = firstTimestamp
    self.lastTimestamp = lastTimestamp
    self.source = source
    self.reportingComponent = source.component
    self.reportingInstance = source.host
  }
}
