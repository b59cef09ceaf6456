import FoundationEssentials
import Glibc
@testable import KubeClient
import Testing
import YAML

/// A directory under /tmp, removed afterwards.
private func withDirectory(_ body: (String) throws -> Void) throws {
  var template = Array("/tmp/kubecfg-XXXXXX".utf8CString)
  let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
  defer {
    if let d = opendir(dir) {
      while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if name != "." && name != ".." { unlink(dir + "/" + name) }
      }
      closedir(d)
    }
    rmdir(dir)
  }
  try body(dir)
}

private func write(_ path: String, _ text: String) {
  let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
  _ = text.utf8CString.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count - 1) }
  close(fd)
}

@Suite struct KubeConfigTests {
  @Test func currentContextWithTokenAndInlineCA() throws {
    try withDirectory { dir in
      let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
      let caData = Data(ca.utf8).base64EncodedString()
      write(
        dir + "/config",
        """
        apiVersion: v1
        kind: Config
        current-context: dev
        clusters:
        - name: other
          cluster: {server: "https://other:1"}
        - name: test
          cluster:
            server: https://127.0.0.1:6443/
            certificate-authority-data: \(caData)
        contexts:
        - name: dev
          context: {cluster: test, user: admin, namespace: team}
        users:
        - name: admin
          user: {token: abc123}
        """)
      let config = try KubeConfig.load(kubeconfig: dir + "/config")
      #expect(config.server == "https://127.0.0.1:6443")
      #expect(config.caPEM == Array(ca.utf8))
      #expect(config.namespace == "team")
      guard case .token(let token) = config.credentials else {
        Issue.record("expected a token")
        return
      }
      #expect(token == "abc123")
    }
  }

  @Test func filesAreRelativeToTheKubeconfig() throws {
    try withDirectory { dir in
      write(dir + "/ca.crt", "CA")
      write(dir + "/client.crt", "CERT")
      write(dir + "/client.key", "KEY")
      write(
        dir + "/config",
        """
        current-context: c
        clusters: [{name: k, cluster: {server: "https://h:1", certificate-authority: ca.crt}}]
        contexts: [{name: c, context: {cluster: k, user: u}}]
        users: [{name: u, user: {client-certificate: client.crt, client-key: \(dir)/client.key}}]
        """)
      let config = try KubeConfig.load(kubeconfig: dir + "/config")
      #expect(config.caPEM == Array("CA".utf8))
      guard case .clientCertificate(let cert, let key) = config.credentials else {
        Issue.record("expected a client certificate")
        return
      }
      #expect(cert == Array("CERT".utf8) && key == Array("KEY".utf8))
    }
  }

  @Test func errorsNameTheProblemNotTheSecrets() throws {
    try withDirectory { dir in
      write(dir + "/config", "current-context: missing\ncontexts: []\nusers: [{name: u, user: {token: s3cr3t-token}}]\n")
      let error = try #require(throws: KubeConfigError.self) { try KubeConfig.load(kubeconfig: dir + "/config") }
      #expect(error.message.contains("missing"))
      #expect(!error.message.contains("s3cr3t"))
      write(dir + "/broken", "users: [{name: u, user: {token: s3cr3t-token: x}}]\n")
      let syntax = try #require(throws: KubeConfigError.self) { try KubeConfig.load(kubeconfig: dir + "/broken") }
      #expect(!syntax.message.contains("s3cr3t"), "\(syntax)")
    }
  }

  @Test func inClusterReadsTheServiceAccount() throws {
    try withDirectory { dir in
      write(dir + "/ca.crt", "CA")
      write(dir + "/token", "tok\n")
      write(dir + "/namespace", "kube-system\n")
      let config = try KubeConfig.inCluster(
        environment: ["KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"], serviceAccountDirectory: dir)
      #expect(config.server == "https://[fd00::1]:443")
      #expect(config.namespace == "kube-system")
      guard case .tokenFile(let path) = config.credentials else {
        Issue.record("expected a token file")
        return
      }
      #expect(path == dir + "/token")
      #expect(throws: KubeConfigError.self) { try KubeConfig.inCluster(environment: [:], serviceAccountDirectory: dir) }
    }
  }

  @Test func tokenFileIsReadAgainAfterInvalidation() throws {
    try withDirectory { dir in
      write(dir + "/token", "first\n")
      let cache = TokenCache(file: dir + "/token")
      let first = try cache.current()
      write(dir + "/token", "second\n")
      let cached = try cache.current()  // kept until it is old or rejected
      cache.invalidate()
      let reread = try cache.current()
      #expect(first == "first" && cached == "first" && reread == "second")
    }
  }
}

