import CSIMessages
@testable import DriverCore
import FoundationEssentials
import GRPCCore
import Glibc
import Testing
import UVRuntime
import VolumeFiles

@Suite struct SecretProviderClassDecodingTests {
  static func decode(_ yaml: String) throws -> [SPCDecoding.Outcome] {
    try SPCDecoding.decodeAll(yaml)
  }

  @Test func decodesV1AndV1alpha1WithBlockScalarParameters() throws {
    let yaml = """
      apiVersion: secrets-store.csi.x-k8s.io/v1
      kind: SecretProviderClass
      metadata: {name: a, namespace: team}
      spec:
        provider: vault
        parameters:
          roleName: app
          objects: |
            - objectName: db
      ---
      apiVersion: secrets-store.csi.x-k8s.io/v1alpha1
      kind: SecretProviderClass
      metadata: {name: b}
      spec: {provider: aws}
      ---
      apiVersion: v1
      kind: ConfigMap
      metadata: {name: c}
      """
    let outcomes = try Self.decode(yaml)
    #expect(outcomes.count == 3)
    guard case .spc(let a) = outcomes[0], case .spc(let b) = outcomes[1], case .otherKind = outcomes[2] else {
      Issue.record("unexpected outcomes \(outcomes)")
      return
    }
    #expect(a == SecretProviderClass(name: "a", namespace: "team", provider: "vault", parameters: ["roleName": "app", "objects": "- objectName: db\n"]))
    #expect(b.namespace == "default" && b.provider == "aws" && b.parameters.isEmpty)
  }

  @Test(arguments: [
    ("spec: {parameters: {a: b}}", "spec.provider is required"),
    ("spec: {provider: 'bad/name'}", "spec.provider"),
    ("spec: {provider: x, parameters: {objects: [1, 2]}}", "spec.parameters.objects must be a string"),
    ("spec: {provider: x, parameters: [a]}", "spec.parameters must be a map"),
  ])
  func invalidFieldsAreTiedToTheClass(spec: String, reason: String) throws {
    let yaml = "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: broken, namespace: ns}\n\(spec)\n"
    let outcomes = try Self.decode(yaml)
    guard case .invalid(let name, let namespace, let message) = outcomes.first else {
      Issue.record("expected .invalid, got \(outcomes)")
      return
    }
    #expect(name == "broken" && namespace == "ns")
    #expect(message.contains(reason), "\(message)")
  }

  /// FuzzSecretProviderClass's crash input (trimmed): `namespace: &efault` is an anchor on
  /// an empty node, and the class came out in namespace "". Null or empty is the default.
  @Test(arguments: ["&efault", "", "~", "null", "\"\""])
  func nullOrEmptyNamespaceIsTheDefault(namespace: String) throws {
    let yaml = "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: app-secrets\n"
      + "  namespace: \(namespace)\nspec:\n  provider: vault\n"
    guard case .spc(let spc) = try Self.decode(yaml).first else {
      Issue.record("expected a class")
      return
    }
    #expect(spc.namespace == "default")
    #expect(spc.name == "app-secrets")
  }

  @Test func wrongGroupOrMissingNameFailsTheFile() {
    #expect(throws: SPCDecoding.FieldError.self) {
      try Self.decode("apiVersion: example.com/v1\nkind: SecretProviderClass\nmetadata: {name: x}\nspec: {provider: p}\n")
    }
    #expect(throws: SPCDecoding.FieldError.self) {
      try Self.decode("apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nspec: {provider: p}\n")
    }
  }

  @Test(arguments: [("aws", true), ("azure_kv-2", true), ("", true), ("a.b", false), ("../x", false), (String(repeating: "a", count: 31), false)])
  func providerNameRule(name: String, valid: Bool) {
    #expect(SecretProviderClass.isValidProviderName(name) == valid)
  }
}

@Suite struct DirectorySourceTests {
  static func withDirectory(_ body: (String) async throws -> Void) async throws {
    var template = Array("/tmp/spcdir-XXXXXX".utf8CString)
    let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    defer {
      for name in FileIO.directoryEntries(dir) { unlink(dir + "/" + name) }
      rmdir(dir)
    }
    try await body(dir)
  }

