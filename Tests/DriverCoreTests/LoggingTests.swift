import CSIMessages
import DriverCore
import GRPCCore
import Logging
import Testing

private let secretValue = "hunter2-VERY-SECRET"
private let tokenValue = "eyJhbGciOiJSUzI1NiJ9.TOKEN-PAYLOAD"
private let tokensKey = "csi.storage.k8s.io/serviceAccount.tokens"

private var publishWithSecrets: CSI.NodePublishVolumeRequest {
  var request = validPublish
  request.secrets = ["password": secretValue, tokensKey: #"{"vault":{"token":"\#(tokenValue)"}}"#]
  request.volumeContext[tokensKey] = #"{"vault":{"token":"\#(tokenValue)","expirationTimestamp":"2030-01-01T00:00:00Z"}}"#
  request.volumeCapability = .init(
    accessType: .mount(.init(fsType: "", mountFlags: ["password=\(secretValue)"])),
    accessMode: .init(mode: .singleNodeWriter))
  return request
}

@Suite struct SanitizerTests {
  @Test func publishRequestShowsOnlyAllowlistedFields() {
    var request = publishWithSecrets
    request.volumeContext["customKey"] = "custom-value-not-for-logs"
    let rendered = Sanitizer.render(request)
    #expect(!rendered.contains(secretValue))
    #expect(!rendered.contains(tokenValue))
    #expect(!rendered.contains("TOKEN"))
    #expect(!rendered.contains("custom-value-not-for-logs"))
    #expect(!rendered.contains("\"password\""))  // secrets: not even their keys
    // What is known to be safe stays, so the log is still useful.
    #expect(rendered.contains("csi-4f2a"))
    #expect(rendered.contains("my-spc"))
    #expect(rendered.contains("\"customKey\": [redacted]"))
    #expect(rendered.contains("\"\(tokensKey)\": [redacted]"))
    #expect(rendered.contains("secrets: <2 [redacted]>"))
    #expect(rendered.contains("mount_flags: <1 [redacted]>"))
    #expect(rendered.contains("SINGLE_NODE_WRITER"))
    #expect(rendered.hasPrefix("CSI.NodePublishVolumeRequest("))
  }

  @Test func unlistedMessagesPrintOnlyTheirType() {
    let rendered = Sanitizer.render(CSI.Topology(segments: [tokensKey: tokenValue, "zone": "a"]))
    #expect(rendered == "<CSI.Topology>")
    var stage = CSI.NodeStageVolumeRequest()
    stage.volumeID = "v"
    stage.secrets = ["password": secretValue]
    #expect(Sanitizer.render(stage) == "CSI.NodeStageVolumeRequest(volume_id: \"v\", staging_target_path: \"\")")
  }

  @Test func providerMessagesLoseSecretMaterial() {
    let request = Provider.MountRequest(
      attributes: #"{"objects":"x","\#(tokensKey)":"\#(tokenValue)"}"#,
      secrets: #"{"password":"\#(secretValue)"}"#, targetPath: "/t", permission: "420")
    let response = Provider.MountResponse(
      objectVersion: [.init(id: "a", version: "1")], error: .init(code: "Denied \(secretValue)"),
      files: [.init(path: "a-\(secretValue).txt", mode: 0o644, contents: Array(secretValue.utf8))])
    for rendered in [Sanitizer.render(request), Sanitizer.render(response)] {
      #expect(!rendered.contains(secretValue))
      #expect(!rendered.contains(tokenValue))
    }
    #expect(Sanitizer.render(response).contains("<1 files, \(secretValue.utf8.count) bytes [redacted]>"))
    #expect(Sanitizer.render(request).contains("\"420\""))
  }

  @Test func printedValuesAreBoundedAndHaveNoControlCharacters() {
    var request = validPublish
    request.targetPath = "/a\nfake line\u{1B}[2J" + String(repeating: "x", count: 5000)
    let rendered = Sanitizer.render(request)
    #expect(!rendered.contains("\n") && !rendered.contains("\u{1B}"))
    #expect(rendered.utf8.count < 2000)
  }

  @Test func rendersEveryShape() {
    #expect(Sanitizer.render(CSI.ProbeResponse(ready: nil)) == "CSI.ProbeResponse(ready: nil)")
    #expect(Sanitizer.render(CSI.NodeGetInfoRequest()) == "CSI.NodeGetInfoRequest()")
    #expect(Sanitizer.render(CSI.NodeUnpublishVolumeRequest(volumeID: "v", targetPath: "/t")) == #"CSI.NodeUnpublishVolumeRequest(volume_id: "v", target_path: "/t")"#)
  }
}

@Suite struct LoggingInterceptorTests {
  @Test func debugLogsShowTheCallButNoSecret() async throws {
    let logs = CapturedLogs()
    let interceptor = LoggingInterceptor(logger: logs.logger(level: .debug))
    try await withDriver(publisher: RecordingPublisher(), interceptors: [interceptor]) { client in
      _ = try await client.call(CSI.Node.nodePublishVolume, publishWithSecrets)
      var bad = publishWithSecrets
      bad.targetPath = ""
      _ = await status(client, CSI.Node.nodePublishVolume, bad)
    }
    let lines = logs.all
    #expect(lines.contains { $0.contains("rpc.request=CSI.NodePublishVolumeRequest(") })
    #expect(lines.contains { $0.contains("rpc finished") && $0.contains("rpc.code=OK") && $0.contains("csi.v1.Node/NodePublishVolume") })
    #expect(lines.contains { $0.contains("rpc.code=INVALID_ARGUMENT") && $0.contains("target_path") })
    #expect(lines.allSatisfy { $0.contains("rpc.duration_ms=") || !$0.contains("rpc finished") })
    for line in lines {
      #expect(!line.contains(secretValue))
      #expect(!line.contains(tokenValue))
    }
  }

  @Test func infoLevelLogsNoRequests() async throws {
    let logs = CapturedLogs()
    let interceptor = LoggingInterceptor(logger: logs.logger(level: .info))
    var failing = publishWithSecrets
    failing.readonly = false
    try await withDriver(interceptors: [interceptor]) { client in
      _ = await status(client, CSI.Node.nodePublishVolume, failing)
      _ = try await client.call(CSI.Identity.probe, .init())
    }
    let lines = logs.all
    #expect(lines.count == 1)  // the failed publish; Probe finishing OK is debug-only
    #expect(lines.first?.contains("rpc.code=INVALID_ARGUMENT") == true)
    #expect(!lines.contains { $0.contains("rpc.request") })
  }
}
