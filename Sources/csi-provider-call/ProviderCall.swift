import ArgumentParser
import CSIMessages
import DriverCore
import FoundationEssentials
import GRPCCore
import Glibc
import GRPCH2
import TextFormats
import UVRuntime

/// A developer and test tool: one provider client for its whole life, fed JSON
/// commands on stdin (one per line), answering one JSON line each on stdout.
///
///   {"method":"Version"}
///   {"method":"Mount","attributes":"{}","secrets":"null","target_path":"/t","permission":"420",
///    "current_object_version":[{"id":"a","version":"1"}],"timeout_ms":2000}
///
/// Results: {"ok":true,"response":{...}} or {"ok":false,"code":"UNAVAILABLE","message":"..."}.
@main
struct ProviderCall: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "csi-provider-call",
    abstract: "Call a Secrets Store CSI provider plugin (v1alpha1.CSIDriverProvider) with JSON commands from stdin.")

  @Option(help: ArgumentHelp("Provider socket: unix:///path/provider.sock.", valueName: "url"))
  var endpoint: String

  @Option(name: .customLong("max-recv-bytes"), help: "Largest response message accepted, in bytes.")
  var maxRecvBytes = 4 << 20

  @Option(help: "HTTP/2 :authority to send.")
  var authority = "localhost"

  struct Command: Decodable {
    struct Version: Decodable {
      var id: String
      var version: String
    }
    var method: String
    var attributes: String?
    var secrets: String?
    var target_path: String?
    var permission: String?
    var current_object_version: [Version]?
    var timeout_ms: Int?
  }

  func run() async throws {
    let endpoint = try Endpoint(parsing: endpoint)
    let loop = EventLoop(name: "provider-call")
    let client = ProviderClient(endpoint: endpoint, loop: loop, maxReceiveMessageBytes: maxRecvBytes, authority: authority)
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await client.run() }
      while let line = readLine() {
        if line.isEmpty { continue }
        var result = await Self.execute(line, client) + "\n"
        result.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
      }
      client.close()
      try await group.waitForAll()
    }
    await loop.shutdownAndWait()
  }

  static func execute(_ line: String, _ client: ProviderClient) async -> String {
    let command: Command
    do {
      command = try JSONDecoder().decode(Command.self, from: Data(line.utf8))
    } catch {
      return failure("INVALID_ARGUMENT", "bad command: \(error)")
    }
    let timeout = command.timeout_ms.map { Duration.milliseconds($0) }
    do {
      switch command.method {
      case "Version":
        let r = try await client.version(timeout: timeout)
        return "{\"ok\":true,\"response\":{\"version\":\(json(r.version)),\"runtime_name\":\(json(r.runtimeName)),\"runtime_version\":\(json(r.runtimeVersion))}}"
      case "Mount":
        var request = Provider.MountRequest()
        request.attributes = command.attributes ?? "{}"
        request.secrets = command.secrets ?? "null"
        request.targetPath = command.target_path ?? ""
        request.permission = command.permission ?? "420"
        request.currentObjectVersion = (command.current_object_version ?? []).map { Provider.ObjectVersion(id: $0.id, version: $0.version) }
        let r = try await client.mount(request, timeout: timeout)
        let versions = r.objectVersion.map { "{\"id\":\(json($0.id)),\"version\":\(json($0.version))}" }.joined(separator: ",")
        let files = r.files.map {
          "{\"path\":\(json($0.path)),\"mode\":\($0.mode),\"contents\":\"\(Data($0.contents).base64EncodedString())\"}"
        }.joined(separator: ",")
        let error = r.error.map { "{\"code\":\(json($0.code))}" } ?? "null"
        return "{\"ok\":true,\"response\":{\"object_version\":[\(versions)],\"error\":\(error),\"files\":[\(files)]}}"
      default:
        return failure("INVALID_ARGUMENT", "unknown method \(command.method): use Version or Mount")
      }
    } catch let error as RPCError {
      return failure(error.code.canonicalName, error.message)
    } catch {
      return failure("UNKNOWN", "\(error)")
    }
  }

  static func failure(_ code: String, _ message: String) -> String {
    "{\"ok\":false,\"code\":\(json(code)),\"message\":\(json(message))}"
  }

  static func json(_ s: String) -> String { JSONText.string(s, htmlSafe: false) }
}
