public import GRPCCore

/// Why a publish or unpublish failed. The gRPC code kubelet sees and the
/// upstream metric error type are chosen here, in one place.
public struct PublishError: Error, Sendable, Hashable, CustomStringConvertible {
  public enum Kind: Sendable, Hashable {
    case invalidArgument
    /// The pod names a class that does not exist in its namespace.
    case classNotFound
    /// The class exists but cannot be used.
    case classInvalid
    case providerUnreachable
    case providerDeadline
    /// The provider answered with a gRPC error.
    case providerStatus
    /// The provider answered MountResponse.error with this code.
    case providerError(code: String)
    /// The provider's answer breaks the protocol's rules (paths, modes, versions).
    case badProviderResponse
    /// The target directory or the tmpfs could not be set up or torn down.
    case mountPoint
    case writeFailed
  }

  public var kind: Kind
  /// A sentence for kubelet's event; never holds secret values or tokens.
  public var message: String

  public init(_ kind: Kind, _ message: String) {
    self.kind = kind
    self.message = message
  }

  static func invalidArgument(_ message: String) -> PublishError { PublishError(.invalidArgument, message) }

  public var description: String { message }

  public var code: RPCError.Code {
    switch kind {
    case .invalidArgument: .invalidArgument
    case .classNotFound: .notFound
    case .classInvalid: .failedPrecondition
    case .providerUnreachable: .unavailable
    case .providerDeadline: .deadlineExceeded
    case .providerStatus, .providerError, .badProviderResponse, .mountPoint, .writeFailed: .internalError
    }
  }

  /// The `error_type` label of `node_publish_error_total`, as upstream names it.
  public var errorType: String {
    switch kind {
    case .invalidArgument: "InvalidArgument"
    case .classNotFound, .classInvalid: "SecretProviderClassNotFound"
    case .providerUnreachable, .providerDeadline, .providerStatus: "GRPCProviderError"
    case .providerError(let code): code
    case .badProviderResponse: "GRPCProviderError"
    case .mountPoint: "FailedToEnsureMountPoint"
    case .writeFailed: "FileWriteError"
    }
  }

  public var rpcError: RPCError { RPCError(code: code, message: message) }

  init(_ error: ProviderCallError) {
    switch error.kind {
    case .unreachable: self.init(.providerUnreachable, error.description)
    case .deadlineExceeded: self.init(.providerDeadline, error.description)
    case .status: self.init(.providerStatus, error.description)
    case .badResponse: self.init(.badProviderResponse, error.description)
    }
  }
}
