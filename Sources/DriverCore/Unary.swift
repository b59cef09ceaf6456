import CSIMessages
import GRPCCore
import GRPCH2

extension RPCRouter {
  /// Registers a unary handler for a typed method. Errors thrown by the
  /// handler, and the INVALID_ARGUMENT from a request that fails to decode,
  /// reach the client unchanged when they are `RPCError`s.
  mutating func registerUnary<Request, Response>(
    _ method: UnaryMethod<Request, Response>,
    handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
  ) {
    self.registerHandler(
      forMethod: method.descriptor,
      deserializer: method.deserializer,
      serializer: method.serializer
    ) { request, context in
      let single = try await ServerRequest(stream: request)
      let response = try await handler(single.message, context)
      return StreamingServerResponse(single: ServerResponse(message: response))
    }
  }

  /// Like `registerUnary`, and hands the handler the caller's deadline (from
  /// `grpc-timeout`) so it can budget the calls it makes downstream.
  mutating func registerUnaryWithDeadline<Request, Response>(
    _ method: UnaryMethod<Request, Response>,
    handler: @escaping @Sendable (Request, ContinuousClock.Instant?) async throws -> Response
  ) {
    self.registerHandler(
      forMethod: method.descriptor,
      deserializer: method.deserializer,
      serializer: method.serializer
    ) { request, context in
      let start = ContinuousClock.now
      let single = try await ServerRequest(stream: request)
      let deadline = GRPCTimeout.timeout(in: single.metadata).map { start + $0 }
      let response = try await handler(single.message, deadline)
      return StreamingServerResponse(single: ServerResponse(message: response))
    }
  }

  /// Registers a handler that answers UNIMPLEMENTED without reading the request.
  mutating func registerUnimplemented<Request, Response>(_ method: UnaryMethod<Request, Response>) {
    self.registerHandler(
      forMethod: method.descriptor,
      deserializer: method.deserializer,
      serializer: method.serializer
    ) { _, _ in
      StreamingServerResponse(
        error: RPCError(
          code: .unimplemented,
          message: "\(method.descriptor.method) is not implemented by this driver"
        )
      )
    }
  }
}
