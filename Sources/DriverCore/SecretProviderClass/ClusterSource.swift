public import KubeClient
import TextFormats
import UVRuntime

/// SecretProviderClasses from the cluster: a watch-fed cache (one list+watch for all
/// namespaces, or one per namespace with `--spc-namespaces`), so a publish never waits
/// for the API once the cache has synced. A class the cache does not hold is looked up
/// once directly before the lookup misses: a pod created just after its class must not
/// fail because the watch has not delivered the class yet.
public final class ClusterSecretProviderClassSource: SecretProviderClassSource, Sendable {
  let client: KubeClient
  let informers: [String?: KubeInformer<SecretProviderClassObject>]
  let refreshRequests = RefreshRequests()

  /// `namespaces` empty: all namespaces through one watch.
  public init(client: KubeClient, namespaces: [String] = []) {
    self.client = client
    let scopes: [String?] = namespaces.isEmpty ? [nil] : namespaces
    let requests = refreshRequests
    informers = Dictionary(
      uniqueKeysWithValues: scopes.map {
        ($0, KubeInformer<SecretProviderClassObject>(client: client, namespace: $0, onChange: { requests.changed($0) }))
      })
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
    let interval: Duration?
    do {
      interval = try SecretProviderClass.rotationInterval(annotations: annotations)
    } catch {
      throw invalid(error.reason)
    }
    return SecretProviderClass(
      name: name, namespace: namespace, provider: provider, parameters: object.spec?.parameters ?? [:],
      resourceVersion: object.metadata.resourceVersion ?? "", secretObjects: secretObjects, rotationInterval: interval,
      refreshRequest: annotations[SecretProviderClass.refreshRequestAnnotation])
  }

  // MARK: on-demand refresh

  /// Calls `handler` (namespace, name) whenever a class's refresh annotation
  /// (`SecretProviderClass.refreshRequestAnnotation`) takes a new value. Only that
  /// annotation counts: tools write others for their own reasons (kubectl's
  /// last-applied configuration, GitOps tracking ids), and a refresh of every volume
  /// of a class is a store call per volume. A class seen for the first time (the
  /// cache's first list, a class created) asks for nothing: no volume uses it yet, or
  /// the driver just started and adopted volumes are due anyway. A re-list after the
  /// watch fell behind compares with what was seen before, so a change made meanwhile
  /// still counts; removing the annotation asks for nothing.
  public func onRefreshRequest(_ handler: @escaping @Sendable (_ namespace: String, _ name: String) -> Void) {
    refreshRequests.handler.withLock { $0 = handler }
  }

  /// The refresh annotation's value per class as last seen, and whom to tell of a change.
  final class RefreshRequests: Sendable {
    typealias Key = KubeInformer<SecretProviderClassObject>.Key
    /// `.some(nil)`: seen without the annotation.
    private let seen = Locked([Key: String?]())
    let handler = Locked<(@Sendable (String, String) -> Void)?>(nil)

    func changed(_ change: KubeInformer<SecretProviderClassObject>.Change) {
      switch change {
      case .upserted(let object):
        guard let name = object.metadata.name else { return }
        let namespace = object.metadata.namespace ?? ""
        let value = object.metadata.annotations?[SecretProviderClass.refreshRequestAnnotation]
        let key = Key(namespace: namespace, name: name)
        let asked = seen.withLock { seen -> Bool in
          defer { seen[key] = .some(value) }
          guard let before = seen[key], let value else { return false }
          return before != value
        }
        if asked, let handler = handler.withLock({ $0 }) { handler(namespace, name) }
      case .deleted(let object):
        guard let name = object.metadata.name else { return }
        let key = Key(namespace: object.metadata.namespace ?? "", name: name)
        _ = seen.withLock { $0.removeValue(forKey: key) }
      }
    }
  }
}
