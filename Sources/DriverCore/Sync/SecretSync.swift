import FoundationEssentials
public import KubeClient

/// Keeps the Kubernetes Secrets of `spec.secretObjects` in step with mounted content.
///
/// - A Secret is created with the managed label and an owner reference to the
///   SecretProviderClassPodStatus of the volume that wants it; each further volume (on
///   any node) adds its own owner reference. The garbage collector deletes the Secret
///   once every one of those is gone, so scaling a Deployment down never removes a
///   Secret a remaining pod still uses.
/// - An existing Secret without the managed label is never touched.
/// - Updates are read-modify-write with the server's resourceVersion (a conflict means
///   read again), so two nodes writing the same Secret never lose each other's owners.
public struct SecretSync: Sendable {
  let client: KubeClient

  public init(client: KubeClient) {
    self.client = client
  }

  public enum Outcome: Sendable, Equatable {
    case created
    case updated
    case unchanged
    /// A Secret of that name exists and is not ours: left alone.
    case notManaged
  }

  public func apply(_ secret: SyncedSecret, owner: OwnerReference) async throws -> Outcome {
    let wanted = SecretObject(
      metadata: ObjectMeta(
        name: secret.name, namespace: secret.namespace, labels: secret.labels,
        annotations: secret.annotations.isEmpty ? nil : secret.annotations, ownerReferences: [owner]),
      type: secret.type, data: secret.data.mapValues { Data($0) })
    do {
      _ = try await client.create(wanted)
      return .created
    } catch let error as KubeError where error.isAlreadyExists {
      var outcome = Outcome.unchanged
      _ = try await client.modify(SecretObject.self, namespace: secret.namespace, name: secret.name) { existing in
        guard existing.metadata.labels?[SyncedSecret.managedLabel] == "true" else {
          outcome = .notManaged
          return false
        }
        guard (existing.type ?? "Opaque") == secret.type else {
          // A Secret's type cannot change in place.
          throw SyncError("Secret \(secret.namespace)/\(secret.name) has type \(existing.type ?? "Opaque"), the class asks for \(secret.type)")
        }
        var changed = false
        if existing.data != wanted.data {
          existing.data = wanted.data
          changed = true
        }
        var labels = existing.metadata.labels ?? [:]
        for (k, v) in secret.labels where labels[k] != v {
          labels[k] = v
          changed = true
        }
        existing.metadata.labels = labels
        if !secret.annotations.isEmpty {
          var annotations = existing.metadata.annotations ?? [:]
          for (k, v) in secret.annotations where annotations[k] != v {
            annotations[k] = v
            changed = true
          }
          existing.metadata.annotations = annotations
        }
        var owners = existing.metadata.ownerReferences ?? []
        if !owners.contains(where: { $0.uid == owner.uid }) {
          owners.append(owner)
          existing.metadata.ownerReferences = owners
          changed = true
        }
        outcome = changed ? .updated : .unchanged
        return changed
      }
      return outcome
    }
  }
}
