public import GRPCCore
import GRPCH2
public import Logging

/// Logs every RPC: its method, duration and status code at info level (debug
/// for the frequent or boring Probe, capability and info calls, which upstream
/// does not log by default either; failures always at info), and, at debug level,
/// each request message rendered by ``Sanitizer`` so no secret reaches a log.
/// Response messages are never logged: provider responses carry file contents.
public struct LoggingInterceptor: ServerInterceptor {
  public let logger: Logger

  public init(logger: Logger) {
    self.logger = logger
  }

  /// Methods a healthy cluster calls every few seconds, or that only report facts.
  static let quietMethods: Set<String> = ["Probe", "GetPluginCapabilities", "NodeGetCapabilities", "NodeGetInfo", "GetPluginInfo"]

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    var logger = self.logger
    logger[metadataKey: "rpc.method"] = "\(context.descriptor.fullyQualifiedMethod)"
    let start = ContinuousClock.now
    let finishLevel: Logger.Level = Self.quietMethods.contains(context.descriptor.method) ? .debug : .info

    let callLogger = logger
    var request = request
    if logger.logLevel <= .debug {
      let requestLogger = logger
      request.messages = RPCAsyncSequence(
        wrapping: request.messages.map { @Sendable message in
          requestLogger.debug("request", metadata: ["rpc.request": "\(Sanitizer.render(message))"])
          return message
        }
      )
    }

    @Sendable func finish(_ code: String, _ message: String?) {
      let level = code == "OK" ? finishLevel : .info
      guard callLogger.logLevel <= level else { return }  // no formatting for a line nobody keeps
      let elapsed = ContinuousClock.now - start
      var metadata: Logger.Metadata = [
        "rpc.code": "\(code)",
        "rpc.duration_ms": "\(Self.milliseconds(elapsed))",
      ]
      if let message, !message.isEmpty { metadata["rpc.message"] = "\(message)" }
      callLogger.log(level: level, "rpc finished", metadata: metadata)
    }

    do {
      var response = try await next(request, context)
      switch response.accepted {
      case .success(var contents):
        // A unary handler's result is only written when the producer runs.
        let producer = contents.producer
        contents.producer = { writer in
          do {
            let trailers = try await producer(writer)
            finish("OK", nil)
            return trailers
          } catch {
            let (code, message) = Self.status(of: error)
            finish(code, message)
            throw error
          }
        }
        response.accepted = .success(contents)
      case .failure(let error):
        finish(Self.codeName(error.code), error.message)
      }
      return response
    } catch {
      let (code, message) = Self.status(of: error)
      finish(code, message)
      throw error
    }
  }

  static func status(of error: any Error) -> (code: String, message: String) {
    if let error = error as? RPCError {
      return (self.codeName(error.code), error.message)
    }
    // GRPCCore reports other errors as UNKNOWN; their text may come from
    // anywhere, so only the type is logged.
    return ("UNKNOWN", "\(type(of: error))")
  }

  static func codeName(_ code: RPCError.Code) -> String { code.canonicalName }

  /// Milliseconds with three decimals, e.g. "12.345".
  static func milliseconds(_ duration: Duration) -> String {
    let (seconds, attoseconds) = duration.components
    let micros = max(0, seconds * 1_000_000 + attoseconds / 1_000_000_000_000)
    let fraction = String(micros % 1000)
    return "\(micros / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
  }
}
