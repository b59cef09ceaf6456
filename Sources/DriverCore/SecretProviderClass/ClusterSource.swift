public import KubeClient
import TextFormats

/// SecretProviderClasses from the cluster: a watch-fed cache (one list+watch for all
/// namespaces, or one per namespace with `--spc-namespaces`), so a publish never waits
/// for the API once the cache has synced. A class the cache does not hold is looked up
/// once directly before the lookup misses: a pod created just after its class must not
/// fail because the watch has not delivered the class yet.
public final class ClusterSecretProviderClassSource: SecretProviderClassSource, Sendable {
  let client: KubeClient
  let informers: [String?: KubeInformer<SecretProviderClassObject>]

  /// `namespaces` empty: all namespaces through one watch.
  public init(client: KubeClient, namespaces: [String] = []) {
    self.client = client
    let scopes: [String?] = namespaces.isEmpty ? [nil] : namespaces
    informers = Dictionary(uniqueKeysWithValues: scopes.map { ($0, KubeInformer<SecretProviderClassObject>(client: client, namespace: $0)) })
  }

  /// Runs the caches until the task is cancelled.
  public func run() async {
    await withTaskGroup(of: Void.self) { group in
      for informer in informers.values { group.addTask { await informer.run() } }
    }
  }

  public var isSynced: Bool { informers.values.allSatisfy(\.isSynced) }

  public func waitUntilSynced() async {
    for informer in informers.values { await informer.waitUntilSynced() }
  }

  private func informer(for namespace: String) -> KubeInformer<SecretProviderClassObject>? {
    informers[nil] ?? informers[namespace]
  }

  public func secretProviderClass(name: String, namespace: String) async throws -> SecretProviderClass? {
    guard let informer = informer(for: namespace) else { return nil }  // a namespace this driver does not serve
    if let cached = informer.object(namespace: namespace, name: name) {
      return try Self.convert(cached, name: name, namespace: namespace)
    }
    do {
      let fetched = try await client.get(SecretProviderClassObject.self, namespace: namespace, name: name)
      informer.remember(fetched)
      return try Self.convert(fetched, name: name, namespace: namespace)
    } catch let error as KubeError where error.isNotFound {
      return nil
    }
  }

  static func convert(_ object: SecretProviderClassObject, name: String, namespace: String) throws -> SecretProviderClass {
    func invalid(_ reason: String) -> SecretProviderClassError {
      SecretProviderClassError(name: name, namespace: namespace, reason: reason)
    }
    guard let provider = object.spec?.provider, !provider.isEmpty else { throw invalid("spec.provider is required") }
    guard SecretProviderClass.isValidProviderName(provider) else {
      throw invalid("spec.provider \"\(provider)\" must match ^[a-zA-Z0-9_-]{0,30}$")
    }
    var secretObjects: [SecretProviderClass.SecretObject] = []
    for (i, spec) in (object.spec?.secretObjects ?? []).enumerated() {
      guard let secretName = spec.secretName, !secretName.isEmpty else {
        throw invalid("spec.secretObjects[\(i)].secretName is required")
      }
      var data: [(objectName: String, key: String)] = []
      for (j, item) in (spec.data ?? []).enumerated() {
        guard let objectName = item.objectName, !objectName.isEmpty, let key = item.key, !key.isEmpty else {
          throw invalid("spec.secretObjects[\(i)].data[\(j)] needs objectName and key")
        }
        data.append((objectName, key))
      }
      secretObjects.append(
        .init(secretName: secretName, type: spec.type ?? "", labels: spec.labels ?? [:], annotations: spec.annotations ?? [:], data: data))
    }
    let annotations = object.metadata.annotations ?? [:]
    var interval: Duration?
    if let text = annotations[SecretProviderClass.rotationIntervalAnnotation] {
      guard let parsed = try? GoDuration.parse(text), parsed > .zero else {
        throw invalid("annotation \(SecretProviderClass.rotationIntervalAnnotation) must be a positive Go duration such as 10m")
      }
      interval = parsed
    }
    return SecretProviderClass(
      name: name, namespace: namespace, provider: provider, parameters: object.spec?.parameters ?? [:],
      resourceVersion: object.metadata.resourceVersion ?? "", secretObjects: secretObjects, rotationInterval: interval,
      refreshStamp: annotations.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n"))
  }
}
