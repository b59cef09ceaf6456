import ArgumentParser
import DriverCore
import GRPCCore
import GRPCH2
import Glibc
import Logging
import UVRuntime

/// Turns flags into a validated configuration and runs the driver; nothing else.
@main
struct DriverCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "secrets-store-csi-driver",
    abstract: "Secrets Store CSI driver: mounts secrets from external stores into pods as tmpfs volumes.",
    discussion: """
      kubelet talks to the driver over CSI gRPC on --endpoint; the driver answers the CSI Identity and Node services.

      Example: secrets-store-csi-driver --endpoint unix:///csi/csi.sock --nodeid "$KUBE_NODE_NAME"

      SIGTERM or SIGINT starts a graceful shutdown: the listener closes, calls in flight finish, and the socket file is removed. A second signal stops at once.
      """
  )

  @Option(help: ArgumentHelp("CSI endpoint: unix:///path/to/csi.sock or tcp://host:port.", valueName: "url"))
  var endpoint = "unix://tmp/csi.sock"

  @Option(help: ArgumentHelp("This node's name, as kubelet registers it (required).", valueName: "name"))
  var nodeid: String?

  @Option(help: ArgumentHelp("Name the driver registers under.", valueName: "name"))
  var drivername = DriverConfig.defaultDriverName

  @Option(
    name: .customLong("max-call-recv-msg-size"),
    help: ArgumentHelp("Largest gRPC message accepted, in bytes (from kubelet and from providers).", valueName: "bytes"))
  var maxCallRecvMsgSize = 4 << 20

  @Flag(name: .customLong("log-format-json"), help: "Log one JSON object per line instead of text.")
  var logFormatJSON = false

  @Option(
    name: .customLong("log-level"),
    help: ArgumentHelp("Log level: trace, debug, info, notice, warning, error, critical. -v=N (klog) also works: 4 and up is debug.", valueName: "level"))
  var logLevel: String = "info"

  @Flag(help: "Print the version and exit.")
  var version = false

  /// klog-style `-v=N` / `--v=N`, which existing manifests pass, becomes `--log-level`.
  static func rewriteKlogVerbosity(_ arguments: [String]) -> [String] {
    var out: [String] = []
    var i = 0
    while i < arguments.count {
      let a = arguments[i]
      var level: Int?
      if a.hasPrefix("-v=") || a.hasPrefix("--v=") {
        level = Int(a.split(separator: "=", maxSplits: 1)[1])
      } else if (a == "-v" || a == "--v"), i + 1 < arguments.count, let n = Int(arguments[i + 1]) {
        level = n
        i += 1
      }
      if let level {
        out += ["--log-level", level >= 4 ? "debug" : "info"]
      } else {
        out.append(a)
      }
      i += 1
    }
    return out
  }

  static func main() async {
    await main(rewriteKlogVerbosity(Array(CommandLine.arguments.dropFirst())))
  }

  func validate() throws {
    if version { return }
    guard let nodeid, !nodeid.isEmpty else {
      throw ValidationError("--nodeid is required: pass this node's name, as kubelet registers it")
    }
    do {
      _ = try Endpoint(parsing: endpoint)
    } catch {
      throw ValidationError("--endpoint: \(error)")
    }
    guard maxCallRecvMsgSize > 0 else { throw ValidationError("--max-call-recv-msg-size must be positive") }
    guard Logger.Level(rawValue: logLevel) != nil else {
      throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
    }
    guard !drivername.isEmpty else { throw ValidationError("--drivername must not be empty") }
  }

  func run() async throws {
    if version {
      print("secrets-store-csi-driver \(DriverVersion.current)")
      return
    }
    let json = logFormatJSON
    let level = Logger.Level(rawValue: logLevel)!
    LoggingSystem.bootstrap { StderrLogHandler(label: $0, json: json, level: level) }
    let logger = Logger(label: "secrets-store-csi-driver")
    let config = DriverConfig(driverName: drivername, version: DriverVersion.current, nodeID: nodeid!)
    let endpoint = try Endpoint(parsing: endpoint)
    let driver = Driver(config: config, endpoint: endpoint, maxReceiveMessageBytes: maxCallRecvMsgSize, logger: logger)
    do {
      try await driver.run()
    } catch {
      logger.error("driver stopped: \(error)")
      throw ExitCode.failure
    }
  }
}
