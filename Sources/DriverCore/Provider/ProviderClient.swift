public import CSIMessages
import GRPCCore
import GRPCH2
public import UVRuntime

/// Calls one provider plugin (`v1alpha1.CSIDriverProvider`) over its unix
/// socket. One HTTP/2 connection, made lazily and remade after the provider
/// restarts; `:authority` is `localhost`, as providers expect.
public final class ProviderClient: Sendable {
  public let endpoint: Endpoint
  let transport: H2ClientTransport
  let client: GRPCClient<H2ClientTransport>

  public init(endpoint: Endpoint, loop: EventLoop, maxReceiveMessageBytes: Int = 4 << 20, authority: String = "localhost") {
    self.endpoint = endpoint
    transport = H2ClientTransport(
      config: .init(endpoint: endpoint, authority: authority, maxReceiveMessageBytes: maxReceiveMessageBytes),
      loop: loop)
    client = GRPCClient(transport: transport)
  }

  /// Runs the client until `close()`; call once, in a task of its own.
  public func run() async throws {
    try await client.runConnections()
  }

  public func close() {
    client.beginGracefulShutdown()
  }

  public func version(timeout: Duration? = nil) async throws -> Provider.VersionResponse {
    try await client.call(Provider.CSIDriverProvider.version, Provider.VersionRequest(version: "v1alpha1"), metadata: Self.deadline(timeout))
  }

  public func mount(_ request: Provider.MountRequest, timeout: Duration? = nil) async throws -> Provider.MountResponse {
    try await client.call(Provider.CSIDriverProvider.mount, request, metadata: Self.deadline(timeout))
  }

  /// The deadline goes to our transport, which enforces it with a loop timer
  /// (see `GRPCTimeout.metadata`), rather than to `CallOptions.timeout`.
  static func deadline(_ timeout: Duration?) -> Metadata {
    timeout.map(GRPCTimeout.metadata) ?? [:]
  }
}
