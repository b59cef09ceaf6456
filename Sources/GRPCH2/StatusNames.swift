public import GRPCCore

extension RPCError.Code {
  /// The canonical gRPC name (INVALID_ARGUMENT...), as kubelet, grpcurl and the Go client print it.
  public var canonicalName: String {
    Self.canonicalNames[self] ?? "\(self)"
  }

  private static let canonicalNames: [RPCError.Code: String] = [
    .cancelled: "CANCELLED", .unknown: "UNKNOWN", .invalidArgument: "INVALID_ARGUMENT",
    .deadlineExceeded: "DEADLINE_EXCEEDED", .notFound: "NOT_FOUND", .alreadyExists: "ALREADY_EXISTS",
    .permissionDenied: "PERMISSION_DENIED", .resourceExhausted: "RESOURCE_EXHAUSTED",
    .failedPrecondition: "FAILED_PRECONDITION", .aborted: "ABORTED", .outOfRange: "OUT_OF_RANGE",
    .unimplemented: "UNIMPLEMENTED", .internalError: "INTERNAL", .unavailable: "UNAVAILABLE",
    .dataLoss: "DATA_LOSS", .unauthenticated: "UNAUTHENTICATED",
  ]
}
