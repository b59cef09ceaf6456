public import KubeClient
import YAML

/// One of deploy/'s YAML files, embedded by scripts/gen-operator-manifests.sh.
struct ManifestFile: Sendable {
  enum Group: Sendable { case base, syncSecret, openshift }
  var path: String
  var group: Group
  var text: String
}

/// Where each kind the templates contain lives in the API. The operator touches these
/// resources and no others (besides its own cluster resource and, read-only,
/// SecretProviderClasses): the CSV's RBAC is derived from the same list.
public enum ManagedKinds {
  public static let customResourceDefinitions = KubeResource(
    group: "apiextensions.k8s.io", version: "v1", plural: "customresourcedefinitions", namespaced: false)
  public static let csiDrivers = KubeResource(group: "storage.k8s.io", version: "v1", plural: "csidrivers", namespaced: false)
  public static let serviceAccounts = KubeResource(group: "", version: "v1", plural: "serviceaccounts", namespaced: true)
  public static let services = KubeResource(group: "", version: "v1", plural: "services", namespaced: true)
  public static let clusterRoles = KubeResource(
    group: "rbac.authorization.k8s.io", version: "v1", plural: "clusterroles", namespaced: false)
  public static let clusterRoleBindings = KubeResource(
    group: "rbac.authorization.k8s.io", version: "v1", plural: "clusterrolebindings", namespaced: false)
  public static let daemonSets = KubeResource(group: "apps", version: "v1", plural: "daemonsets", namespaced: true)
  public static let securityContextConstraints = KubeResource(
    group: "security.openshift.io", version: "v1", plural: "securitycontextconstraints", namespaced: false)

  static let byKind: [String: KubeResource] = [
    "apiextensions.k8s.io/v1/CustomResourceDefinition": customResourceDefinitions,
    "storage.k8s.io/v1/CSIDriver": csiDrivers,
    "v1/ServiceAccount": serviceAccounts,
    "v1/Service": services,
    "rbac.authorization.k8s.io/v1/ClusterRole": clusterRoles,
    "rbac.authorization.k8s.io/v1/ClusterRoleBinding": clusterRoleBindings,
    "apps/v1/DaemonSet": daemonSets,
    "security.openshift.io/v1/SecurityContextConstraints": securityContextConstraints,
  ]

  /// Deletion order for `Removed`: the pods first, the CRDs last (and only when no
  /// SecretProviderClass is left).
  public static func all(flavour: Flavour) -> [KubeResource] {
    var kinds = [daemonSets, services, csiDrivers, clusterRoleBindings, clusterRoles, serviceAccounts]
    if flavour == .openshift { kinds.append(securityContextConstraints) }
    kinds.append(customResourceDefinitions)
    return kinds
  }
}

/// A parsed template: the object as deploy/ has it, and where it goes.
struct Template: Sendable {
  var file: String
  var group: ManifestFile.Group
  var resource: KubeResource
  var object: JSONValue
  var kind: String { object["kind"]?.string ?? "" }
  var name: String { object["metadata"]?["name"]?.string ?? "" }
}

enum Templates {
  struct Problem: Error, CustomStringConvertible {
    var description: String
  }

  /// Every embedded file, parsed once. A file that does not parse, or a kind the
  /// operator does not know, is a build defect: the tests parse them all.
  static func load(_ files: [ManifestFile] = Manifests.files) throws -> [Template] {
    var out: [Template] = []
    for file in files {
      let docs: [YAMLNode]
      do {
        docs = try YAMLDocuments.parseAll(file.text)
      } catch {
        throw Problem(description: "\(file.path): \(error)")
      }
      for doc in docs where !doc.isNull {
        let object = JSONValue(yaml: doc)
        let key = (object["apiVersion"]?.string ?? "") + "/" + (object["kind"]?.string ?? "")
        guard let resource = ManagedKinds.byKind[key] else {
          throw Problem(description: "\(file.path): kind \(key) is not one the operator manages")
        }
        out.append(Template(file: file.path, group: file.group, resource: resource, object: object))
      }
    }
    return out
  }

  static let parsed: Result<[Template], Problem> = {
    do { return .success(try load()) } catch let p as Problem { return .failure(p) } catch {
      return .failure(Problem(description: "\(error)"))
    }
  }()
}