  static func write(_ path: String, _ text: String) {
    let tmp = path + ".tmp"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    _ = text.utf8CString.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count - 1) }
    close(fd)
    rename(tmp, path)
  }

  static func spc(_ name: String, provider: String) -> String {
    "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: \(name)}\nspec: {provider: \(provider)}\n"
  }

  @Test func findsClassesAndSeesChanges() async throws {
    try await Self.withDirectory { (dir: String) async throws in
      let source = DirectorySecretProviderClassSource(directory: dir)
      #expect(try await source.secretProviderClass(name: "a", namespace: "default") == nil)
      Self.write(dir + "/a.yaml", Self.spc("a", provider: "one"))
      #expect(try await source.secretProviderClass(name: "a", namespace: "default")?.provider == "one")
      #expect(try await source.secretProviderClass(name: "a", namespace: "other") == nil)
      Self.write(dir + "/a.yaml", Self.spc("a", provider: "two"))
      #expect(try await source.secretProviderClass(name: "a", namespace: "default")?.provider == "two")
      unlink(dir + "/a.yaml")
      #expect(try await source.secretProviderClass(name: "a", namespace: "default") == nil)
    }
  }

  @Test func syntaxErrorsDoNotQuoteTheFile() async throws {
    try await Self.withDirectory { (dir: String) async throws in
      Self.write(dir + "/bad.yaml", "spec:\n  parameters:\n    token: s3cr3t-value: oops\n")
      let problems = try DirectorySecretProviderClassSource(directory: dir).problems()
      let reason = try #require(problems["bad.yaml"])
      #expect(!reason.contains("s3cr3t"), "\(reason)")
      #expect(reason.contains("error"), "\(reason)")
    }
  }

  @Test func duplicatesAndBrokenFilesAreReported() async throws {
    try await Self.withDirectory { (dir: String) async throws in
      Self.write(dir + "/1.yaml", Self.spc("dup", provider: "p"))
      Self.write(dir + "/2.yml", Self.spc("dup", provider: "q"))
      Self.write(dir + "/3.yaml", "{{{ not yaml")
      Self.write(dir + "/notes.txt", "ignored")
      let source = DirectorySecretProviderClassSource(directory: dir)
      await #expect(throws: SecretProviderClassError.self) {
        try await source.secretProviderClass(name: "dup", namespace: "default")
      }
      let problems = try source.problems()
      #expect(problems.keys.sorted() == ["3.yaml"], "\(problems)")
    }
  }
}

@Suite struct MountRequestTests {
  static func publish(context: [String: String], secrets: [String: String] = [:]) -> CSI.NodePublishVolumeRequest {
    CSI.NodePublishVolumeRequest(volumeID: "v", targetPath: "/t", readonly: true, secrets: secrets, volumeContext: context)
  }

  static func object(_ json: String) throws -> [String: String] {
    try JSONDecoder().decode([String: String].self, from: Data(json.utf8))
  }

  @Test func attributesOverlayContextOnParameters() throws {
    let spc = SecretProviderClass(name: "s", namespace: "n", provider: "p", parameters: ["region": "eu", "objects": "x"])
    let request = MountRequestBuilder.build(
      spc: spc, publish: Self.publish(context: ["region": "us", PodVolume.tokensKey: "{\"a\":{}}"]),
      currentVersions: [Provider.ObjectVersion(id: "x", version: "1")])
    #expect(try Self.object(request.attributes) == ["region": "us", "objects": "x", PodVolume.tokensKey: "{\"a\":{}}"])
    #expect(request.secrets == "null")
    #expect(request.permission == "420")
    #expect(request.targetPath == "/t")
    #expect(request.currentObjectVersion == [Provider.ObjectVersion(id: "x", version: "1")])
  }

  @Test func tokensFromTheSecretsMapMoveToAttributes() throws {
    let spc = SecretProviderClass(name: "s", namespace: "n", provider: "p")
    let request = MountRequestBuilder.build(
      spc: spc, publish: Self.publish(context: [:], secrets: [PodVolume.tokensKey: "T", "user": "u"]), currentVersions: [])
    #expect(try Self.object(request.attributes) == [PodVolume.tokensKey: "T"])
    #expect(try Self.object(request.secrets) == ["user": "u"])
  }

  @Test func podVolumeNeedsClassAndNamespace() {
    #expect(throws: PublishError.self) { try PodVolume(volumeContext: [:]) }
    #expect(throws: PublishError.self) { try PodVolume(volumeContext: ["secretProviderClass": "s"]) }
    let pod = try? PodVolume(volumeContext: ["secretProviderClass": "s", PodVolume.podNamespaceKey: "n", PodVolume.podUIDKey: "u"])
    #expect(pod?.podUID == "u")
  }
}

