import FoundationEssentials
import Glibc
import YAML

/// How to reach the API server: its address, whom to trust, who we are.
public struct KubeConfig: Sendable {
  /// `https://host:port`, no trailing slash.
  public var server: String
  /// PEM of the CA bundle that signs the server's certificate (nil: the system's).
  public var caPEM: [UInt8]?
  public var insecureSkipTLSVerify: Bool
  public var credentials: Credentials
  /// The namespace of the context (or of the pod, in a cluster).
  public var namespace: String?

  public enum Credentials: Sendable {
    case none
    /// A fixed bearer token (kubeconfig `token`).
    case token(String)
    /// A token read from a file and re-read when it changes: kubelet rotates the
    /// projected service-account token, and `tokenFile` in a kubeconfig does too.
    case tokenFile(String)
    /// A client certificate and key (PEM).
    case clientCertificate(cert: [UInt8], key: [UInt8])
  }

  public init(server: String, caPEM: [UInt8]? = nil, insecureSkipTLSVerify: Bool = false, credentials: Credentials, namespace: String? = nil) {
    self.server = server.hasSuffix("/") ? String(server.dropLast()) : server
    self.caPEM = caPEM
    self.insecureSkipTLSVerify = insecureSkipTLSVerify
    self.credentials = credentials
    self.namespace = namespace
  }

  public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

  /// In a pod: `KUBERNETES_SERVICE_HOST`/`_PORT`, the projected token (re-read when
  /// it changes) and the CA bundle of the service account.
  public static func inCluster(
    environment: [String: String], serviceAccountDirectory dir: String = serviceAccountDirectory
  ) throws(KubeConfigError) -> KubeConfig {
    guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
      let port = environment["KUBERNETES_SERVICE_PORT"], !port.isEmpty
    else {
      throw KubeConfigError("not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set")
    }
    let hostPart = host.contains(":") ? "[\(host)]" : host  // IPv6
    let ca = try readFile(dir + "/ca.crt", what: "the service account's CA bundle")
    guard access(dir + "/token", R_OK) == 0 else {
      throw KubeConfigError("cannot read the service account token \(dir)/token")
    }
    let namespace = (try? readFile(dir + "/namespace", what: "namespace")).map {
      String(decoding: $0, as: UTF8.self).trimmedOfWhitespace
    }
    return KubeConfig(server: "https://\(hostPart):\(port)", caPEM: ca, credentials: .tokenFile(dir + "/token"), namespace: namespace)
  }

  /// A kubeconfig file's current context (or `context`), as kubectl reads it:
  /// `certificate-authority-data` or `certificate-authority` (relative to the file),
  /// `token`, `tokenFile`, `client-certificate[-data]` and `client-key[-data]`.
  public static func load(kubeconfig path: String, context wanted: String? = nil) throws(KubeConfigError) -> KubeConfig {
    let bytes = try readFile(path, what: "kubeconfig")
    let root: YAMLNode
    do {
      guard let doc = try YAMLDocuments.parseAll(String(decoding: bytes, as: UTF8.self)).first else {
        throw KubeConfigError("kubeconfig \(path) is empty")
      }
      root = doc
    } catch let error as YAMLError {
      throw KubeConfigError("kubeconfig \(path): \(error)")
    } catch {
      throw error as! KubeConfigError
    }
    let base = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
    func named(_ list: String, _ name: String) throws(KubeConfigError) -> YAMLNode {
      guard let entry = root[list]?.sequence?.first(where: { $0["name"]?.string == name }) else {
        throw KubeConfigError("kubeconfig \(path): no \(list) entry named \"\(name)\"")
      }
      return entry
    }
    guard let contextName = wanted ?? root["current-context"]?.string, !contextName.isEmpty else {
      throw KubeConfigError("kubeconfig \(path) has no current-context")
    }
    let context = try named("contexts", contextName)["context"]
    guard let clusterName = context?["cluster"]?.string else {
      throw KubeConfigError("kubeconfig \(path): context \"\(contextName)\" names no cluster")
    }
    guard let cluster = try named("clusters", clusterName)["cluster"], let server = cluster["server"]?.string else {
      throw KubeConfigError("kubeconfig \(path): cluster \"\(clusterName)\" has no server")
    }
    let user = try context?["user"]?.string.map { (u) throws(KubeConfigError) in try named("users", u)["user"] } ?? nil

    func pem(data key: String, file fileKey: String, in node: YAMLNode?) throws(KubeConfigError) -> [UInt8]? {
      if let encoded = node?[key]?.string {
        guard let decoded = Data(base64Encoded: encoded, options: .ignoreUnknownCharacters) else {
          throw KubeConfigError("kubeconfig \(path): \(key) is not base64")
        }
        return Array(decoded)
      }
      if let file = node?[fileKey]?.string {
        return try readFile(file.hasPrefix("/") ? file : base + "/" + file, what: fileKey)
      }
      return nil
    }

    let credentials: Credentials
    if let token = user?["token"]?.string, !token.isEmpty {
      credentials = .token(token)
    } else if let file = user?["tokenFile"]?.string, !file.isEmpty {
      credentials = .tokenFile(file.hasPrefix("/") ? file : base + "/" + file)
    } else if let cert = try pem(data: "client-certificate-data", file: "client-certificate", in: user) {
      guard let key = try pem(data: "client-key-data", file: "client-key", in: user) else {
        throw KubeConfigError("kubeconfig \(path): a client certificate without a client key")
      }
      credentials = .clientCertificate(cert: cert, key: key)
    } else if user?["exec"] != nil || user?["auth-provider"] != nil {
      throw KubeConfigError("kubeconfig \(path): exec and auth-provider credentials are not supported; use a token or a client certificate")
    } else {
      credentials = .none
    }
    return KubeConfig(
      server: server, caPEM: try pem(data: "certificate-authority-data", file: "certificate-authority", in: cluster),
      insecureSkipTLSVerify: cluster["insecure-skip-tls-verify"]?.string == "true", credentials: credentials,
      namespace: context?["namespace"]?.string)
  }

  static func readFile(_ path: String, what: String) throws(KubeConfigError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw KubeConfigError("cannot open \(what) \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 16384)
    while true {
      let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if n < 0 {
        if errno == EINTR { continue }
        throw KubeConfigError("cannot read \(what) \(path): \(String(cString: strerror(errno)))")
      }
      if n == 0 { return out }
      out += buffer[0..<n]
      guard out.count <= 1 << 20 else { throw KubeConfigError("\(what) \(path) is larger than 1 MiB") }
    }
  }
}