@Suite struct KubeClientPieceTests {
  @Test func tokenBucketAllowsTheBurstThenPaces() {
    var bucket = TokenBucket(ratePerSecond: 10, burst: 3, now: .zero)
    #expect(bucket.reserve(now: .zero) == .zero)
    #expect(bucket.reserve(now: .zero) == .zero)
    #expect(bucket.reserve(now: .zero) == .zero)
    #expect(bucket.reserve(now: .zero) == .milliseconds(100))
    #expect(bucket.reserve(now: .zero) == .milliseconds(200))  // waiters queue
    #expect(bucket.reserve(now: .seconds(10)) == .zero)  // refilled, capped at the burst
    #expect(bucket.reserve(now: .seconds(10)) == .zero)
    #expect(bucket.reserve(now: .seconds(10)) == .zero)
    #expect(bucket.reserve(now: .seconds(10)) > .zero)
  }

  @Test func pathsForNamespacedClusterAndCoreResources() {
    let r = KubeResource.secretProviderClassPodStatuses
    #expect(r.path(namespace: "ns", name: "p") == "/apis/secrets-store.csi.x-k8s.io/v1/namespaces/ns/secretproviderclasspodstatuses/p")
    #expect(r.path(namespace: nil) == "/apis/secrets-store.csi.x-k8s.io/v1/secretproviderclasspodstatuses")
    #expect(KubeResource.secrets.path(namespace: "a b", name: "x/y") == "/api/v1/namespaces/a%20b/secrets/x%2Fy")
    #expect(KubeClient.query(["labelSelector": "a=b,c in (d)", "watch": nil]) == "?labelSelector=a%3Db%2Cc%20in%20%28d%29")
  }

  @Test func watchLinesDecode() throws {
    let added = try KubeClient.decodeWatchLine(
      Array(#"{"type":"ADDED","object":{"metadata":{"name":"a","namespace":"n","resourceVersion":"5"},"spec":{"provider":"aws"}}}"#.utf8),
      as: SecretProviderClassObject.self)
    guard case .added(let spc) = added else {
      Issue.record("expected ADDED, got \(added)")
      return
    }
    #expect(spc.metadata.name == "a" && spc.spec?.provider == "aws")
    let bookmark = try KubeClient.decodeWatchLine(
      Array(#"{"type":"BOOKMARK","object":{"kind":"SecretProviderClass","metadata":{"resourceVersion":"42"}}}"#.utf8),
      as: SecretProviderClassObject.self)
    guard case .bookmark(let rv) = bookmark else {
      Issue.record("expected BOOKMARK")
      return
    }
    #expect(rv == "42")
    let gone = try KubeClient.decodeWatchLine(
      Array(#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old"}}"#.utf8),
      as: SecretProviderClassObject.self)
    guard case .error(let status) = gone else {
      Issue.record("expected ERROR")
      return
    }
    #expect(status.code == 410)
  }

  @Test func errorsComeFromTheStatusBody() {
    let e = KubeClient.error(status: 409, body: Array(#"{"kind":"Status","reason":"AlreadyExists","code":409,"message":"exists"}"#.utf8))
    #expect(e.isAlreadyExists && !e.isConflict)
    let c = KubeClient.error(status: 409, body: Array(#"{"kind":"Status","reason":"Conflict","code":409}"#.utf8))
    #expect(c.isConflict)
    let plain = KubeClient.error(status: 503, body: Array("<html>".utf8))
    #expect(plain.reason == "ServiceUnavailable" && plain.isRetryable)
  }

  @Test func secretDataIsBase64OnTheWire() throws {
    let secret = SecretObject(metadata: ObjectMeta(name: "s", namespace: "n"), type: "Opaque", data: ["k": Data([0, 1, 255])])
    let json = String(decoding: try KubeClient.encode(secret), as: UTF8.self)
    #expect(json.contains(#""k":"AAH/""#))
    let back = try JSONDecoder().decode(SecretObject.self, from: Data(json.utf8))
    #expect(back.data?["k"] == Data([0, 1, 255]))
  }
}

@Suite struct JSONValueTests {
  @Test func yamlScalarsResolveLikeKubernetes() throws {
    let doc = try #require(
      try YAMLDocuments.parseAll(
        "a: true\nb: 'true'\nc: 8095\nd: \"8095\"\ne: 1.5\nf: ~\ng: :8095\nh: 0x1F\ni: [x, 2]\nj: 1e3\nk: 2m\n"
      ).first)
    let v = JSONValue(yaml: doc)
    #expect(v["a"] == .bool(true))
    #expect(v["b"] == .string("true"))
    #expect(v["c"] == .int(8095))
    #expect(v["d"] == .string("8095"))
    #expect(v["e"] == .double(1.5))
    #expect(v["f"] == .null)
    #expect(v["g"] == .string(":8095"))
    #expect(v["h"] == .int(31))
    #expect(v["i"] == .array([.string("x"), .int(2)]))
    #expect(v["j"] == .double(1000))
    #expect(v["k"] == .string("2m"))
  }

  @Test func jsonRoundTripKeepsIntegers() throws {
    let v = JSONValue.object(["n": .int(9_007_199_254_740_993), "s": .string("x"), "a": .array([.bool(false), .null])])
    let back = try JSONDecoder().decode(JSONValue.self, from: Data(try KubeClient.encode(v)))
    #expect(back == v)
  }
}