@Suite struct ProviderResponseTests {
  @Test func errorCodeAndMissingVersionsFail() {
    let withCode = Provider.MountResponse(objectVersion: [.init(id: "a", version: "1")], error: .init(code: "Throttled"))
    #expect(throws: PublishError(.providerError(code: "Throttled"), "provider \"p\" failed to mount: error code Throttled")) {
      try VolumeActor.check(withCode, provider: "p", scrubber: SecretScrubber())
    }
    #expect(throws: PublishError.self) { try VolumeActor.check(Provider.MountResponse(), provider: "p", scrubber: SecretScrubber()) }
  }

  @Test func errorCodeAndFileNamesAreScrubbed() {
    let secret = "made-up-secret-0042"
    let scrubber = SecretScrubber(secrets: [secret])
    let echo = Provider.MountResponse(
      objectVersion: [.init(id: "a", version: "1")], error: .init(code: "Denied:\(secret)\n\u{1B}[2J"))
    #expect(throws: PublishError(.providerError(code: "Denied:[redacted]  [2J"), "provider \"p\" failed to mount: error code Denied:[redacted]  [2J")) {
      try VolumeActor.check(echo, provider: "p", scrubber: scrubber)
    }
    let badMode = Provider.MountResponse(
      objectVersion: [.init(id: "a", version: "1")], files: [.init(path: "x-\(secret)", mode: -1, contents: [])])
    do {
      _ = try VolumeActor.check(badMode, provider: "p", scrubber: scrubber)
      Issue.record("a negative mode was accepted")
    } catch {
      #expect(!error.message.contains(secret) && error.message.contains("x-[redacted]"))
    }
  }

  @Test func modesMustBePermissionBits() throws {
    var response = Provider.MountResponse(objectVersion: [.init(id: "a", version: "1")], files: [.init(path: "a", mode: 0o400, contents: [1])])
    #expect(try VolumeActor.check(response, provider: "p", scrubber: SecretScrubber()).map(\.mode) == [0o400])
    response.files[0].mode = 0o100644
    #expect(throws: PublishError.self) { try VolumeActor.check(response, provider: "p", scrubber: SecretScrubber()) }
    response.files[0].mode = -1
    #expect(throws: PublishError.self) { try VolumeActor.check(response, provider: "p", scrubber: SecretScrubber()) }
  }

  @Test func zeroFilesAreAllowedForLegacyProviders() throws {
    #expect(try VolumeActor.check(Provider.MountResponse(objectVersion: [.init(id: "a", version: "1")]), provider: "p", scrubber: SecretScrubber()) == [])
  }

  @Test func errorCodesMapToGRPCCodes() {
    #expect(PublishError(.classNotFound, "").code == .notFound)
    #expect(PublishError(.classInvalid, "").code == .failedPrecondition)
    #expect(PublishError(.providerUnreachable, "").code == .unavailable)
    #expect(PublishError(.providerError(code: "X"), "").code == .internalError)
    #expect(PublishError(.providerError(code: "X"), "").errorType == "X")
    #expect(PublishError(.writeFailed, "").errorType == "FileWriteError")
  }
}

@Suite struct BudgetAndDurationTests {
  @Test func providerBudgetLeavesAMarginInsideKubeletsDeadline() throws {
    let now = ContinuousClock.now
    #expect(try VolumeActor.callBudget(deadline: nil, now: now, fallback: .seconds(100)) == .seconds(100))
    #expect(try VolumeActor.callBudget(deadline: now + .seconds(120), now: now, fallback: .seconds(100)) == .seconds(100))
    #expect(try VolumeActor.callBudget(deadline: now + .seconds(10), now: now, fallback: .seconds(100)) == .seconds(9))
    #expect(try VolumeActor.callBudget(deadline: now + .seconds(60), now: now, fallback: .seconds(100)) == .seconds(55))
    #expect(throws: PublishError.self) { try VolumeActor.callBudget(deadline: now, now: now, fallback: .seconds(1)) }
  }

  @Test func targetPathsMustBeAbsoluteAndClean() {
    #expect(throws: Never.self) { try NodeService.checkTargetPath("/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/v/mount") }
    // Element rules only: beneath a kubelet root of "/" (its pods directory is /pods).
    for good in ["/a", "/a/...", "/a/.b", "/a/b..", "/.../x", "/a/b.c/d"] {
      #expect(throws: Never.self, "\(good)") { try NodeService.checkTargetPath("/pods" + good, kubeletRootDir: "/") }
    }
    for bad in ["relative/path", "/a/../b", "/a/./b", "/a//b", "/a/", "/", "/a\u{0}b", "", "/.", "/..", "/a/.", "/a/..", "//a"] {
      #expect(throws: RPCError.self, "\(bad)") { try NodeService.checkTargetPath(bad) }
    }
  }

