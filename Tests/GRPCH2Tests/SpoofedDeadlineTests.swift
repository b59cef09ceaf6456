import GRPCCore
import Testing
import UVRuntime

@testable import GRPCH2

/// One gRPC request with headers exactly as given, on a connection of its own:
/// what a client that is not ours can send. Returns grpc-status and the
/// response message.
func rawCall(
  _ endpoint: Endpoint, on loop: EventLoop, path: String, headers extra: [(String, String)], message: [UInt8]
) async -> (status: String?, message: [UInt8]) {
  await withCheckedContinuation { (c: CheckedContinuation<(status: String?, message: [UInt8]), Never>) in
    loop.execute {
      Transports.connect(endpoint, on: loop) { result in
        guard case .success(let bytes) = result else { return c.resume(returning: (nil, [])) }
        let owner = RawOwner()
        let connection = H2Connection(role: .client, transport: bytes, owner: owner)
        owner.connection = connection
        let stream = RawStream(connection: connection) { status, message in
          loop.execute { owner.connection?.close() }  // not from inside nghttp2's callback
          c.resume(returning: (status, message))
        }
        let headers: HeaderList =
          [
            (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost"),
            ("content-type", "application/grpc"), ("te", "trailers"),
          ] + extra.map { (name: $0.0, value: $0.1) }
        guard connection.submitRequest(stream, headers: headers) else {
          connection.close()
          return c.resume(returning: (nil, []))
        }
        var framed = [UInt8]()
        GRPCFraming.frame(message, into: &framed)
        stream.queueOutbound(framed)
        stream.finishOutbound(trailers: nil)
      }
    }
  }
}

/// Loop thread only.
private final class RawOwner: H2ConnectionOwner, @unchecked Sendable {
  var connection: H2Connection?
  func connection(_ connection: H2Connection, openStream id: Int32) -> H2Stream? { nil }
  func connectionDidClose(_ connection: H2Connection) { self.connection = nil }
  func connectionDidReceiveGoAway(_ connection: H2Connection) {}
}

private final class RawStream: H2Stream {
  private var received: HeaderList = []
  private var deframer = GRPCMessageDeframer(limit: 1 << 20)
  private var message: [UInt8] = []
  private var done: ((String?, [UInt8]) -> Void)?

  init(connection: H2Connection, done: @escaping (String?, [UInt8]) -> Void) {
    self.done = done
    super.init(connection: connection)
  }

  override func didReceiveHeaders(_ headers: HeaderList, endStream: Bool) {
    received += headers
    if endStream { finish() }
  }

  override func didReceiveData(_ bytes: UnsafeRawBufferPointer) {
    deframer.append(bytes)
    while let m = try? deframer.next() { message = m }
  }

  override func didClose(errorCode: UInt32, connectionLost: Bool) { finish() }

  private func finish() {
    let status = received.first { $0.name == "grpc-status" }?.value
    done?(status, message)
    done = nil
  }
}

/// A client that writes the header the server once read a deadline from.
@Suite(.serialized) struct SpoofedDeadlineTests {
  static let spoof = "x-h2-grpc-timeout"

  func deadlineSeenByHandler(_ headers: [(String, String)]) async throws -> String {
    let path = tempSocketPath("spoof")
    let loop = EventLoop(name: "spoof")
    let transport = H2ServerTransport(config: .init(endpoint: .unix(path: path)), loop: loop)
    let server = GRPCServer(transport: transport, services: [EchoService(loop: loop)])
    let serving = Task { try await server.serve() }
    await transport.waitUntilListening()
    let (status, message) = await rawCall(
      .unix(path: path), on: loop, path: "/test.Echo/Get", headers: headers, message: Array("deadline".utf8))
    server.beginGracefulShutdown()
    try await serving.value
    await loop.shutdownAndWait()
    #expect(loop.leakedHandles == [])
    #expect(status == "0")
    return String(decoding: message, as: UTF8.self)
  }

  @Test(arguments: ["1n", "99999999H"])
  func aSpoofedHeaderAloneGivesNoDeadline(spoofed: String) async throws {
    #expect(try await deadlineSeenByHandler([(Self.spoof, spoofed)]) == "none")
  }

  @Test(arguments: ["1n", "99999999H"])
  func aSpoofedHeaderNeitherShortensNorExtendsGRPCTimeout(spoofed: String) async throws {
    // The spoofed header first, so a server that took the first value it saw would take it.
    let left = try await deadlineSeenByHandler([(Self.spoof, spoofed), ("grpc-timeout", "10S")])
    let ms = try #require(Int(left), "handler saw \(left)")
    #expect(ms > 5_000 && ms <= 10_000, "handler saw \(ms) ms left of a 10 s grpc-timeout")
  }
}
