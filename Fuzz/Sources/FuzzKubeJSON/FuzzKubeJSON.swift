// What the Kubernetes API server (or a kubeconfig file) hands the driver: watch lines for
// every type the driver watches or reads, lists, Status bodies of failed calls, the class
// conversion the cluster source does, and kubeconfig YAML. The first byte picks which.
@testable import DriverCore
import FoundationEssentials
import Glibc
@testable import KubeClient
import YAML

func watchLine<T: KubeObject & Encodable>(_ type: T.Type, _ line: [UInt8], check: (T) -> Void = { _ in }) {
  guard let event = try? KubeClient.decodeWatchLine(line, as: T.self) else { return }
  switch event {
  case .added(let object), .modified(let object), .deleted(let object):
    check(object)
    _ = try? KubeClient.encode(object)
  case .bookmark, .error:
    break
  }
}

func convertClass(_ object: SecretProviderClassObject) {
  guard let spc = try? ClusterSecretProviderClassSource.convert(object, name: "fuzz", namespace: "fuzz") else { return }
  guard SecretProviderClass.isValidProviderName(spc.provider) else { fatalError("accepted provider \(spc.provider.debugDescription)") }
}

/// Standalone kubeconfigs only: keys that name files would make the run read the node's disk.
func namesFiles(_ node: YAMLNode) -> Bool {
  if let entries = node.mapping {
    return entries.contains { entry in
      let key = entry.key.string ?? ""
      return key == "certificate-authority" || key == "client-certificate" || key == "client-key" || namesFiles(entry.key)
        || namesFiles(entry.value)
    }
  }
  return node.sequence?.contains(where: namesFiles) ?? false
}

let kubeconfigPath = "/dev/shm/fuzz-kubeconfig-\(getpid()).yaml"

func kubeconfig(_ bytes: [UInt8]) {
  guard let documents = try? YAMLDocuments.parseAll(String(decoding: bytes, as: UTF8.self)),
    !documents.contains(where: namesFiles)
  else { return }
  let fd = open(kubeconfigPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
  guard fd >= 0 else { fatalError("cannot write \(kubeconfigPath)") }
  _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
  close(fd)
  _ = try? KubeConfig.load(kubeconfig: kubeconfigPath)
  _ = try? KubeConfig.load(kubeconfig: kubeconfigPath, context: "fuzz")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  guard let data, size > 0 else { return 0 }
  let body = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
  switch data[0] % 8 {
  case 0: watchLine(SecretProviderClassObject.self, body, check: convertClass)
  case 1: watchLine(SecretProviderClassPodStatusObject.self, body)
  case 2: watchLine(SecretObject.self, body)
  case 3: watchLine(PodObject.self, body)
  case 4: watchLine(EventObject.self, body)
  case 5:
    if let list = try? JSONDecoder().decode(KubeList<SecretProviderClassObject>.self, from: Data(body)) {
      list.items.forEach(convertClass)
    }
    _ = try? JSONDecoder().decode(JSONValue.self, from: Data(body))
  case 6: _ = KubeClient.error(status: 409, body: body).description
  default: kubeconfig(body)
  }
  return 0
}