  @Test func targetPathsMustBeUnderTheKubeletRootsPodsDirectory() {
    #expect(throws: Never.self) { try NodeService.checkTargetPath("/k/pods/u/volumes/v/mount", kubeletRootDir: "/k") }
    #expect(throws: Never.self) { try NodeService.checkTargetPath("/pods/u/mount", kubeletRootDir: "/") }
    let longElement = "/k/pods/" + String(repeating: "n", count: 256) + "/mount"
    let longPath = "/k/pods/" + Array(repeating: String(repeating: "p", count: 250), count: 17).joined(separator: "/")
    for bad in [longElement, longPath, "/k/pods", "/k/podsx/u/mount", "/k/plugins/u/mount", "/kk/pods/u/mount", "/k/pods/../etc/passwd", "/other/pods/u"] {
      #expect(throws: RPCError.self, "\(bad)") { try NodeService.checkTargetPath(bad, kubeletRootDir: "/k") }
    }
  }

  @Test func theKubeletRootFlagIsCleanedLexically() {
    #expect(DriverConfig.lexicallyClean("/var/lib//kubelet/") == "/var/lib/kubelet")
    #expect(DriverConfig.lexicallyClean("/var/lib/x/../kubelet/.") == "/var/lib/kubelet")
    #expect(DriverConfig.lexicallyClean("/../..") == "/")
    #expect(DriverConfig.lexicallyClean("var/lib/kubelet") == nil)
  }
}

@Suite struct ProviderSocketSearchTests {
  /// Binds a unix socket at `path` (left as a socket file after close).
  static func makeSocket(_ path: String) {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
      _ = path.withCString { strncpy(raw.baseAddress!.assumingMemoryBound(to: CChar.self), $0, raw.count - 1) }
    }
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
    close(fd)
  }

  @Test func additionalPathsAreSearchedBeforeTheProviderVolume() async throws {
    var template = Array("/tmp/provdirs-XXXXXX".utf8CString)
    let root = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    let extra = root + "/extra", main = root + "/main"
    mkdir(extra, 0o755)
    mkdir(main, 0o755)
    defer {
      for p in [extra + "/aws.sock", main + "/aws.sock", main + "/vault.sock", main + "/not-a-socket.sock"] { unlink(p) }
      rmdir(extra)
      rmdir(main)
      rmdir(root)
    }
    Self.makeSocket(main + "/aws.sock")
    Self.makeSocket(main + "/vault.sock")
    close(open(main + "/not-a-socket.sock", O_CREAT | O_WRONLY, 0o644))
    let loop = EventLoop(name: "search")
    let providers = ProviderConnections(loop: loop, settings: ProviderSettings(searchDirectories: [extra, main]))
    #expect(providers.connection(for: "aws").socketPath() == main + "/aws.sock")
    Self.makeSocket(extra + "/aws.sock")
    #expect(providers.connection(for: "aws").socketPath() == extra + "/aws.sock")
    #expect(providers.connection(for: "not-a-socket").socketPath() == nil)
    #expect(providers.connection(for: "gcp").socketPath() == nil)
    #expect(providers.discoverProviders() == ["aws", "vault"])
    await providers.closeAll()
    await loop.shutdownAndWait()
    #expect(loop.leakedHandles.isEmpty)
  }
}

/// DriverCore's system calls go through VolumeFiles' `sys`: errors name the call and the path.
@Suite struct SyscallErrorTests {
  static func systemCall(_ body: () async throws -> Void) async -> (call: String, path: String)? {
    do {
      try await body()
    } catch let error as VolumeFileError {
      if case .system(let call, let path, _) = error.kind { return (call, path) }
    } catch {}
    return nil
  }

  @Test func readingConfigurationNamesTheFailedCall() async {
    let missing = await Self.systemCall { _ = try FileIO.readAll("/nonexistent-dir/spc.yaml", limit: 1 << 20) }
    #expect(missing?.call == "open" && missing?.path == "/nonexistent-dir/spc.yaml")
    let directory = await Self.systemCall { _ = try FileIO.readAll("/", limit: 1 << 20) }
    #expect(directory?.call == "read" && directory?.path == "/")
  }

  @Test func aMissingClassDirectoryNamesTheFailedCall() async {
    let source = DirectorySecretProviderClassSource(directory: "/nonexistent-spc-dir")
    let failure = await Self.systemCall { _ = try await source.secretProviderClass(name: "a", namespace: "b") }
    #expect(failure?.call == "stat" && failure?.path == "/nonexistent-spc-dir")
  }
}
