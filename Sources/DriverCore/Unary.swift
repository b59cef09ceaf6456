import CSIMessages
import GRPCCore

extension RPCRouter {
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
