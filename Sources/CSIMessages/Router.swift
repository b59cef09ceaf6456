public import GRPCCore

extension RPCRouter {
  /// Registers a unary handler for a typed method; every service here (the
  /// driver's and the reference provider's) registers its methods this way.
  /// An `RPCError` thrown by the handler, and the INVALID_ARGUMENT of a request
  /// that fails to decode, reach the client as that status. The handler's
  /// `ServerContext` carries the caller's deadline (`callDeadline` with our
  /// transport).
  public mutating func registerUnary<Request, Response>(
    _ method: UnaryMethod<Request, Response>,
    handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
  ) {
    registerHandler(forMethod: method.descriptor, deserializer: method.deserializer, serializer: method.serializer) {
      request, context in
      let single = try await ServerRequest(stream: request)
      return StreamingServerResponse(single: ServerResponse(message: try await handler(single.message, context)))
    }
  }
}
