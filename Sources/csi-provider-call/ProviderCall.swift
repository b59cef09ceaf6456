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
      // The decoder's own text can quote the input, which may hold secrets.
      return failure("INVALID_ARGUMENT", "bad command: \(describe(error))")
    }
    let scrubber = scrubber(for: command)
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
        return failure("INVALID_ARGUMENT", "unknown method: use Version or Mount")
      }
    } catch let error as RPCError {
      return failure(error.code.canonicalName, scrubber.scrub(error.message))
    } catch {
      return failure("UNKNOWN", scrubber.scrub("\(error)"))
    }
  }

  /// What the provider's answer may echo: the command's secrets and attributes.
  /// A field that is not a JSON object of strings is secret as a whole.
  static func scrubber(for command: Command) -> SecretScrubber {
    func map(_ json: String?) -> [String: String]? {
      guard let json, json != "null" else { return [:] }
      return try? JSONDecoder().decode([String: String].self, from: Data(json.utf8))
    }
    let secrets = map(command.secrets)
    let attributes = map(command.attributes)
    var whole: [String] = []
    if secrets == nil, let raw = command.secrets { whole.append(raw) }
    if attributes == nil, let raw = command.attributes { whole.append(raw) }
    return SecretScrubber(secrets: secrets ?? [:], attributes: attributes ?? [:]).adding(secrets: whole)
  }

  static let commandFields: Set<String> = [
    "method", "attributes", "secrets", "target_path", "permission", "current_object_version", "timeout_ms", "id", "version",
  ]

  /// The kind of problem and where, in the command's own field names; never the decoder's text.
  static func describe(_ error: any Error) -> String {
    func path(_ keys: [any CodingKey]) -> String {
      let parts = keys.map { key in key.intValue.map { "[\($0)]" } ?? (commandFields.contains(key.stringValue) ? key.stringValue : "?") }
      return parts.isEmpty ? "the command" : "field " + parts.joined(separator: ".")
    }
    guard let error = error as? DecodingError else { return "not a JSON command" }
    switch error {
    case .dataCorrupted(let context): return context.codingPath.isEmpty ? "not valid JSON" : "\(path(context.codingPath)) is invalid"
    case .keyNotFound(let key, let context): return "\(path(context.codingPath + [key])) is missing"
    case .typeMismatch(let type, let context): return "\(path(context.codingPath)) must be of type \(type)"
    case .valueNotFound(let type, let context): return "\(path(context.codingPath)) must be of type \(type), not null"
    @unknown default: return "not a valid command"
    }
  }

  static func failure(_ code: String, _ message: String) -> String {
    "{\"ok\":false,\"code\":\(json(code)),\"message\":\(json(message))}"
  }

  static func json(_ s: String) -> String { JSONText.string(s, htmlSafe: false) }
}
